package srs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/milter"
)

// The socketmap server: Postfix's socketmap protocol (socketmap_table(5)),
// answering the maps "forward" and "reverse" as postsrsd 2.x does, so that
//
//	sender_canonical_maps = socketmap:unix:/tollgate/srs.sock:forward
//	recipient_canonical_maps = socketmap:unix:/tollgate/srs.sock:reverse
//
// is a drop-in for postsrsd's lines. A request is a netstring "NAME KEY"; the
// reply a netstring "OK value", "NOTFOUND reason", "PERM reason" or
// "TEMP reason". The reasons are postsrsd 2.4.0's (src/srs.c, srs2.c).

// Socketmap limits and defaults. postsrsd reads requests into 1024 bytes
// and allows 512 for the address; its connection-limit is 200 and its
// keep-alive 30 s.
const (
	DefaultSocketmapMaxConns    = 200
	DefaultSocketmapIdleTimeout = 30 * time.Second
	socketmapMaxRequest         = 1023 // bytes in one netstring: longer is malformed, answered, closed
	socketmapMaxKey             = 512  // bytes of the address: longer is "PERM Too big.", the connection stays
	socketmapWriteTimeout       = 10 * time.Second
)

// SocketmapOptions configures a socketmap server.
type SocketmapOptions struct {
	MaxConns    int           // connections served at once; more are closed at once (default 200)
	IdleTimeout time.Duration // a connection waiting this long for a request is closed (default 30 s)
	Metrics     *Metrics
	Log         *slog.Logger
}

// Socketmap serves the forward and reverse maps over one listener with the
// rewriter, database and local domains of the milter path (ModuleOptions),
// which SetRewriter replaces on a reload without closing connections.
type Socketmap struct {
	o       SocketmapOptions
	rw      atomic.Pointer[ModuleOptions]
	slots   chan struct{}
	ln      net.Listener
	path    string // unix socket to remove on Close
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	regs    []*registration // open registrations, newest last
	closed  bool
	lastLog atomic.Int64 // unix nanoseconds of the last malformed-input log line
}

// ListenSocketmap listens on addr ("unix:/path" or "inet:host:port"; a
// stale unix socket is replaced) and serves in the background until Close.
func ListenSocketmap(addr string, rw ModuleOptions, o SocketmapOptions) (*Socketmap, error) {
	network, address, err := ParseSocketmapListen(addr)
	if err != nil {
		return nil, err
	}
	if network == "unix" {
		if fi, err := os.Lstat(address); err == nil && fi.Mode()&os.ModeSocket != 0 {
			// Replace a stale socket, never a live one (another daemon's).
			if c, err := net.DialTimeout("unix", address, time.Second); err == nil {
				c.Close()
				return nil, fmt.Errorf("srs socketmap: %s is in use by another process", address)
			}
			os.Remove(address)
		}
	}
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, fmt.Errorf("srs socketmap: %w", err)
	}
	s := NewSocketmap(rw, o)
	if network == "unix" {
		s.path = address
		// Postfix's processes connect as their own user: the directory
		// decides who may reach the socket.
		if err := os.Chmod(address, 0o666); err != nil {
			ln.Close()
			return nil, fmt.Errorf("srs socketmap: %w", err)
		}
	}
	s.ln = ln
	s.wg.Go(func() { s.serve(ln) })
	return s, nil
}

// ParseSocketmapListen splits "unix:/path" and "inet:host:port".
func ParseSocketmapListen(addr string) (network, address string, err error) {
	switch {
	case strings.HasPrefix(addr, "unix:/"):
		return "unix", addr[len("unix:"):], nil
	case strings.HasPrefix(addr, "inet:"):
		hp := addr[len("inet:"):]
		if _, port, err := net.SplitHostPort(hp); err != nil || port == "" {
			return "", "", fmt.Errorf("srs socketmap: listen %q: want inet:host:port", addr)
		}
		return "tcp", hp, nil
	}
	return "", "", fmt.Errorf("srs socketmap: listen %q: want unix:/absolute/path or inet:host:port", addr)
}

// NewSocketmap returns a server without a listener (Serve one, or use
// Lookup directly).
func NewSocketmap(rw ModuleOptions, o SocketmapOptions) *Socketmap {
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultSocketmapMaxConns
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultSocketmapIdleTimeout
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	s := &Socketmap{o: o, slots: make(chan struct{}, o.MaxConns), conns: map[net.Conn]struct{}{}}
	s.SetRewriter(rw)
	return s
}

// SetRewriter makes later requests use rw.
func (s *Socketmap) SetRewriter(rw ModuleOptions) { s.rw.Store(&rw) }

// Register makes later requests use rw until the returned closer is closed;
// then the newest registration still open is used again. A configuration
// registers its rewriter for as long as it lives, so that a reload that
// fails after registering, or an old configuration ending, never leaves the
// server on a rewriter (and database store) that is gone.
func (s *Socketmap) Register(rw ModuleOptions) io.Closer {
	r := &registration{s: s, rw: &rw}
	s.mu.Lock()
	s.regs = append(s.regs, r)
	s.rw.Store(r.rw)
	s.mu.Unlock()
	return r
}

type registration struct {
	s    *Socketmap
	rw   *ModuleOptions
	once sync.Once
}

func (r *registration) Close() error {
	r.once.Do(func() {
		s := r.s
		s.mu.Lock()
		defer s.mu.Unlock()
		for i, x := range s.regs {
			if x == r {
				s.regs = append(s.regs[:i], s.regs[i+1:]...)
				break
			}
		}
		if n := len(s.regs); n > 0 {
			s.rw.Store(s.regs[n-1].rw)
		}
	})
	return nil
}

// Addr is the listener's address.
func (s *Socketmap) Addr() net.Addr { return s.ln.Addr() }

// Close stops listening, closes every connection and waits for them.
func (s *Socketmap) Close() error {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	s.wg.Wait()
	if s.path != "" {
		os.Remove(s.path)
	}
	return err
}

func (s *Socketmap) serve(ln net.Listener) {
	backoff := 5 * time.Millisecond
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: wait and go on, never stop serving.
			s.count("accept_error")
			s.logLimited("srs socketmap: accept failed", "err", err)
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		select {
		case s.slots <- struct{}{}:
		default:
			s.count("connection_limit")
			s.logLimited("srs socketmap: connection limit reached, connection closed", "limit", s.o.MaxConns)
			c.Close()
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			<-s.slots
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Go(func() {
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				// The slot first: a peer that sees the close may dial
				// again at once, and must find it free.
				<-s.slots
				c.Close()
			}()
			s.ServeConn(c)
		})
	}
}

// ServeConn answers requests on c until the peer closes, stays idle too
// long or sends a malformed netstring (answered "PERM Invalid query.", then
// closed, as postsrsd does).
func (s *Socketmap) ServeConn(c net.Conn) {
	br := bufio.NewReaderSize(c, 4096)
	var out []byte
	for {
		c.SetReadDeadline(time.Now().Add(s.o.IdleTimeout))
		req, err := readNetstring(br, socketmapMaxRequest)
		switch {
		case err == nil:
		case errors.Is(err, errMalformed):
			s.count("malformed")
			s.logLimited("srs socketmap: malformed request, connection closed", "err", err)
			s.write(c, &out, "PERM Invalid query.")
			return
		default:
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				s.count("idle_timeout")
			}
			return // EOF, timeout, reset: nothing to answer
		}
		// As postsrsd's strtok_r: spaces before the map name are skipped,
		// one after it ends it.
		name, key, _ := strings.Cut(strings.TrimLeft(req, " "), " ")
		if name == "" {
			s.count("malformed")
			s.logLimited("srs socketmap: empty request, connection closed")
			s.write(c, &out, "PERM Invalid query.")
			return
		}
		if len(key) > socketmapMaxKey {
			s.count("too_big")
			s.logLimited("srs socketmap: request too big", "bytes", len(key))
			if !s.write(c, &out, "PERM Too big.") {
				return
			}
			continue
		}
		if !s.write(c, &out, s.Lookup(context.Background(), name, key)) {
			return
		}
	}
}

func (s *Socketmap) write(c net.Conn, buf *[]byte, reply string) bool {
	*buf = appendNetstring((*buf)[:0], reply)
	c.SetWriteDeadline(time.Now().Add(socketmapWriteTimeout))
	_, err := c.Write(*buf)
	return err == nil
}

// Lookup answers one request, without the netstring framing: "OK addr",
// "NOTFOUND reason", "PERM reason" or "TEMP reason".
func (s *Socketmap) Lookup(ctx context.Context, name, key string) string {
	rw := s.rw.Load()
	switch name {
	case "forward":
		return s.forward(ctx, rw, key)
	case "reverse":
		return s.reverse(ctx, rw, key)
	}
	s.count("unknown_map")
	return "PERM Invalid map."
}

func (s *Socketmap) forward(ctx context.Context, rw *ModuleOptions, sender string) string {
	at := strings.IndexByte(sender, '@')
	if at < 0 {
		s.forwarded("skipped_no_domain")
		return "NOTFOUND No domain."
	}
	if rw.SRS.IsOurs(sender) || rw.Local != nil && rw.Local(milter.Domain(sender)) {
		s.forwarded("skipped_local")
		return "NOTFOUND Need not rewrite local domain."
	}
	addr, err := rw.SRS.Forward(sender)
	if rw.DB != nil && (rw.Always || err != nil || len(milter.LocalPart(addr)) > maxLocalPart) {
		addr, _, err = rw.DB.Forward(ctx, sender)
	}
	switch {
	case err == nil:
		s.forwarded("rewritten")
		return "OK " + addr
	case errors.Is(err, ErrDBUnavailable):
		s.forwarded(Reason(err))
		s.logLimited("srs socketmap: SRS database unavailable", "err", err)
		return "TEMP Database error."
	}
	s.forwarded(Reason(err))
	return "PERM " + postsrsdReason(err)
}

func (s *Socketmap) reverse(ctx context.Context, rw *ModuleOptions, addr string) string {
	if !rw.SRS.IsOurs(addr) || !IsSRS(addr) {
		s.reversed(Reason(ErrNotSRS))
		return "NOTFOUND Not an SRS address."
	}
	m := Module{o: *rw}
	orig, _, err := m.reverse(ctx, addr)
	if err == nil {
		s.reversed("valid")
		return "OK " + orig
	}
	s.reversed(Reason(err))
	if errors.Is(err, ErrDBUnavailable) {
		s.logLimited("srs socketmap: SRS database unavailable", "err", err)
		return "TEMP Database error."
	}
	return "NOTFOUND " + postsrsdReason(err)
}

// postsrsdReason is postsrsd's (libsrs2's srs_strerror) wording for an error.
func postsrsdReason(err error) string {
	switch {
	case errors.Is(err, ErrNotSRS), errors.Is(err, ErrUnknownSeparator):
		return "Not an SRS address."
	case errors.Is(err, ErrBadHash):
		return "Hash invalid in SRS address."
	case errors.Is(err, ErrHashTooShort):
		return "Hash too short in SRS address."
	case errors.Is(err, ErrExpired):
		return "Time stamp out of date."
	case errors.Is(err, ErrBadStamp):
		return "Bad base32 character in timestamp."
	case errors.Is(err, ErrDBNotFound):
		return "Unknown alias."
	case errors.Is(err, ErrBadFormat):
		return "No user in SRS0 address."
	case errors.Is(err, ErrBadAddress), errors.Is(err, ErrNullSender):
		return "No at sign in sender address"
	}
	return "Unknown error in SRS library."
}

func (s *Socketmap) forwarded(result string) {
	if s.o.Metrics != nil {
		s.o.Metrics.Forward.WithLabelValues(result).Inc()
	}
}

func (s *Socketmap) reversed(result string) {
	if s.o.Metrics != nil {
		s.o.Metrics.Reverse.WithLabelValues(result).Inc()
	}
}

func (s *Socketmap) count(event string) {
	if s.o.Metrics != nil {
		s.o.Metrics.Socketmap.WithLabelValues(event).Inc()
	}
}

// logLimited logs at most one line a second: a peer sending garbage must
// not flood the log.
func (s *Socketmap) logLimited(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := s.lastLog.Load()
	if now-last < int64(time.Second) || !s.lastLog.CompareAndSwap(last, now) {
		return
	}
	s.o.Log.Warn(msg, args...)
}

var errMalformed = errors.New("malformed netstring")

// readNetstring reads one netstring ("LEN:DATA,") of at most max bytes of
// data. As postsrsd: the length is decimal digits (none means 0), nothing
// else before the colon; a length over max or a missing comma is
// errMalformed. io.EOF before the first byte is a clean close.
func readNetstring(br *bufio.Reader, max int) (string, error) {
	n := 0
	for i := 0; ; i++ {
		c, err := br.ReadByte()
		if err != nil {
			if err == io.EOF && i > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		if c == ':' {
			break
		}
		if c < '0' || c > '9' {
			return "", fmt.Errorf("%w: %q in the length", errMalformed, c)
		}
		n = 10*n + int(c-'0')
		if n > max {
			return "", fmt.Errorf("%w: longer than %d bytes", errMalformed, max)
		}
	}
	buf := make([]byte, n+1)
	if _, err := io.ReadFull(br, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return "", err
	}
	if buf[n] != ',' {
		return "", fmt.Errorf("%w: no comma after %d bytes", errMalformed, n)
	}
	return string(buf[:n]), nil
}

func appendNetstring(b []byte, s string) []byte {
	b = fmt.Appendf(b, "%d:", len(s))
	b = append(b, s...)
	return append(b, ',')
}
