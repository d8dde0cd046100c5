package milter_test

// Benchmarks of a whole milter session, driven as an MTA does with
// go-milter's client over a unix socket: one connection per message (as
// Postfix opens one per SMTP connection), connect, helo, mail, rcpt, data,
// headers, body, end of message. Client and server share the process, so
// ns/op and B/op include the client's part: compare with the null milter
// sub-benchmarks, which run the same client against go-milter's NoOpMilter.
// The configurations here are made of test modules (no policy);
// policy/session_bench_test.go runs the same with the real example policy.
//
//	go test -run '^$' -bench Session -benchmem ./milter/
//
// See docs/performance.md for the figures.

import (
	"context"
	"fmt"
	"strings"
	"testing"

	gomilter "github.com/d--j/go-milter"

	"github.com/tollgate/tollgate/internal/benchcpu"
	"github.com/tollgate/tollgate/internal/miltertest"
	"github.com/tollgate/tollgate/milter"
)

// benchMessage is a message with n headers (a typical set, then Received
// lines) and a body that brings it to about size bytes.
func benchMessage(size, n int) ([]milter.Header, []byte) {
	base := []milter.Header{
		{Name: "Received", Value: "from [192.168.1.20] (dsl-20.example.net [198.51.100.20])\n\tby mail.example.net (Postfix) with ESMTPSA id 4XkT2c0Zz3z9t\n\tfor <user1@example.org>; Tue, 03 Mar 2026 10:15:02 +0100 (CET)"},
		{Name: "DKIM-Signature", Value: "v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.net;\n\ts=mail2026; t=1772529302;\n\th=from:to:subject:date:message-id:mime-version:content-type;\n\tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\n\tb=dzdVyOfAKCdLXdJOc9G2q8LoXSlEniSbav+yuU4zGeeruD00lszZVoG4ZHRNiYzR"},
		{Name: "From", Value: "Alice Sender <sender@example.net>"},
		{Name: "To", Value: "Bob Recipient <user1@example.org>"},
		{Name: "Subject", Value: "Quarterly figures, draft for review"},
		{Name: "Date", Value: "Tue, 03 Mar 2026 10:15:01 +0100"},
		{Name: "Message-ID", Value: "<20260303091501.4XkT2c0Zz3z9t@mail.example.net>"},
		{Name: "MIME-Version", Value: "1.0"},
		{Name: "Content-Type", Value: "text/plain; charset=utf-8; format=flowed"},
		{Name: "Content-Transfer-Encoding", Value: "8bit"},
	}
	var hdrs []milter.Header
	for i := len(base); i < n; i++ {
		hdrs = append(hdrs, milter.Header{Name: "Received", Value: fmt.Sprintf("from relay%d.example.com (relay%d.example.com [192.0.2.%d])\n\tby relay%d.example.com (Postfix) with ESMTPS id 4XkT2c%07d", i, i, i%250+1, i+1, i)})
	}
	hdrs = append(hdrs, base[:min(n, len(base))]...)
	hb := 2
	for _, h := range hdrs {
		hb += len(h.Name) + len(h.Value) + 4
	}
	var body strings.Builder
	for i := 0; body.Len() < size-hb; i++ {
		fmt.Fprintf(&body, "%03d The quick brown fox jumps over the lazy dog, and the figures add up again\r\n", i%1000)
	}
	return hdrs, []byte(body.String())
}

// benchRuntime is a configuration of modules without a policy.
type benchRuntime struct {
	mods  []milter.Module
	needs milter.Needs
}

func (r *benchRuntime) Modules() []milter.Module         { return r.mods }
func (r *benchRuntime) PolicyNeeds() milter.Needs        { return r.needs }
func (r *benchRuntime) OnError() milter.Decision         { return milter.Decision{Verdict: milter.TempFail} }
func (r *benchRuntime) Identity() *milter.IdentityConfig { return &milter.IdentityConfig{} }
func (r *benchRuntime) Evaluate(context.Context, milter.Stage, *milter.Session, *milter.Txn, *milter.Recipient) (milter.Decision, error) {
	return milter.Decision{}, nil
}

// streamModule has header and body hooks that do nothing: the cost of
// streaming through the pipeline with one module that needs the content.
type streamModule struct{}

func (streamModule) Name() string                                             { return "stream" }
func (streamModule) Header(context.Context, *milter.Txn, milter.Header) error { return nil }
func (streamModule) Body(context.Context, *milter.Txn, []byte) error          { return nil }

// stampModule does at end of message what the example configuration's
// data ACL does for an accepted message: remove a received header and add one
// at the top.
type stampModule struct{}

func (stampModule) Name() string { return "stamp" }
func (stampModule) EndOfMessage(_ context.Context, t *milter.Txn) error {
	t.Mutations.RemoveAll = append(t.Mutations.RemoveAll, "X-Tollgate-Checked")
	t.Mutations.Prepend = append(t.Mutations.Prepend, milter.HeaderField{Name: "X-Tollgate-Checked", Value: "mx.example.org for [203.0.113.5]"})
	return nil
}
func (stampModule) Actions() milter.Actions { return milter.ActAddHeader | milter.ActChangeHeader }

// negotiated is the protocol a tollgate server with rt negotiates with go-milter's client.
func negotiated(b *testing.B, rt milter.Runtime) gomilter.OptProtocol {
	p, _ := miltertest.Negotiated(b, miltertest.Serve(b, rt, 0, 0))
	return p
}

// leanProtocol is what tollgate negotiates for a pass-through configuration.
const leanProtocol = gomilter.OptNoData | gomilter.OptNoHeaders | gomilter.OptNoEOH | gomilter.OptNoBody |
	gomilter.OptNoUnknown | gomilter.OptNoReplies

// BenchmarkSession is one message per connection through the whole stack.
func BenchmarkSession(b *testing.B) {
	type config struct {
		name     string
		rt       func(b *testing.B) milter.Runtime
		protocol gomilter.OptProtocol // for the null milter (rt nil)
	}
	null := func(string) func(*testing.B) milter.Runtime { return func(*testing.B) milter.Runtime { return nil } }
	keepHeaders := func(*testing.B) milter.Runtime {
		return &benchRuntime{needs: milter.Needs{Headers: true}, mods: []milter.Module{stampModule{}}}
	}
	configs := []config{
		// go-milter's NoOpMilter, asking for every event and reply (the "null milter").
		{"null-full", null("full"), 0},
		// NoOpMilter negotiating what tollgate pass-through negotiates: the floor for it.
		{"null-lean", null("lean"), leanProtocol},
		// NoOpMilter negotiating what keep-headers negotiates.
		{"null-headers", null("headers"), negotiated(b, keepHeaders(b))},
		// Nothing to do: identity, stage metrics and the summary line only.
		{"pass-through", func(*testing.B) milter.Runtime { return &benchRuntime{} }, 0},
		// Headers kept for the policy, one header removed and one added at end of message.
		{"keep-headers", keepHeaders, 0},
		// Headers and body streamed to one module's hooks.
		{"streaming", func(*testing.B) milter.Runtime { return &benchRuntime{mods: []milter.Module{streamModule{}}} }, 0},
	}
	for _, shape := range []struct {
		name           string
		size, headers  int
		rcpts          int
		onlyWithBodies bool
	}{
		{"4K-10h-1r", 4 << 10, 10, 1, false},
		{"20K-100h-1r", 20 << 10, 100, 1, true}, // 100 headers of about 160 bytes, and the same 4K body
		{"4K-10h-10r", 4 << 10, 10, 10, false},
		{"64K-10h-1r", 64 << 10, 10, 1, true},
		{"1M-10h-1r", 1 << 20, 10, 1, true},
	} {
		hdrs, body := benchMessage(shape.size, shape.headers)
		for _, cfg := range configs {
			if shape.onlyWithBodies && (cfg.name == "pass-through" || cfg.name == "null-lean") {
				continue // neither receives headers or body: the same as 4K
			}
			b.Run(shape.name+"/"+cfg.name, func(b *testing.B) {
				sock := miltertest.Serve(b, cfg.rt(b), cfg.protocol, 0)
				c, macros := miltertest.Client(sock)
				miltertest.Send(b, c, macros, hdrs, body, shape.rcpts) // warm up
				b.SetBytes(int64(len(body)))
				cpuDone := benchcpu.Report(b)
				for b.Loop() {
					miltertest.Send(b, c, macros, hdrs, body, shape.rcpts)
				}
				cpuDone() // client and server together
			})
		}
	}
}
