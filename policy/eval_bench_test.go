package policy_test

// Benchmarks of ACL evaluation, the policy's hot path: once per connection,
// once per recipient and once per message. Run with
//
//	go test -run '^$' -bench . -benchmem ./policy/
//
// See docs/performance.md for the figures.

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/milter"
	"github.com/tollgate/tollgate/policy"
)

// benchPolicyLarge is a larger, still realistic policy: every rule of the
// example plus lists of a few dozen entries and header checks.
const benchPolicyLarge = `
lists:
  local_domains: [example.org, example.net, "*.example.org", mail.example.com, example.info, example.biz, example.eu]
  trusted_networks: [127.0.0.0/8, "::1", 192.0.2.0/24, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, "2001:db8::/32"]
  blocked_networks: [198.51.100.0/24, 100.64.0.0/10, 233.252.0.0/24]
  blocked_senders: ["*@spam.example", "^.*\\.invalid$", "bounce-*@lists.example", "<>"]
  staff: ["*@staff.example.org", boss@example.org, "admin@*"]
acl:
  connect:
    - drop:   {name: blocked-network, hosts: [+blocked_networks], message: "421 4.7.0 too many problems from your network"}
    - accept: {}
  mail:
    - deny:   {name: blocked-sender, senders: [+blocked_senders], hosts: ["!+trusted_networks"]}
    - accept: {}
  rcpt:
    - accept: {name: trusted, hosts: [+trusted_networks]}
    - accept: {name: submission, authenticated: "*"}
    - defer:  {name: no-bounces, senders: ["<>"], recipients: [noreply@example.org], message: "451 4.7.1 $recipient takes no bounces"}
    - deny:   {name: relay, recipient_domains: ["!+local_domains"], message: "550 5.7.1 relay not permitted"}
    - warn:   {name: staff, recipients: [+staff], set: {acl_m_staff: "yes"}}
    - accept: {}
  data:
    - deny:   {name: gtube, header: {name: Subject, regex: "(?i)^GTUBE test"}, message: "550 5.7.1 test spam refused"}
    - deny:   {name: no-date, header: {name: Date, not_regex: "."}, message: "550 5.6.0 a Date header is required"}
    - deny:   {name: exe, header: [{name: Content-Type, regex: "(?i)multipart/mixed"}, {name: Subject, regex: "(?i)invoice"}], message_size: "< 2M"}
    - warn:   {name: big, message_size: "> 10M", add_header: "X-Tollgate-Size: large", log_message: "large message"}
    - warn:   {name: spam-flag, remove_header: [X-Spam-Flag, X-Spam-Status]}
    - accept: {name: stamp, remove_header: [X-Tollgate-Checked], add_header: ":at_start:X-Tollgate-Checked: $primary_hostname for [$sender_host_address]"}
`

type benchEnv struct {
	rt  *policy.Runtime
	s   *milter.Session
	hdr []milter.Header
}

func newBenchEnv(b *testing.B, p *policy.Policy, client string, headers int) *benchEnv {
	b.Helper()
	metrics := milter.NewMetrics(prometheus.NewRegistry())
	rt := policy.NewRuntime(p, slog.New(slog.NewTextHandler(io.Discard, nil)), metrics)
	s := &milter.Session{ID: 1, Vars: map[string]string{}}
	s.Identity.ClientAddr = netip.MustParseAddr(client)
	s.Identity.ClientPort = 40000
	s.Identity.ClientName = "mail.example.net"
	s.Identity.Helo = "mail.example.net"
	s.Identity.MTAName = "mx.example.org"
	return &benchEnv{rt: rt, s: s, hdr: benchHeaders(headers)}
}

// benchHeaders are the headers of a typical message, then Received lines.
func benchHeaders(n int) []milter.Header {
	base := []milter.Header{
		{Name: "Received", Value: " from [192.168.1.20] (dsl-20.example.net [198.51.100.20])\n\tby mail.example.net (Postfix) with ESMTPSA id 4XkT2c0Zz3z9t"},
		{Name: "DKIM-Signature", Value: " v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.net; s=mail2026;\n\tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=dzdVyOfAKCdLXdJOc9G2q8LoXSlEniSbav"},
		{Name: "From", Value: " Alice Sender <sender@example.net>"},
		{Name: "To", Value: " Bob Recipient <user1@example.org>"},
		{Name: "Subject", Value: " Quarterly figures, draft for review"},
		{Name: "Date", Value: " Tue, 03 Mar 2026 10:15:01 +0100"},
		{Name: "Message-ID", Value: " <20260303091501.4XkT2c0Zz3z9t@mail.example.net>"},
		{Name: "MIME-Version", Value: " 1.0"},
		{Name: "Content-Type", Value: " text/plain; charset=utf-8; format=flowed"},
		{Name: "Content-Transfer-Encoding", Value: " 8bit"},
	}
	var out []milter.Header
	for i := len(base); i < n; i++ {
		out = append(out, milter.Header{Name: "Received", Value: fmt.Sprintf(" from relay%d.example.com (relay%d.example.com [192.0.2.%d])\n\tby relay%d.example.com (Postfix) with ESMTPS", i, i, i%250+1, i+1)})
	}
	return append(out, base[:min(n, len(base))]...)
}

func loadExample(b *testing.B) *policy.Policy {
	p, err := policy.LoadFile("../deploy/examples/tollgate.yaml", testFeatures...)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func parseBench(b *testing.B, yml string) *policy.Policy {
	p, err := policy.Parse("bench.yaml", []byte(yml), testFeatures...)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkEvaluateRcpt is one recipient through the rcpt ACL.
func BenchmarkEvaluateRcpt(b *testing.B) {
	for _, c := range []struct {
		name, yml, client, rcpt string
		want                    milter.Verdict
	}{
		// An outside client to a local domain: every rule of the example is tried.
		{"example/inbound", "", "203.0.113.5", "user1@example.org", milter.Accept},
		{"example/trusted", "", "192.0.2.10", "someone@example.com", milter.Accept},
		{"example/relay-denied", "", "203.0.113.5", "someone@example.com", milter.Reject},
		{"large/inbound", benchPolicyLarge, "203.0.113.5", "user1@example.org", milter.Accept},
		{"empty", "acl: {}\n", "203.0.113.5", "user1@example.org", milter.Continue},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := loadExample(b)
			if c.yml != "" {
				p = parseBench(b, c.yml)
			}
			e := newBenchEnv(b, p, c.client, 10)
			t := &milter.Txn{Session: e.s, Sender: "sender@example.net"}
			r := &milter.Recipient{Addr: c.rcpt}
			t.Rcpts = []*milter.Recipient{r}
			ctx := b.Context()
			for b.Loop() {
				d, err := e.rt.Evaluate(ctx, milter.StageRcpt, e.s, t, r)
				if err != nil || d.Verdict != c.want {
					b.Fatalf("%v %v", d, err)
				}
				t.Mutations = milter.Mutations{}
				t.Vars = nil
			}
		})
	}
}

// BenchmarkEvaluateData is one message through the data ACL (end of message).
func BenchmarkEvaluateData(b *testing.B) {
	for _, c := range []struct {
		name, yml string
		headers   int
	}{
		{"example/10-headers", "", 10},
		{"example/100-headers", "", 100},
		{"large/10-headers", benchPolicyLarge, 10},
		{"large/100-headers", benchPolicyLarge, 100},
		{"empty", "acl: {}\n", 10},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := loadExample(b)
			if c.yml != "" {
				p = parseBench(b, c.yml)
			}
			e := newBenchEnv(b, p, "203.0.113.5", c.headers)
			t := &milter.Txn{Session: e.s, Sender: "sender@example.net", Headers: e.hdr, BodyBytes: 3000}
			for _, h := range e.hdr {
				t.HeaderBytes += int64(len(h.Name) + len(h.Value) + 3)
			}
			t.Rcpts = []*milter.Recipient{{Addr: "user1@example.org", Decision: milter.Decision{Verdict: milter.Accept}}}
			ctx := b.Context()
			for b.Loop() {
				d, err := e.rt.Evaluate(ctx, milter.StageData, e.s, t, nil)
				if err != nil || (d.Verdict != milter.Accept && d.Verdict != milter.Continue) {
					b.Fatalf("%v %v", d, err)
				}
				t.Mutations = milter.Mutations{}
				t.Logs = nil
			}
		})
	}
}

// BenchmarkEvaluateConnect is one connection through the connect ACL.
func BenchmarkEvaluateConnect(b *testing.B) {
	e := newBenchEnv(b, loadExample(b), "203.0.113.5", 0)
	ctx := b.Context()
	for b.Loop() {
		if d, err := e.rt.Evaluate(ctx, milter.StageConnect, e.s, nil, nil); err != nil || d.Verdict != milter.Accept {
			b.Fatalf("%v %v", d, err)
		}
	}
}

// BenchmarkEvaluateMessage is what the policy costs a whole pass-through
// message of the example configuration: connect, helo, mail, one rcpt, data.
func BenchmarkEvaluateMessage(b *testing.B) {
	e := newBenchEnv(b, loadExample(b), "203.0.113.5", 10)
	ctx := b.Context()
	for b.Loop() {
		s := &milter.Session{ID: 1, Vars: map[string]string{}, Identity: e.s.Identity}
		for _, st := range []milter.Stage{milter.StageConnect, milter.StageHelo} {
			if _, err := e.rt.Evaluate(ctx, st, s, nil, nil); err != nil {
				b.Fatal(err)
			}
		}
		t := &milter.Txn{Session: s, Sender: "sender@example.net", Headers: e.hdr, BodyBytes: 3000, HeaderBytes: 1000}
		if _, err := e.rt.Evaluate(ctx, milter.StageMail, s, t, nil); err != nil {
			b.Fatal(err)
		}
		r := &milter.Recipient{Addr: "user1@example.org"}
		t.Rcpts = append(t.Rcpts, r)
		d, err := e.rt.Evaluate(ctx, milter.StageRcpt, s, t, r)
		if err != nil {
			b.Fatal(err)
		}
		r.Decision = d
		if d, err = e.rt.Evaluate(ctx, milter.StageData, s, t, nil); err != nil || d.Verdict != milter.Accept {
			b.Fatalf("%v %v", d, err)
		}
	}
}
