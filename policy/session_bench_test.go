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
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/benchcpu"
	"github.com/tollgate/tollgate/internal/miltertest"
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
					sock := miltertest.Serve(b, runtimeOf(b, cfg.policy(b)), 0, 0)
					if null {
						p, a := miltertest.Negotiated(b, sock)
						sock = miltertest.Serve(b, nil, p, a)
					}
					c, macros := miltertest.Client(sock)
					miltertest.Send(b, c, macros, hdrs, body, shape.rcpts) // warm up
					cpuDone := benchcpu.Report(b)
					for b.Loop() {
						miltertest.Send(b, c, macros, hdrs, body, shape.rcpts)
					}
					cpuDone() // client and server together
				})
			}
		}
	}
}
