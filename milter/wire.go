package milter

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	gomilter "github.com/d--j/go-milter"
)

// The wire is owned here, whatever go-milter does inside: go-milter v0.10.2
// reads a 4-byte length, allocates it (up to 512 MiB) and then slices the
// packet trusting the peer, in the goroutine it starts per connection where
// no recover can reach. wireConn reads each packet whole before go-milter
// sees a byte of it, checks its length and the fields its command must carry,
// and closes the connection on anything go-milter would choke on.

// Wire violation reasons, the closed label set of
// tollgate_wire_violations_total.
const (
	violEmpty          = "empty_packet"
	violOptNeg         = "bad_optneg"
	violConnect        = "bad_connect"
	violHelo           = "bad_helo"
	violMail           = "bad_mail"
	violRcpt           = "bad_rcpt"
	violHeader         = "bad_header"
	violMacro          = "bad_macro"
	violBodyChunk      = "body_chunk_too_large"
	violUnknownStr     = "bad_unknown"
	violUnknownCommand = "unknown_command"
	violTruncated      = "truncated"
	violPanic          = "panic"
)

var wireViolations = []string{violEmpty, violOptNeg, violConnect, violHelo, violMail, violRcpt, violHeader, violMacro,
	violBodyChunk, violUnknownStr, violUnknownCommand, violTruncated, violPanic}

// Limit names, the closed label set of tollgate_limits_hit_total.
const (
	limitConnections = "max_connections"
	limitIdle        = "idle_timeout"
	limitPacket      = "max_packet"
	limitHeaders     = "max_headers"
	limitHeaderBytes = "max_header_bytes"
	// pooledPacketSize holds a whole 64 KiB body chunk packet (length,
	// command byte, chunk): the largest packet Postfix and Sendmail send.
	pooledPacketSize = 64<<10 + 8
	readBufferSize   = 4 << 10 // coalesces the small packets of a session (macros, envelope) into one read
)

// Buffers are borrowed only while a packet is read and handed on: an idle
// connection holds none.
var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferSize) }}
	packetPool = sync.Pool{New: func() any { b := make([]byte, 0, pooledPacketSize); return &b }}
)

var limitNames = []string{limitConnections, limitIdle, limitPacket, limitHeaders, limitHeaderBytes}

// errWireClosed tells go-milter the connection is gone; it wraps
// net.ErrClosed so that go-milter ends the session without a warning of its
// own (tollgate already logged why).
var errWireClosed = fmt.Errorf("milter: connection closed at the wire: %w", net.ErrClosed)

// wireConn is the net.Conn go-milter gets. Reads hand out one validated
// packet at a time; writes go straight through.
type wireConn struct {
	net.Conn
	guard *wireGuard
	r     *bufio.Reader

	pkt    []byte // the validated packet being handed out, its 4-byte length included
	off    int
	pooled *[]byte // pkt's buffer when it came from packetPool
	head   [4]byte // the length being read; here, not on the stack, so it is not allocated per packet

	negotiated bool
	maxChunk   int       // largest body chunk, from the negotiation
	deadline   time.Time // what go-milter asked for with SetReadDeadline

	closeOnce sync.Once
	closeErr  error
}

// wireGuard is what the connections of one listener share.
type wireGuard struct {
	srv  *Server
	open atomic.Int64
}

func (g *wireGuard) newConn(c net.Conn) *wireConn {
	g.open.Add(1)
	return &wireConn{Conn: c, guard: g, maxChunk: int(gomilter.DataSize64K)}
}

func (c *wireConn) SetReadDeadline(t time.Time) error {
	c.deadline = t
	return nil
}

func (c *wireConn) SetDeadline(t time.Time) error {
	c.deadline = t
	return c.Conn.SetWriteDeadline(t)
}

func (c *wireConn) Close() error {
	c.closeOnce.Do(func() {
		c.closeErr = c.Conn.Close()
		c.guard.open.Add(-1)
	})
	return c.closeErr
}

func (c *wireConn) Read(p []byte) (n int, err error) {
	defer func() {
		// The last line of defence: a bug here must end this connection,
		// never the daemon.
		if v := recover(); v != nil {
			c.guard.srv.recovered("wire", v)
			n, err = 0, c.violation(violPanic, "")
		}
	}()
	if c.off == len(c.pkt) {
		if err := c.next(); err != nil {
			c.release()
			return 0, err
		}
	}
	n = copy(p, c.pkt[c.off:])
	c.off += n
	if c.off == len(c.pkt) {
		c.releasePacket()
		if c.r.Buffered() == 0 {
			c.release()
		}
	}
	return n, nil
}

// releasePacket gives the packet buffer back. Only the goroutine that reads
// touches the buffers, so this never races with a Close from elsewhere.
func (c *wireConn) releasePacket() {
	if c.pooled != nil {
		*c.pooled = c.pkt[:0]
		packetPool.Put(c.pooled)
	}
	c.pkt, c.off, c.pooled = nil, 0, nil
}

// release gives every buffer back.
func (c *wireConn) release() {
	c.releasePacket()
	if c.r != nil {
		c.r.Reset(nil)
		readerPool.Put(c.r)
		c.r = nil
	}
}

// next reads one whole packet from the peer and checks it.
func (c *wireConn) next() error {
	lim := c.guard.srv.limits()
	deadline, idle := c.deadline, false
	if c.negotiated && lim.IdleTimeout > 0 {
		if d := time.Now().Add(lim.IdleTimeout); deadline.IsZero() || d.Before(deadline) {
			deadline, idle = d, true
		}
	}
	if err := c.Conn.SetReadDeadline(deadline); err != nil {
		return err
	}
	if c.r == nil {
		c.r = readerPool.Get().(*bufio.Reader)
		c.r.Reset(c.Conn)
	}
	if _, err := io.ReadFull(c.r, c.head[:]); err != nil {
		if idle && errors.Is(err, os.ErrDeadlineExceeded) {
			c.guard.srv.limitHit(limitIdle, "no packet from the MTA within idle_timeout; connection closed", "idle_timeout", lim.IdleTimeout.String())
			c.Close()
			return errWireClosed
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return c.violation(violTruncated, "")
		}
		return err // EOF, a closed connection, go-milter's own deadline: go-milter knows these
	}
	length := binary.BigEndian.Uint32(c.head[:])
	if length == 0 {
		return c.violation(violEmpty, "")
	}
	if int64(length) > int64(lim.MaxPacket) {
		c.guard.srv.limitHit(limitPacket, "milter packet larger than max_packet; connection closed",
			"announced", length, "max_packet", lim.MaxPacket)
		c.Close()
		return errWireClosed
	}
	if err := c.readBody(int(length)); err != nil {
		if idle && errors.Is(err, os.ErrDeadlineExceeded) {
			c.guard.srv.limitHit(limitIdle, "packet not completed within idle_timeout; connection closed", "idle_timeout", lim.IdleTimeout.String())
			c.Close()
			return errWireClosed
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return c.violation(violTruncated, "")
		}
		return err
	}
	body := c.pkt[4:]
	if reason, detail := c.check(body[0], body[1:]); reason != "" {
		return c.violation(reason, detail)
	}
	return nil
}

// readBody reads the packet into c.pkt. A packet larger than the pooled
// buffers grows its own only as bytes arrive: an announced length costs
// nothing until it is sent.
func (c *wireConn) readBody(length int) error {
	total := 4 + length
	var buf []byte
	if total <= pooledPacketSize {
		c.pooled = packetPool.Get().(*[]byte)
		buf = (*c.pooled)[:0]
	} else {
		buf = make([]byte, 0, pooledPacketSize)
	}
	buf = append(buf, c.head[:]...)
	for len(buf) < total {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(total, 2*cap(buf)))
			copy(grown, buf)
			buf = grown
		}
		n, err := c.r.Read(buf[len(buf):min(cap(buf), total)])
		buf = buf[:len(buf)+n]
		if err != nil && len(buf) < total {
			c.pkt = buf
			return err
		}
	}
	c.pkt, c.off = buf, 0
	return nil
}

// violation closes the connection and says why, once per kind and interval.
func (c *wireConn) violation(reason, detail string) error {
	s := c.guard.srv
	s.metrics.WireViolations.WithLabelValues(reason).Inc()
	attrs := []any{"reason", reason}
	if detail != "" {
		attrs = append(attrs, "detail", detail)
	}
	s.warnLog.Warn("malformed milter packet; connection closed", attrs...)
	c.Close()
	return errWireClosed
}

// check validates one packet: code is its command byte and data the rest.
// It accepts exactly what go-milter can take apart without going out of
// bounds, and what Postfix and Sendmail send: every string NUL-terminated.
func (c *wireConn) check(code byte, data []byte) (reason, detail string) {
	if !c.negotiated {
		// OPTNEG: version, actions, protocol (4 bytes each).
		if code != 'O' || len(data) < 12 {
			return violOptNeg, "the first packet must be the option negotiation"
		}
		c.negotiated = true
		mask := binary.BigEndian.Uint32(data[8:12])
		offered := gomilter.DataSize64K
		switch {
		case mask&(1<<29) != 0: // SMFIP_MDS_1M
			offered = gomilter.DataSize1M
		case mask&(1<<28) != 0: // SMFIP_MDS_256K
			offered = gomilter.DataSize256K
		}
		c.maxChunk = int(chunkSize(offered, c.guard.srv.limits().MaxPacket))
		return "", ""
	}
	switch code {
	case 'C': // CONNECT: host NUL family [port(2) address NUL]
		host := bytes.IndexByte(data, 0)
		if host < 0 || host+1 >= len(data) {
			return violConnect, "host name or family missing"
		}
		rest := data[host+2:]
		switch data[host+1] {
		case 'U':
		case 'L', '4', '6':
			if len(rest) < 3 || bytes.IndexByte(rest[2:], 0) != len(rest)-3 {
				return violConnect, "port or NUL-terminated address missing"
			}
		default:
			return violConnect, "unknown address family"
		}
	case 'H': // HELO name NUL
		if !terminated(data) {
			return violHelo, ""
		}
	case 'M': // MAIL sender NUL [esmtp-arg NUL]...
		if !terminated(data) {
			return violMail, ""
		}
	case 'R': // RCPT recipient NUL [esmtp-arg NUL]...
		if !terminated(data) {
			return violRcpt, ""
		}
	case 'L': // HEADER name NUL value NUL
		name := bytes.IndexByte(data, 0)
		if name < 1 || !terminated(data) || bytes.Count(data, []byte{0}) != 2 {
			return violHeader, ""
		}
	case 'D': // MACRO stage [name NUL value NUL]...
		if len(data) == 0 || bytes.IndexByte([]byte("CHMRTNELUAB"), data[0]) < 0 || len(data) > 1 && !terminated(data[1:]) {
			return violMacro, ""
		}
	case 'B': // BODY chunk
		if len(data) > c.maxChunk {
			return violBodyChunk, fmt.Sprintf("%d bytes, %d negotiated", len(data), c.maxChunk)
		}
	case 'U': // UNKNOWN command NUL
		if !terminated(data) {
			return violUnknownStr, ""
		}
	case 'T', 'N', 'E', 'A', 'Q', 'K':
		// DATA, EOH, EOB, ABORT, QUIT, QUIT_NC: go-milter reads nothing of them.
	default:
		// A second OPTNEG included: go-milter would end the session anyway.
		return violUnknownCommand, fmt.Sprintf("command %q", code)
	}
	return "", ""
}

// terminated reports whether data holds at least one string and ends with NUL.
func terminated(data []byte) bool {
	return len(data) > 0 && data[len(data)-1] == 0
}
