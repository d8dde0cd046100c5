//go:build e2e

package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/d--j/go-milter"
)

// The macros the recording milter asks for at each stage: everything
// Postfix or Sendmail may know, so that the trace shows what the MTA
// actually has.
var requestedMacros = map[milter.MacroStage][]milter.MacroName{
	milter.StageConnect: {"j", "v", "_", "{daemon_name}", "{daemon_addr}", "{daemon_port}", "{if_name}", "{if_addr}",
		"{client_addr}", "{client_port}", "{client_name}", "{client_ptr}", "{client_resolve}", "{client_connections}"},
	milter.StageHelo: {"{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}", "{cert_issuer}", "{client_addr}", "{client_name}"},
	milter.StageMail: {"i", "r", "s", "{auth_type}", "{auth_authen}", "{auth_author}", "{auth_ssf}",
		"{mail_addr}", "{mail_host}", "{mail_mailer}", "{client_addr}", "{client_name}"},
	milter.StageRcpt: {"i", "{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}", "{nrcpts}"},
	milter.StageData: {"i"},
	milter.StageEOH:  {"i"},
	milter.StageEOM:  {"i", "{msg_id}", "{msg_size}"},
}

// watchedMacros are what recordingMilter keeps per connection, as seen at
// end-of-message (or at the last stage the connection reached).
var watchedMacros = []milter.MacroName{"j", "_", "{daemon_name}", "{daemon_addr}", "{daemon_port}",
	"{client_addr}", "{client_port}", "{client_name}", "{client_ptr}",
	"{auth_type}", "{auth_authen}", "{auth_author}", "i"}

// milterConn is what recordingMilter learned on one milter connection.
type milterConn struct {
	Host, Family, Addr string // the connect packet's arguments
	Port               uint16
	Helo               string
	From               string
	Macros             map[milter.MacroName]string // watchedMacros that arrived, last value
	EOM                bool                        // the connection saw end-of-message
}

// milterRecorder is a do-nothing milter that records every milter
// connection, plus a sniffer that decodes what the MTA sends on the wire.
type milterRecorder struct {
	Addr string // 127.0.0.1:port

	mu     sync.Mutex
	conns  []*milterConn
	traces []*wireTrace
}

// startRecordingMilter serves recordingMilter on a loopback port. With
// request, it asks the MTA for requestedMacros; without, the MTA sends its
// configured lists.
func startRecordingMilter(t *testing.T, request bool) *milterRecorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &milterRecorder{Addr: ln.Addr().String()}
	opts := []milter.Option{milter.WithMilter(func() milter.Milter {
		c := &milterConn{Macros: map[string]string{}}
		r.mu.Lock()
		r.conns = append(r.conns, c)
		r.mu.Unlock()
		return &recordingMilter{r: r, c: c}
	})}
	if request {
		for st, names := range requestedMacros {
			opts = append(opts, milter.WithMacroRequest(st, names))
		}
	}
	srv := milter.NewServer(opts...)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(&sniffListener{Listener: ln, r: r})
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	})
	return r
}

// Conns returns the milter connections that reached the connect stage,
// oldest first.
func (r *milterRecorder) Conns() []milterConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []milterConn
	for _, c := range r.conns {
		if c.Family != "" {
			cc := *c
			cc.Macros = make(map[string]string, len(c.Macros))
			for k, v := range c.Macros {
				cc.Macros[k] = v
			}
			out = append(out, cc)
		}
	}
	return out
}

// waitConns polls until n milter connections have ended (the MTA closed
// them) and returns what the milter recorded.
func (r *milterRecorder) waitConns(t *testing.T, n int, timeout time.Duration) []milterConn {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r.mu.Lock()
		closed := 0
		for _, tr := range r.traces {
			if tr.closed {
				closed++
			}
		}
		r.mu.Unlock()
		if closed >= n {
			return r.Conns()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d milter connections ended after %v, want %d:\n%s", closed, timeout, n, r.Trace())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Trace renders everything the MTA sent, one milter connection after the
// other, one command a line.
func (r *milterRecorder) Trace() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for i, tr := range r.traces {
		fmt.Fprintf(&b, "milter connection %d:\n", i+1)
		for _, l := range tr.lines {
			fmt.Fprintf(&b, "  %s\n", l)
		}
		if tr.closed {
			b.WriteString("  (ended)\n")
		}
	}
	return b.String()
}

type recordingMilter struct {
	milter.NoOpMilter
	r *milterRecorder
	c *milterConn
}

func (m *recordingMilter) note(mod milter.Modifier) {
	m.r.mu.Lock()
	defer m.r.mu.Unlock()
	for _, name := range watchedMacros {
		if v, ok := mod.GetEx(name); ok {
			m.c.Macros[name] = v
		}
	}
}

func (m *recordingMilter) Connect(host, family string, port uint16, addr string, mod milter.Modifier) (*milter.Response, error) {
	m.r.mu.Lock()
	m.c.Host, m.c.Family, m.c.Port, m.c.Addr = host, family, port, addr
	m.r.mu.Unlock()
	m.note(mod)
	return milter.RespContinue, nil
}

func (m *recordingMilter) Helo(name string, mod milter.Modifier) (*milter.Response, error) {
	m.r.mu.Lock()
	m.c.Helo = name
	m.r.mu.Unlock()
	m.note(mod)
	return milter.RespContinue, nil
}

func (m *recordingMilter) MailFrom(from, _ string, mod milter.Modifier) (*milter.Response, error) {
	m.r.mu.Lock()
	m.c.From = from
	m.r.mu.Unlock()
	m.note(mod)
	return milter.RespContinue, nil
}

func (m *recordingMilter) RcptTo(_, _ string, mod milter.Modifier) (*milter.Response, error) {
	m.note(mod)
	return milter.RespContinue, nil
}

func (m *recordingMilter) EndOfMessage(mod milter.Modifier) (*milter.Response, error) {
	m.note(mod)
	m.r.mu.Lock()
	m.c.EOM = true
	m.r.mu.Unlock()
	return milter.RespAccept, nil
}

type sniffListener struct {
	net.Listener
	r *milterRecorder
}

func (l *sniffListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tr := &wireTrace{r: l.r}
	l.r.mu.Lock()
	l.r.traces = append(l.r.traces, tr)
	l.r.mu.Unlock()
	return &sniffConn{Conn: c, tr: tr}, nil
}

type sniffConn struct {
	net.Conn
	tr *wireTrace
}

func (c *sniffConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.tr.feed(p[:n], err != nil)
	return n, err
}

// wireTrace decodes the MTA-to-milter half of the milter protocol: packets
// of a 4-byte length, a command letter and its data.
type wireTrace struct {
	r      *milterRecorder
	buf    []byte // touched only by the connection's reader
	lines  []string
	closed bool
}

func (tr *wireTrace) feed(p []byte, eof bool) {
	tr.buf = append(tr.buf, p...)
	var lines []string
	for len(tr.buf) >= 4 {
		n := int(binary.BigEndian.Uint32(tr.buf))
		if len(tr.buf) < 4+n || n == 0 {
			break
		}
		lines = append(lines, describePacket(tr.buf[4], tr.buf[5:4+n]))
		// After quit the milter hangs up, before the MTA would.
		eof = eof || tr.buf[4] == 'Q'
		tr.buf = tr.buf[4+n:]
	}
	tr.r.mu.Lock()
	tr.lines = append(tr.lines, lines...)
	tr.closed = tr.closed || eof
	tr.r.mu.Unlock()
}

func describePacket(cmd byte, data []byte) string {
	fields := func(b []byte) []string {
		return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
	}
	switch cmd {
	case 'O':
		if len(data) >= 12 {
			return fmt.Sprintf("O negotiate version %d actions %#x protocol %#x", binary.BigEndian.Uint32(data),
				binary.BigEndian.Uint32(data[4:]), binary.BigEndian.Uint32(data[8:]))
		}
	case 'D':
		if len(data) >= 1 {
			kv := fields(data[1:])
			var pairs []string
			for i := 0; i+1 < len(kv); i += 2 {
				pairs = append(pairs, fmt.Sprintf("%s=%q", kv[i], kv[i+1]))
			}
			return fmt.Sprintf("D macros for %c: %s", data[0], strings.Join(pairs, " "))
		}
	case 'C':
		host, rest, _ := strings.Cut(string(data), "\x00")
		if len(rest) >= 3 && rest[0] != 'U' {
			return fmt.Sprintf("C connect host=%q family=%c port=%d addr=%q", host, rest[0],
				binary.BigEndian.Uint16([]byte(rest[1:3])), strings.TrimSuffix(rest[3:], "\x00"))
		}
		return fmt.Sprintf("C connect host=%q %q", host, rest)
	case 'H':
		return fmt.Sprintf("H helo %q", fields(data))
	case 'M':
		return fmt.Sprintf("M mail %q", fields(data))
	case 'R':
		return fmt.Sprintf("R rcpt %q", fields(data))
	case 'L':
		return fmt.Sprintf("L header %q", fields(data))
	case 'B':
		return fmt.Sprintf("B body (%d bytes)", len(data))
	case 'T', 'N', 'E', 'A', 'Q', 'K':
		names := map[byte]string{'T': "data", 'N': "end of header", 'E': "end of message", 'A': "abort", 'Q': "quit",
			'K': "quit, new connection"}
		return fmt.Sprintf("%c %s", cmd, names[cmd])
	}
	return fmt.Sprintf("%c %q", cmd, data)
}
