// Package dcctest is a dccifd-compatible server for tests, written from the
// protocol of DCC 2.3.167 (dcc/README.md, "Facts") and not
// from this module's client: it parses requests strictly, records what it
// received byte for byte, and answers as the test says, including the ways
// a real dccifd misbehaves (no reply, garbage, slowness, a stalled reader).
//
// The protocol, one message per connection:
//
//	options line        words separated by spaces or tabs, case-insensitive;
//	                    an unknown word: dccifd hangs up without a reply
//	client line         IP, optionally CR and the host name; empty or
//	                    0.0.0.0: take the client from Received:
//	HELO line           may be empty
//	sender line         with or without <>
//	recipient lines     address, optionally CR and the local user
//	empty line
//	the message         until the client half-closes (EOF)
//
// reply: the overall letter (A R G T S), a line of per-recipient letters
// (A R G), then, when "header" was asked for, the X-DCC header folded with
// "\n\t" past 78 columns and an empty line.
package dcctest

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// KnownOptions are the option words dccifd 2.3.167 accepts.
var KnownOptions = []string{
	"header", "body", "cksums", "query", "grey-off", "no-grey", "grey-query",
	"no-reject", "spam", "log", "rcvd-next", "rcvd-nxt",
}

// Rcpt is one recipient line.
type Rcpt struct {
	Addr    string
	User    string
	HasUser bool // a CR followed the address (User may still be empty)
}

// Request is what the server received on one connection.
type Request struct {
	// Raw is the request byte for byte (up to Config.RecordLimit bytes;
	// Truncated says if more came).
	Raw       []byte
	Truncated bool
	Total     int64 // bytes received in all

	OptionsLine   string
	Options       []string // the words, lower-cased
	ClientLine    string   // raw, CR included
	ClientIP      netip.Addr
	ClientName    string
	HasClientName bool
	Helo          string
	Sender        string
	Rcpts         []Rcpt

	// The message after the envelope's empty line.
	MessageLen    int64
	MessageSHA256 [32]byte
	// HalfClosed: the message ended with EOF while the connection could
	// still carry the reply (the client half-closed rather than reset).
	HalfClosed bool

	// Err is why the request was refused (a protocol violation, or the
	// client going away before EOF). dccifd answers nothing then.
	Err error
	// Replied: the reply was written in full (before the connection
	// closed, so a client that read the reply to EOF finds its request
	// recorded).
	Replied bool
}

// HasOption reports whether the request carried an option word.
func (r *Request) HasOption(w string) bool {
	for _, o := range r.Options {
		if o == strings.ToLower(w) {
			return true
		}
	}
	return false
}

// Reply is how the server answers one request.
type Reply struct {
	// Overall is the first line; 0 means 'A'.
	Overall byte
	// Rcpts is the second line. "" gives the overall letter for every
	// recipient (A for S), or no letters for T, as dccifd does. It must be
	// a line dccifd can write: one of A, R, G per recipient, all G exactly
	// under an overall G.
	Rcpts string
	// RcptLetter, when Rcpts is "", gives each recipient's letter from its
	// request line (address and local user).
	RcptLetter func(Rcpt) byte
	// EmptyRcpts sends an empty second line whatever the recipients.
	EmptyRcpts bool
	// Header is the X-DCC header, unfolded ("X-DCC-x-Metrics: host 1;
	// Body=1"), folded as dccifd folds it. Sent only when the request asked
	// for "header" (then followed by the empty line, even when Header is "").
	Header string
	// HeaderRaw, when set, replaces the folded Header byte for byte (its
	// newlines included).
	HeaderRaw string

	// Raw, when set, is sent instead of any reply built from the above.
	Raw []byte

	// Delay before the reply is written.
	Delay time.Duration
	// Hang: never reply; keep the connection open until the server closes.
	Hang bool
	// Close: hang up without a reply once the message is read.
	Close bool
	// CloseAfterEnvelope: hang up without a reply right after the
	// envelope, without reading the message.
	CloseAfterEnvelope bool

	// StallRead: after the envelope, stop reading for this long (until
	// the server closes if negative), to prove the client's writes have
	// deadlines.
	StallRead time.Duration
	// ReadDelay: pause before each read of at most ReadChunk bytes (default
	// 4 KiB) of the message.
	ReadDelay time.Duration
	ReadChunk int
}

// Handler chooses the reply once the envelope is parsed (the message is not
// read yet). It is called from the connection's goroutine.
type Handler func(req *Request) Reply

// Fixed answers every request the same way.
func Fixed(r Reply) Handler { return func(*Request) Reply { return r } }

// Config configures a Server.
type Config struct {
	// Network is "unix" (default) or "tcp". Addr is the socket path (default:
	// a fresh temporary directory's "dccifd") or the TCP listen address
	// (default "127.0.0.1:0").
	Network, Addr string
	// Handler decides the replies; nil answers A with a header.
	Handler Handler
	// RecordLimit caps Request.Raw (default 1 MiB; negative: record nothing).
	RecordLimit int
	// UnknownOptions are words this server refuses although dccifd knows
	// them, to play an older dccifd.
	UnknownOptions []string
	// AllowProtocolErrors: without it, a request refused for a protocol
	// violation fails the test at cleanup.
	AllowProtocolErrors bool
	// MaxLine caps a request line (default 8 KiB); longer is a protocol error.
	MaxLine int
}

// Server is a running dccifd stand-in.
type Server struct {
	cfg      Config
	ln       net.Listener
	network  string
	addr     string
	closing  chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	reqs     []*Request
	accepted int
	tmpdir   string
	closed   bool
}

// DefaultHeader is the header the default handler sends.
const DefaultHeader = "X-DCC-tollgate-Metrics: dcctest 1085; Body=1 Fuz1=1 Fuz2=1"

// New starts a server and stops it at the end of the test; at that point
// it fails the test if a request broke the protocol (unless
// AllowProtocolErrors) or a connection did not end within 5 s.
func New(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := Start(cfg)
	if err != nil {
		t.Fatalf("dcctest: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("dcctest: %v", err)
		}
		if !cfg.AllowProtocolErrors {
			for i, r := range s.Requests() {
				if r.Err != nil && !errors.Is(r.Err, ErrClientGone) {
					t.Errorf("dcctest: request %d broke the protocol: %v", i, r.Err)
				}
			}
		}
	})
	return s
}

// Start starts a server; Close stops it.
func Start(cfg Config) (*Server, error) {
	if cfg.Network == "" {
		cfg.Network = "unix"
	}
	if cfg.Handler == nil {
		cfg.Handler = Fixed(Reply{Overall: 'A', Header: DefaultHeader})
	}
	if cfg.RecordLimit == 0 {
		cfg.RecordLimit = 1 << 20
	}
	if cfg.MaxLine <= 0 {
		cfg.MaxLine = 8 << 10
	}
	s := &Server{cfg: cfg, closing: make(chan struct{}), conns: make(map[net.Conn]struct{})}
	addr := cfg.Addr
	switch cfg.Network {
	case "unix":
		if addr == "" {
			// Unix socket paths are short (108 bytes): not t.TempDir.
			dir, err := os.MkdirTemp("", "dcctest")
			if err != nil {
				return nil, err
			}
			s.tmpdir = dir
			addr = filepath.Join(dir, "dccifd")
		}
	case "tcp", "tcp4", "tcp6":
		if addr == "" {
			addr = "127.0.0.1:0"
		}
	default:
		return nil, fmt.Errorf("dcctest: network %q", cfg.Network)
	}
	ln, err := net.Listen(cfg.Network, addr)
	if err != nil {
		if s.tmpdir != "" {
			os.RemoveAll(s.tmpdir)
		}
		return nil, err
	}
	s.ln = ln
	s.network = cfg.Network
	s.addr = ln.Addr().String()
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Network is "unix" or "tcp".
func (s *Server) Network() string { return s.network }

// Addr is the listening address: the socket path, or host:port.
func (s *Server) Addr() string { return s.addr }

// DCCAddress is the address in DCC's own notation: the socket path, or
// "host,port".
func (s *Server) DCCAddress() string {
	if s.network == "unix" {
		return s.addr
	}
	h, p, _ := net.SplitHostPort(s.addr)
	return h + "," + p
}

// Requests returns the finished requests, in the order they finished.
func (s *Server) Requests() []*Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Request(nil), s.reqs...)
}

// Accepted is the number of connections accepted so far.
func (s *Server) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// WaitRequests waits until n requests are finished or the timeout passes.
func (s *Server) WaitRequests(n int, timeout time.Duration) []*Request {
	end := time.Now().Add(timeout)
	for {
		r := s.Requests()
		if len(r) >= n || time.Now().After(end) {
			return r
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Close stops listening, closes every connection and waits (at most 5 s)
// for the connection goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		err = errors.New("connections still running 5 s after Close")
	}
	if s.tmpdir != "" {
		os.RemoveAll(s.tmpdir)
	}
	return err
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.accepted++
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.handle(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

// ErrProtocol marks a request that broke the protocol; ErrClientGone one
// the client abandoned (a reset, or the server closing).
var (
	ErrProtocol   = errors.New("dcctest: protocol violation")
	ErrClientGone = errors.New("dcctest: client gone")
)

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// recorder keeps the raw bytes (up to the limit), the count and the hash
// of the message part.
type recorder struct {
	req   *Request
	limit int
	hash  hash.Hash
}

func (r *recorder) record(p []byte) {
	r.req.Total += int64(len(p))
	if r.limit >= 0 {
		room := r.limit - len(r.req.Raw)
		if room < len(p) {
			r.req.Truncated = true
			p = p[:max(room, 0)]
		}
		r.req.Raw = append(r.req.Raw, p...)
	} else {
		r.req.Truncated = true
	}
}

func (s *Server) finish(req *Request) {
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	s.mu.Unlock()
}

// wait sleeps for d (forever if negative) or until the server closes.
func (s *Server) wait(d time.Duration) {
	if d < 0 {
		<-s.closing
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.closing:
	}
}

func (s *Server) handle(c net.Conn) {
	req := &Request{}
	rec := &recorder{req: req, limit: s.cfg.RecordLimit, hash: sha256.New()}
	br := bufio.NewReaderSize(c, 64<<10)

	// readLine returns one line without its LF; dccifd also strips
	// trailing CRs (it does not care whether lines end in CRLF).
	readLine := func() (string, error) {
		var line []byte
		for {
			frag, err := br.ReadSlice('\n')
			rec.record(frag)
			line = append(line, frag...)
			if len(line) > s.cfg.MaxLine {
				return "", protoErr("line longer than %d bytes", s.cfg.MaxLine)
			}
			if err == nil {
				break
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if err == io.EOF {
				return "", protoErr("truncated request: EOF in the envelope after %d bytes", req.Total)
			}
			return "", fmt.Errorf("%w: %v", ErrClientGone, err)
		}
		return strings.TrimRight(string(line[:len(line)-1]), "\r"), nil
	}

	fail := func(err error) {
		req.Err = err
		s.finish(req)
	}

	// 1. options
	line, err := readLine()
	if err != nil {
		fail(err)
		return
	}
	req.OptionsLine = line
	for _, w := range strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' }) {
		lw := strings.ToLower(w)
		if !s.knows(lw) {
			// dccifd: "unrecognized option value", then hangs up.
			fail(protoErr("unknown option %q", w))
			return
		}
		req.Options = append(req.Options, lw)
	}
	// 2. client
	if line, err = readLine(); err != nil {
		fail(err)
		return
	}
	req.ClientLine = line
	ipText, name, hasName := strings.Cut(line, "\r")
	switch {
	case ipText == "" && hasName && name != "":
		fail(protoErr("client name %q without an IP address", name))
		return
	case ipText == "", ipText == "0.0.0.0":
	default:
		ip, err := netip.ParseAddr(ipText)
		if err != nil || ip.Zone() != "" {
			fail(protoErr("bad client IP %q", ipText))
			return
		}
		req.ClientIP = ip
	}
	req.ClientName, req.HasClientName = name, hasName
	if strings.ContainsRune(name, '\r') {
		fail(protoErr("two carriage returns in the client line %q", line))
		return
	}
	// 3. HELO, 4. sender
	if req.Helo, err = readLine(); err != nil {
		fail(err)
		return
	}
	if strings.ContainsRune(req.Helo, '\r') {
		fail(protoErr("carriage return in the HELO line %q", req.Helo))
		return
	}
	if req.Sender, err = readLine(); err != nil {
		fail(err)
		return
	}
	if strings.ContainsRune(req.Sender, '\r') {
		fail(protoErr("carriage return in the sender line %q", req.Sender))
		return
	}
	// 5. recipients, 6. empty line
	for {
		if line, err = readLine(); err != nil {
			fail(err)
			return
		}
		if line == "" {
			break
		}
		addr, user, hasUser := strings.Cut(line, "\r")
		addr = strings.TrimRight(addr, " \t")
		if addr == "" || addr == "<>" {
			fail(protoErr("null recipient in %q", line))
			return
		}
		if strings.ContainsRune(user, '\r') {
			fail(protoErr("two carriage returns in the recipient line %q", line))
			return
		}
		req.Rcpts = append(req.Rcpts, Rcpt{Addr: addr, User: strings.TrimRight(user, " \t"), HasUser: hasUser})
	}

	rep := s.cfg.Handler(req)
	if rep.CloseAfterEnvelope {
		s.finish(req)
		return
	}
	if rep.StallRead != 0 {
		s.wait(rep.StallRead)
	}

	// 7. the message, until EOF
	chunk := rep.ReadChunk
	if chunk <= 0 {
		chunk = 4 << 10
	}
	buf := make([]byte, 32<<10)
	for {
		if rep.ReadDelay > 0 {
			s.wait(rep.ReadDelay)
			buf = buf[:min(chunk, cap(buf))]
		}
		n, err := br.Read(buf)
		if n > 0 {
			rec.record(buf[:n])
			rec.hash.Write(buf[:n])
			req.MessageLen += int64(n)
		}
		if err == io.EOF {
			req.HalfClosed = true
			break
		}
		if err != nil {
			fail(fmt.Errorf("%w: %v", ErrClientGone, err))
			return
		}
	}
	rec.hash.Sum(req.MessageSHA256[:0])
	if rep.Close {
		s.finish(req)
		return
	}
	if rep.Hang {
		s.finish(req)
		s.wait(-1)
		return
	}
	if rep.Delay > 0 {
		s.wait(rep.Delay)
	}
	out := rep.Raw
	if out == nil {
		if out, err = buildReply(req, rep); err != nil {
			fail(err)
			return
		}
	}
	// Record before the connection closes: a client that read the reply
	// to EOF finds its request in Requests.
	_, err = c.Write(out)
	req.Replied = err == nil
	s.finish(req)
}

func (s *Server) knows(w string) bool {
	for _, u := range s.cfg.UnknownOptions {
		if strings.EqualFold(u, w) {
			return false
		}
	}
	for _, k := range KnownOptions {
		if k == w {
			return true
		}
	}
	return false
}

// buildReply writes the reply as dccifd's ascii_done does. A reply dccifd
// cannot write (a letter it never sends, a recipient line of the wrong
// length, a recipient not greylisted under an overall G) is refused: the
// stand-in must not teach the client answers the real daemon never gives.
func buildReply(req *Request, rep Reply) ([]byte, error) {
	overall := rep.Overall
	if overall == 0 {
		overall = 'A'
	}
	if !strings.ContainsRune("ARGTS", rune(overall)) {
		return nil, fmt.Errorf("%w: overall letter %q", ErrBadReply, overall)
	}
	rcpts := rep.Rcpts
	if rep.RcptLetter != nil && rcpts == "" {
		var b strings.Builder
		for _, r := range req.Rcpts {
			b.WriteByte(rep.RcptLetter(r))
		}
		rcpts = b.String()
	}
	var b strings.Builder
	b.WriteByte(overall)
	b.WriteByte('\n')
	switch {
	case rep.EmptyRcpts:
	case rcpts != "":
		if err := checkRcptLetters(overall, rcpts, len(req.Rcpts)); err != nil {
			return nil, err
		}
		b.WriteString(rcpts)
	case overall == 'T':
	default:
		l := overall
		if l == 'S' {
			l = 'A'
		}
		b.WriteString(strings.Repeat(string(l), len(req.Rcpts)))
	}
	b.WriteByte('\n')
	if req.HasOption("header") || req.HasOption("cksums") {
		if rep.HeaderRaw != "" {
			b.WriteString(rep.HeaderRaw)
		} else if rep.Header != "" {
			b.WriteString(Fold(rep.Header))
		}
		b.WriteByte('\n')
	}
	return []byte(b.String()), nil
}

// ErrBadReply marks a Reply that dccifd would never write.
var ErrBadReply = errors.New("dcctest: not a reply dccifd writes")

// checkRcptLetters holds a recipient line to dccifd's ascii_done: one
// letter per recipient, A R or G, all G exactly when the overall letter is
// G (dccifd greylists a message as a whole), and no G otherwise.
func checkRcptLetters(overall byte, rcpts string, n int) error {
	if len(rcpts) != n {
		return fmt.Errorf("%w: %d recipient letters for %d recipients", ErrBadReply, len(rcpts), n)
	}
	for i := 0; i < len(rcpts); i++ {
		c := rcpts[i]
		switch {
		case c != 'A' && c != 'R' && c != 'G':
			return fmt.Errorf("%w: recipient letter %q", ErrBadReply, c)
		case (c == 'G') != (overall == 'G'):
			return fmt.Errorf("%w: recipient letter %q under overall %q", ErrBadReply, c, overall)
		}
	}
	return nil
}

// WhitelistHeader is the header dccifd writes for a message every
// recipient whitelisted (xhdr_whitelist: no brand, no server id).
func WhitelistHeader(host string) string { return "X-DCC--Metrics: " + host + "; whitelist" }

// Users plays dccifd's per-recipient whitelists (whiteclnt lines "ok
// env_To ADDR" and "many env_To ADDR", matched on the recipient address
// case-insensitively) for a message whose global counts are Bulk or not,
// with the answers dccifd gives (checked against DCC 2.3.167's dccifd.c and
// FACTS.md):
//
//   - every recipient "ok": A, all A, and the whitelist header;
//   - bulk: R for each recipient not "ok", A for the others, overall R
//     when any recipient rejects (dccifd's reject_tgts), with "bulk" in the
//     header;
//   - not bulk: R for a "many" recipient (dccifd logs "discard forced"),
//     overall A, as dccifd answered A / AR.
type Users struct {
	OK, Many []string
	Bulk     bool
	Brand    string // the header's brand; "" is "tollgate"
	Host     string // the header's host; "" is "dcctest"
}

// Handler answers as described above.
func (u Users) Handler() Handler {
	in := func(list []string, addr string) bool {
		addr = strings.Trim(addr, "<>")
		for _, a := range list {
			if strings.EqualFold(a, addr) {
				return true
			}
		}
		return false
	}
	return func(req *Request) Reply {
		brand, host := u.Brand, u.Host
		if brand == "" {
			brand = "tollgate"
		}
		if host == "" {
			host = "dcctest"
		}
		var letters strings.Builder
		allOK, rejects := len(req.Rcpts) > 0, false
		for _, r := range req.Rcpts {
			ok := in(u.OK, r.Addr)
			allOK = allOK && ok
			if !ok && (u.Bulk || in(u.Many, r.Addr)) {
				letters.WriteByte('R')
				rejects = rejects || u.Bulk
			} else {
				letters.WriteByte('A')
			}
		}
		rep := Reply{Overall: 'A', Rcpts: letters.String()}
		switch {
		case allOK:
			rep.Header = WhitelistHeader(host)
		case u.Bulk:
			rep.Header = "X-DCC-" + brand + "-Metrics: " + host + " 1085; bulk Body=many Fuz1=many Fuz2=many"
		default:
			rep.Header = "X-DCC-" + brand + "-Metrics: " + host + " 1085; Body=1 Fuz1=1 Fuz2=1"
		}
		if rejects {
			rep.Overall = 'R'
		}
		return rep
	}
}

// Fold folds an unfolded header line as dccifd's xhdr_add_str does, by
// playing its buffer: the name, then ": host id;" added in one piece, then
// every further piece ("bulk rep" is one) after a space; when a piece
// pushes the column past 78, the space before it becomes "\n\t" and the
// column restarts at the piece's length plus 9; no fold past 238 bytes. A
// whitelist header is one piece. The result ends with "\n".
func Fold(header string) string {
	name, value, ok := strings.Cut(header, ": ")
	if !ok {
		return header + "\n"
	}
	var pieces []string
	if strings.HasSuffix(value, "; whitelist") && !strings.Contains(strings.TrimSuffix(value, "; whitelist"), " ") {
		pieces = []string{": " + value}
	} else {
		words := strings.Split(value, " ")
		i := 0
		for i < len(words)-1 && !strings.HasSuffix(words[i], ";") {
			i++
		}
		pieces = append(pieces, ": "+strings.Join(words[:i+1], " "))
		for i++; i < len(words); i++ {
			if words[i] == "bulk" && i+1 < len(words) && words[i+1] == "rep" {
				pieces = append(pieces, "bulk rep")
				i++
				continue
			}
			pieces = append(pieces, words[i])
		}
	}
	buf := []byte(name)
	col := len(buf)
	for _, p := range pieces {
		if buf[len(buf)-1] == '\n' {
			buf[len(buf)-1] = ' '
			col++
		}
		at := len(buf)
		buf = append(buf, p...)
		col += len(p)
		buf = append(buf, '\n')
		if col > 78 && buf[at-1] == ' ' && len(buf) < 240-2 {
			buf = append(buf[:at-1], append([]byte("\n\t"), buf[at:]...)...)
			col = len(p) + 1 + 8
		}
	}
	return string(buf)
}

// Quote renders bytes for failure messages.
func Quote(b []byte) string { return strconv.Quote(string(b)) }
