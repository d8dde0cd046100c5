//go:build unix

package policy_test

// A whole milter session through tollgate's server with the real policy, as
// the daemon runs it, driven with go-milter's client over a unix socket: one
// connection per message, as Postfix opens one per SMTP connection. Client
// and server share the process, so compare each configuration with the null
// milter (go-milter's NoOpMilter) negotiating exactly what it negotiates.
//
//	go test -run '^$' -bench PolicySession -benchmem ./policy/
//
// See docs/performance.md for the figures.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/milter"
	"github.com/tollgate/tollgate/policy"
)

// sessionMessage is a message with n headers (benchHeaders) and a body that
// brings it to about size bytes.
func sessionMessage(size, n int) ([]milter.Header, []byte) {
	hdrs := benchHeaders(n)
	hb := 2
	for _, h := range hdrs {
		hb += len(h.Name) + len(h.Value) + 3
	}
	var body strings.Builder
	for i := 0; body.Len() < size-hb; i++ {
		fmt.Fprintf(&body, "%03d The quick brown fox jumps over the lazy dog, and the figures add up again\r\n", i%1000)
	}
	return hdrs, []byte(body.String())
}

// serveSession serves tollgate with rt, or go-milter's NoOpMilter negotiating
// protocol when rt is nil, on a fresh unix socket.
func serveSession(b *testing.B, rt milter.Runtime, protocol gomilter.OptProtocol, actions gomilter.OptAction) string {
	b.Helper()
	sock := filepath.Join(b.TempDir(), "m.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	if rt == nil {
		srv := gomilter.NewServer(gomilter.WithMilter(func() gomilter.Milter { return gomilter.NoOpMilter{} }),
			gomilter.WithProtocols(protocol), gomilter.WithActions(actions))
		go srv.Serve(ln)
		b.Cleanup(func() { srv.Close() })
		return sock
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil)) // the summary line is formatted, as in production
	srv := milter.NewServer(rt, milter.ServerOptions{Logger: log, Metrics: milter.NewMetrics(prometheus.NewRegistry())})
	go srv.Serve(ln)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return sock
}

func sessionClient(sock string) (*gomilter.Client, *gomilter.MacroBag) {
	c := gomilter.NewClient("unix", sock, gomilter.WithActions(gomilter.AllClientSupportedActionMasks))
	m := gomilter.NewMacroBag()
	for k, v := range map[string]string{"j": "mx.example.org", "{daemon_name}": "mx.example.org", "v": "Postfix 3.7.11",
		"{client_addr}": "203.0.113.5", "{client_port}": "40000", "{client_name}": "mail.example.net", "i": "4XkT2c0Zz3z9t",
		"{mail_addr}": "sender@example.net", "{rcpt_addr}": "user1@example.org"} {
		m.Set(k, v)
	}
	return c, m
}

// negotiatedOptions are the protocol flags and actions a milter at sock
// negotiates with go-milter's client.
func negotiatedOptions(b *testing.B, sock string) (gomilter.OptProtocol, gomilter.OptAction) {
	c, macros := sessionClient(sock)
	s, err := c.Session(macros)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var p gomilter.OptProtocol
	var a gomilter.OptAction
	for bit := 0; bit < 32; bit++ {
		if s.ProtocolOption(gomilter.OptProtocol(1 << bit)) {
			p |= gomilter.OptProtocol(1 << bit)
		}
		if s.ActionOption(gomilter.OptAction(1 << bit)) {
			a |= gomilter.OptAction(1 << bit)
		}
	}
	return p, a
}

func sendSessionMessage(b *testing.B, c *gomilter.Client, macros *gomilter.MacroBag, hdrs []milter.Header, body []byte, rcpts int) {
	s, err := c.Session(macros)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	check := func(act *gomilter.Action, err error) {
		if err != nil {
			b.Fatal(err)
		}
		if act.Type != gomilter.ActionContinue && act.Type != gomilter.ActionAccept {
			b.Fatalf("action %v", act)
		}
	}
	check(s.Conn("mail.example.net", gomilter.FamilyInet, 40000, "203.0.113.5"))
	check(s.Helo("mail.example.net"))
	check(s.Mail("sender@example.net", ""))
	for i := 1; i <= rcpts; i++ {
		check(s.Rcpt(fmt.Sprintf("user%d@example.org", i), ""))
	}
	check(s.DataStart())
	lead := s.ProtocolOption(gomilter.OptHeaderLeadingSpace)
	for _, h := range hdrs {
		v := strings.TrimPrefix(h.Value, " ")
		if lead {
			v = " " + v
		}
		check(s.HeaderField(h.Name, v, nil))
	}
	check(s.HeaderEnd())
	for rest := body; ; {
		chunk := rest[:min(len(rest), 65535)]
		rest = rest[len(chunk):]
		check(s.BodyChunk(chunk)) // go-milter's client needs one, even empty
		if len(rest) == 0 {
			break
		}
	}
	_, act, err := s.End()
	check(act, err)
}

func sessionCPU() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkPolicySession is one message per connection through the daemon's
// stack with the example configuration and with acl: {}, each next to the
// null milter negotiating the same.
func BenchmarkPolicySession(b *testing.B) {
	runtimeOf := func(b *testing.B, p *policy.Policy) milter.Runtime {
		return policy.NewRuntime(p, slog.New(slog.NewTextHandler(io.Discard, nil)), milter.NewMetrics(prometheus.NewRegistry()))
	}
	configs := []struct {
		name   string
		policy func(b *testing.B) *policy.Policy
	}{
		{"pass-through", func(b *testing.B) *policy.Policy { return parseBench(b, "acl: {}\n") }},
		{"example", loadExample},
	}
	for _, shape := range []struct {
		name                 string
		size, headers, rcpts int
	}{
		{"4K-10h-1r", 4 << 10, 10, 1},
		{"20K-100h-1r", 20 << 10, 100, 1},
		{"4K-10h-10r", 4 << 10, 10, 10},
	} {
		hdrs, body := sessionMessage(shape.size, shape.headers)
		for _, cfg := range configs {
			for _, null := range []bool{true, false} {
				name := shape.name + "/" + cfg.name
				if null {
					name = shape.name + "/null-" + cfg.name
				}
				b.Run(name, func(b *testing.B) {
					sock := serveSession(b, runtimeOf(b, cfg.policy(b)), 0, 0)
					if null {
						p, a := negotiatedOptions(b, sock)
						sock = serveSession(b, nil, p, a)
					}
					c, macros := sessionClient(sock)
					sendSessionMessage(b, c, macros, hdrs, body, shape.rcpts) // warm up
					cpu := sessionCPU()
					for b.Loop() {
						sendSessionMessage(b, c, macros, hdrs, body, shape.rcpts)
					}
					// CPU of client and server together: steadier than ns/op on a busy machine.
					b.ReportMetric(float64(sessionCPU()-cpu)/float64(b.N), "cpu-ns/op")
				})
			}
		}
	}
}
