package dcc

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Envelope is what dccifd is told before the message.
type Envelope struct {
	// ClientIP is the SMTP client's address; zero sends an empty line and
	// dccifd takes the client from the first Received: header.
	ClientIP netip.Addr
	// ClientName is the client's verified host name, sent after a carriage
	// return when set (and only with ClientIP: dccifd needs the address
	// when a name is given).
	ClientName string
	Helo       string
	// Sender is the envelope sender without angle brackets; "" is the null
	// sender (sent as "<>").
	Sender string
	// Rcpts are the recipients, in the order the per-recipient results
	// come back.
	Rcpts []Rcpt
}

// Rcpt is one envelope recipient.
type Rcpt struct {
	Addr string // without angle brackets
	User string // local user (for dccifd's per-user logs and whitelists), sent after a carriage return when known
}

// bufSize is the write buffer: headers are gathered into few writes; body
// chunks at least this big go straight to the socket.
const bufSize = 16 << 10

// Request is one message on one dccifd connection, streamed: Start writes
// the envelope, Header and Body the message as it arrives, Finish
// half-closes and reads the reply. Nothing is buffered beyond a small write
// buffer, whatever the message size.
//
// The first error sticks: later calls return it without doing anything,
// so a caller may ignore the errors of Header and Body and look at
// Finish's. Call Abort (or Finish) on every Request; Abort may be called
// from another goroutine to stop a pending call.
type Request struct {
	conn     net.Conn
	bw       *bufio.Writer
	nrcpts   int
	budget   time.Duration // what is left of Options.Timeout
	waited   time.Duration // time spent blocked on dccifd
	inBody   bool
	finished bool
	err      error
	ctx      context.Context
	stop     func() bool
	once     sync.Once
	aborted  atomic.Bool
	written  int64
}

// Start validates the options, connects to dccifd and writes the envelope
// (lines 1 to 6 of the protocol: options, client, HELO, sender,
// recipients, empty line). extraOptions are option words for this message
// only (e.g. "grey-off", "query", "no-reject"), checked like
// Options.Options. ctx bounds the whole request: when it is done, pending
// and later calls fail with ErrCanceled.
func Start(ctx context.Context, o Options, env Envelope, extraOptions ...string) (*Request, error) {
	c, err := o.compile()
	if err != nil {
		return nil, err
	}
	words := c.words
	if len(extraOptions) > 0 {
		words, err = ValidateOptions(append(append([]string(nil), c.words...), extraOptions...)...)
		if err != nil {
			return nil, err
		}
	}
	if err := checkEnvelope(&env); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, newErr(ErrCanceled, "connect", "", err)
	}

	dial := o.Dialer
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, c.timeout)
	conn, err := dial(dctx, c.network, c.addr)
	dialErr := dctx.Err()
	cancel()
	waited := time.Since(start)
	if err != nil {
		kind := ErrDial
		switch {
		case ctx.Err() != nil:
			kind = ErrCanceled
		case classify(err) == ErrTimeout || dialErr != nil:
			kind = ErrTimeout
		}
		return nil, newErr(kind, "connect", c.network+" "+c.addr, err)
	}
	r := &Request{
		conn:   conn,
		bw:     bufio.NewWriterSize(conn, bufSize),
		nrcpts: len(env.Rcpts),
		budget: c.timeout - waited,
		waited: waited,
		ctx:    ctx,
	}
	// Cancellation closes the connection, which ends any pending call.
	r.stop = context.AfterFunc(ctx, r.close)

	// The envelope is small, but many recipients can fill the buffer:
	// every byte of it is written under the deadline. Flushing now shows
	// a dccifd that is down or refuses the request at once, not at the
	// end of the message.
	err = r.io("write envelope", func() error {
		b := r.bw
		for i, w := range words {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(w)
		}
		b.WriteByte('\n')
		if env.ClientIP.IsValid() {
			b.WriteString(env.ClientIP.Unmap().WithZone("").String())
			if env.ClientName != "" {
				b.WriteByte('\r')
				b.WriteString(env.ClientName)
			}
		}
		b.WriteByte('\n')
		b.WriteString(env.Helo)
		b.WriteByte('\n')
		if env.Sender == "" {
			b.WriteString("<>")
		} else {
			b.WriteString(env.Sender)
		}
		b.WriteByte('\n')
		for _, rc := range env.Rcpts {
			b.WriteString(rc.Addr)
			if rc.User != "" {
				b.WriteByte('\r')
				b.WriteString(rc.User)
			}
			b.WriteByte('\n')
		}
		b.WriteByte('\n')
		return b.Flush()
	})
	if err != nil {
		r.Abort()
		return nil, err
	}
	return r, nil
}

// checkEnvelope refuses fields that would break the line structure.
func checkEnvelope(env *Envelope) error {
	bad := func(field, v string) error {
		return newErr(ErrRequest, "envelope", fmt.Sprintf("%s %q: line break or NUL", field, v), nil)
	}
	const ctl = "\r\n\x00"
	if strings.ContainsAny(env.ClientName, ctl) {
		return bad("client name", env.ClientName)
	}
	if strings.ContainsAny(env.Helo, ctl) {
		return bad("HELO", env.Helo)
	}
	if strings.ContainsAny(env.Sender, ctl) {
		return bad("sender", env.Sender)
	}
	for _, rc := range env.Rcpts {
		if strings.ContainsAny(rc.Addr, ctl) {
			return bad("recipient", rc.Addr)
		}
		if strings.ContainsAny(rc.User, ctl) {
			return bad("recipient user", rc.User)
		}
		// An empty line ends the recipient list; dccifd hangs up on "<>".
		if a := strings.TrimSpace(rc.Addr); a == "" || a == "<>" {
			return newErr(ErrRequest, "envelope", fmt.Sprintf("empty recipient %q", rc.Addr), nil)
		}
	}
	return nil
}

// Header writes one header field as received: "Name:" + value + CRLF.
// value is everything after the colon, leading space and folds included
// (a milter that did not negotiate the leading space should pass " " +
// value, so dccifd sees the header as the MTA has it).
func (r *Request) Header(name, value string) error {
	if err := r.usable("header"); err != nil {
		return err
	}
	if r.inBody {
		return r.fail(newErr(ErrRequest, "header", "header after the end of the headers", nil))
	}
	if err := checkHeader(name, value); err != nil {
		return r.fail(err)
	}
	n := len(name) + 1 + len(value) + 2
	if n <= r.bw.Available() {
		r.bw.WriteString(name)
		r.bw.WriteByte(':')
		r.bw.WriteString(value)
		r.bw.WriteString("\r\n")
		r.written += int64(n)
		return nil
	}
	for _, s := range [...]string{name, ":", value, "\r\n"} {
		if err := r.writeString(s); err != nil {
			return err
		}
	}
	return nil
}

// checkHeader refuses what would change the message's structure as dccifd
// reads it: a bad name, NUL, or a line break not followed by white space.
func checkHeader(name, value string) error {
	if name == "" {
		return newErr(ErrRequest, "header", "empty header name", nil)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c >= 127 || c == ':' {
			return newErr(ErrRequest, "header", fmt.Sprintf("bad header name %q", name), nil)
		}
	}
	for i := 0; i < len(value); i++ {
		switch value[i] {
		case 0:
			return newErr(ErrRequest, "header", "NUL in header "+name, nil)
		case '\r', '\n':
			j := i + 1
			if value[i] == '\r' && j < len(value) && value[j] == '\n' {
				j++
			}
			if j >= len(value) || (value[j] != ' ' && value[j] != '\t') {
				return newErr(ErrRequest, "header", "line break not followed by white space in header "+name, nil)
			}
			i = j
		}
	}
	return nil
}

// EndOfHeaders writes the empty line between headers and body. Body and
// Finish write it if it was not.
func (r *Request) EndOfHeaders() error {
	if err := r.usable("end of headers"); err != nil {
		return err
	}
	if r.inBody {
		return nil
	}
	r.inBody = true
	return r.writeString("\r\n")
}

// Body writes a chunk of the body as received. The chunk is not kept.
func (r *Request) Body(chunk []byte) error {
	if err := r.EndOfHeaders(); err != nil {
		return err
	}
	if len(chunk) == 0 {
		return nil
	}
	if len(chunk) <= r.bw.Available() {
		r.bw.Write(chunk)
		r.written += int64(len(chunk))
		return nil
	}
	return r.io("write", func() error {
		n, err := r.bw.Write(chunk)
		r.written += int64(n)
		return err
	})
}

// Finish ends the message: it flushes, half-closes the connection (the
// protocol's only end marker) and reads the reply to EOF within what is
// left of the budget. The connection is closed afterwards, whatever the
// outcome.
func (r *Request) Finish() (*Result, error) {
	defer r.Abort()
	if err := r.EndOfHeaders(); err != nil {
		return nil, err
	}
	if err := r.flush(); err != nil {
		return nil, err
	}
	r.finished = true
	cw, ok := r.conn.(interface{ CloseWrite() error })
	if !ok {
		return nil, r.fail(newErr(ErrIO, "half-close", fmt.Sprintf("%T cannot half-close", r.conn), nil))
	}
	if err := r.io("half-close", cw.CloseWrite); err != nil {
		return nil, err
	}
	var res *Result
	err := r.io("read reply", func() error {
		var err error
		res, err = ParseReply(r.conn, r.nrcpts)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// Abort closes the connection. It is safe after errors, after Finish, more
// than once, and from another goroutine while a call is pending (which
// then fails). dccifd cannot be told that a message was cut short: EOF is
// the protocol's only end marker, so it checks what it received.
func (r *Request) Abort() {
	if r == nil {
		return
	}
	r.aborted.Store(true)
	r.close()
	if r.stop != nil {
		r.stop()
	}
}

func (r *Request) close() { r.once.Do(func() { r.conn.Close() }) }

// Waited is the time spent waiting on dccifd so far: connecting, writes
// that blocked, and the reply. It is what Options.Timeout bounds.
func (r *Request) Waited() time.Duration { return r.waited }

// Written is the number of message bytes (headers, empty line, body)
// accepted so far.
func (r *Request) Written() int64 { return r.written }

func (r *Request) usable(op string) error {
	if r.err != nil {
		return r.err
	}
	if r.finished {
		return r.fail(newErr(ErrRequest, op, "request already finished", nil))
	}
	if r.aborted.Load() {
		return r.fail(newErr(ErrRequest, op, "request aborted", nil))
	}
	return nil
}

func (r *Request) fail(err error) error {
	if r.err == nil {
		r.err = err
	}
	return r.err
}

func (r *Request) writeString(s string) error {
	if len(s) <= r.bw.Available() {
		r.bw.WriteString(s)
		r.written += int64(len(s))
		return nil
	}
	return r.io("write", func() error {
		n, err := r.bw.WriteString(s)
		r.written += int64(n)
		return err
	})
}

func (r *Request) flush() error {
	if r.bw.Buffered() == 0 {
		return r.usable("write")
	}
	return r.io("write", r.bw.Flush)
}

// io runs one blocking operation under what is left of the budget, and
// charges the time it took.
func (r *Request) io(op string, f func() error) error {
	if r.err != nil {
		return r.err
	}
	if err := r.ctx.Err(); err != nil {
		return r.fail(newErr(ErrCanceled, op, "", err))
	}
	if r.budget <= 0 {
		return r.fail(newErr(ErrTimeout, op, "time budget used up", nil))
	}
	start := time.Now()
	r.conn.SetDeadline(start.Add(r.budget))
	err := f()
	d := time.Since(start)
	r.waited += d
	r.budget -= d
	if err == nil {
		return nil
	}
	if cerr := r.ctx.Err(); cerr != nil {
		return r.fail(newErr(ErrCanceled, op, "", cerr))
	}
	if r.aborted.Load() {
		return r.fail(newErr(ErrCanceled, op, "request aborted", err))
	}
	return r.fail(wrap(op, err))
}
