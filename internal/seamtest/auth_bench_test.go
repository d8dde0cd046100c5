package seamtest

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	gomilter "github.com/d--j/go-milter"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tollgate/tollgate/internal/benchcpu"
	"github.com/tollgate/tollgate/internal/dnstest"
	"github.com/tollgate/tollgate/internal/keyfile"
	msgsplit "github.com/tollgate/tollgate/internal/message"
	"github.com/tollgate/tollgate/internal/miltertest"
	"github.com/tollgate/tollgate/internal/mta"
	"github.com/tollgate/tollgate/milter"
	"github.com/tollgate/tollgate/policy"
)

// BenchmarkAuthPipeline is one 4 KiB DKIM-signed message per milter
// connection, over a unix socket, through: go-milter's null milter; tollgate
// passing it through; tollgate sealing it with ARC alone; and tollgate running
// every authentication method on it (iprev, SPF, DKIM verify, DMARC, ARC
// verify) before it seals, the A-R of all of them in the seal. DNS is a
// loopback server, its answers cached after the first message, as on a busy
// MX. Compare the sub-benchmarks of one run (docs/performance.md):
//
//	go test -run=- -bench=AuthPipeline -benchtime=2000x -count=3 ./internal/seamtest/
func BenchmarkAuthPipeline(b *testing.B) {
	headers, body, size, configs := authPipeline(b, 4<<10)
	benchPipeline(b, headers, body, size, configs)
}

// BenchmarkAuthPipeline1MiB is the same with a 1 MiB body, through the
// sealing configurations only: where the body hashing shows. Each relaxed
// canonicalization pass of the body costs about 1 ms; DKIM and ARC
// verification, DKIM signing and the seal share one.
//
//	go test -run=- -bench=AuthPipeline1MiB -benchtime=50x -count=3 ./internal/seamtest/
func BenchmarkAuthPipeline1MiB(b *testing.B) {
	headers, body, size, configs := authPipeline(b, 1<<20)
	benchPipeline(b, headers, body, size, slices.DeleteFunc(configs, func(c authConfig) bool { return !strings.Contains(c.name, "seal") }))
}

func benchPipeline(b *testing.B, headers []milter.Header, body []byte, size int, configs []authConfig) {
	for _, tc := range configs {
		b.Run(tc.name, func(b *testing.B) {
			sock := miltertest.Serve(b, authRuntime(b, tc.config), gomilter.OptNoUnknown, 0)
			c, macros := miltertest.Client(sock)
			miltertest.Send(b, c, macros, headers, body, 1) // warms the DNS cache
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			defer benchcpu.Report(b)() // client and server together
			for range b.N {
				miltertest.Send(b, c, macros, headers, body, 1)
			}
		})
	}
}

// The benchmark measures what it says: every method passes on its message,
// and the seal carries all of their results.
func TestAuthPipelineResults(t *testing.T) {
	headers, body, _, configs := authPipeline(t, 4<<10)
	sock := miltertest.Serve(t, authRuntime(t, configNamed(t, configs, "auth+arc-seal")), gomilter.OptNoUnknown, 0)
	mods := throughPipeline(t, sock, headers, body)
	var aar string
	for _, m := range mods {
		if m.HeaderName == "ARC-Authentication-Results" {
			aar = strings.Join(strings.Fields(m.HeaderValue), " ")
		}
	}
	for _, want := range []string{"iprev=pass", "spf=pass", "dkim=pass header.d=example.net", "dmarc=pass", "arc=none"} {
		if !strings.Contains(aar, want) {
			t.Errorf("ARC-Authentication-Results %q has no %q", aar, want)
		}
	}
}

func configNamed(t *testing.T, configs []authConfig, name string) string {
	t.Helper()
	for _, c := range configs {
		if c.name == name {
			return c.config
		}
	}
	t.Fatalf("no configuration %q", name)
	return ""
}

// TestBodyCanonicalizedOncePerMessage: a message that arrives with a DKIM
// signature and an ARC set (both relaxed), is DKIM-verified, ARC-verified,
// DKIM-signed and sealed (relaxed too) has its body canonicalized once;
// with simple DKIM signing, once per canonicalization. Everything verifies
// at the next hop, so the shared hashes are the right ones.
func TestBodyCanonicalizedOncePerMessage(t *testing.T) {
	headers, body, _, configs := authPipeline(t, 4<<10)
	cfg := configNamed(t, configs, "auth+dkim-sign+arc-seal")
	hop := func(config string, headers []milter.Header) (*milter.Metrics, []milter.Header) {
		t.Helper()
		metrics := milter.NewMetrics(prometheus.NewRegistry())
		sock := miltertest.ServeMetrics(t, authRuntime(t, config), gomilter.OptNoUnknown, 0, metrics)
		mods := throughPipeline(t, sock, headers, body)
		list := mta.HeaderList{}
		for _, h := range headers {
			list.Fields = append(list.Fields, msgsplit.Field{Name: h.Name, Value: " " + strings.TrimPrefix(h.Value, " ")})
		}
		list.Apply(mods)
		var out []milter.Header
		for _, f := range list.Fields {
			out = append(out, milter.Header{Name: f.Name, Value: f.Value})
		}
		return metrics, out
	}
	passes := func(m *milter.Metrics) (relaxed, simple float64) {
		return testutil.ToFloat64(m.BodyCanonicalizations.WithLabelValues("relaxed")),
			testutil.ToFloat64(m.BodyCanonicalizations.WithLabelValues("simple"))
	}
	_, first := hop(cfg, headers) // now signed by example.org and sealed: an ARC set to verify
	m, second := hop(cfg, first)
	if r, s := passes(m); r != 1 || s != 0 {
		t.Errorf("DKIM and ARC verify, DKIM sign and seal, all relaxed: %v relaxed and %v simple passes, want 1 and 0", r, s)
	}
	m, third := hop(strings.Replace(cfg, "dkim_sign: {", "dkim_sign: {canonicalization: relaxed/simple, ", 1), second)
	if r, s := passes(m); r != 1 || s != 1 {
		t.Errorf("with simple DKIM signing: %v relaxed and %v simple passes, want 1 each", r, s)
	}
	var ar string
	for _, h := range third {
		if h.Name == "ARC-Authentication-Results" && strings.Contains(h.Value, "i=3;") {
			ar = strings.Join(strings.Fields(h.Value), " ")
		}
	}
	for _, want := range []string{"dkim=pass header.d=example.net", "dkim=pass header.d=example.org", "arc=pass"} {
		if !strings.Contains(ar, want) {
			t.Errorf("third hop's ARC-Authentication-Results %q has no %q", ar, want)
		}
	}
}

// throughPipeline sends one message from 203.0.113.5 (mail.example.net,
// sender@example.net) to the milter at sock, expects it accepted and
// returns the changes asked for.
func throughPipeline(t *testing.T, sock string, headers []milter.Header, body []byte) []gomilter.ModifyAction {
	t.Helper()
	c, macros := miltertest.Client(sock)
	s, err := c.Session(macros)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, step := range []func() (*gomilter.Action, error){
		func() (*gomilter.Action, error) {
			return s.Conn("mail.example.net", gomilter.FamilyInet, 40000, "203.0.113.5")
		},
		func() (*gomilter.Action, error) { return s.Helo("mail.example.net") },
		func() (*gomilter.Action, error) { return s.Mail("sender@example.net", "") },
		func() (*gomilter.Action, error) { return s.Rcpt("user1@example.org", "") },
		s.DataStart,
	} {
		if act, err := step(); err != nil || act.Type != gomilter.ActionContinue {
			t.Fatalf("%v %v", act, err)
		}
	}
	for _, h := range headers {
		if _, err := mta.Header(s, h.Name, " "+strings.TrimPrefix(h.Value, " ")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.HeaderEnd(); err != nil {
		t.Fatal(err)
	}
	if _, err := mta.Body(s, body); err != nil {
		t.Fatal(err)
	}
	mods, act, err := s.End()
	if err != nil || act.Type != gomilter.ActionAccept {
		t.Fatalf("%v %v", act, err)
	}
	return mods
}

type authConfig struct{ name, config string }

// authPipeline makes the benchmark's message of about bodySize bytes, its
// DNS and the configurations.
func authPipeline(b testing.TB, bodySize int) (headers []milter.Header, body []byte, size int, configs []authConfig) {
	b.Helper()
	signer, keyPEM, txt, err := keyfile.Generate("rsa", 2048)
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	keyPath := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		b.Fatal(err)
	}
	dns := dnstest.Start(b)
	dns.Set("example.net", &dnstest.Zone{RRs: []string{`TXT "v=spf1 ip4:203.0.113.0/24 -all"`}})
	dns.Set("_dmarc.example.net", &dnstest.Zone{RRs: []string{`TXT "v=DMARC1; p=reject"`}})
	dns.Set("s1._domainkey.example.net", &dnstest.Zone{RRs: []string{"TXT " + splitTXT(txt)}})
	dns.Set("5.113.0.203.in-addr.arpa", &dnstest.Zone{RRs: []string{"PTR mail.example.net."}})
	dns.Set("mail.example.net", &dnstest.Zone{RRs: []string{"A 203.0.113.5"}})
	dns.Set("arc1._domainkey.example.org", &dnstest.Zone{RRs: []string{"TXT " + splitTXT(txt)}})

	var raw bytes.Buffer
	raw.WriteString("From: Alice <alice@example.net>\r\nTo: user1@example.org\r\nSubject: benchmark\r\n" +
		"Date: Thu, 03 Dec 2026 12:00:00 +0000\r\nMessage-ID: <bench@example.net>\r\n\r\n")
	for raw.Len() < bodySize {
		raw.WriteString("A line of the body of the message, as long as a line of mail usually is.\r\n")
	}
	var signed bytes.Buffer
	if err := dkim.Sign(&signed, bytes.NewReader(raw.Bytes()), &dkim.SignOptions{Domain: "example.net", Selector: "s1", Signer: signer,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed}); err != nil {
		b.Fatal(err)
	}
	hs, body, _ := msgsplit.Split(signed.Bytes())

	for _, h := range hs {
		headers = append(headers, milter.Header{Name: h.Name, Value: h.Value})
	}
	seal := "arc: {sign: [{domain: example.org, selector: arc1, key: " + keyPath + "}]}\n"
	configs = []authConfig{
		{"null", ""},
		{"passthrough", "acl: {data: [{accept: {}}]}\n"},
		{"arc-seal", "authserv_id: mx.example.org\n" + seal + "acl: {rcpt: [{accept: {control: [arc_sign]}}]}\n"},
		{"auth+arc-seal", "authserv_id: mx.example.org\ndns: {server: \"" + dns.Addr + "\"}\n" +
			"iprev: {}\nspf: {}\ndkim: {}\ndmarc: {}\n" + seal +
			"acl:\n  rcpt: [{accept: {control: [arc_sign]}}]\n  data:\n    - deny: {dmarc: [reject], message: \"550 5.7.1 DMARC\"}\n    - accept: {}\n"},
		{"auth+dkim-sign+arc-seal", "authserv_id: mx.example.org\ndns: {server: \"" + dns.Addr + "\"}\n" +
			"iprev: {}\nspf: {}\ndkim: {}\ndmarc: {}\n" + seal +
			"dkim_sign: {keys: [{domain: example.org, selector: arc1, key: " + keyPath + "}]}\n" +
			"acl:\n  rcpt: [{accept: {control: [arc_sign, dkim_sign]}}]\n  data:\n    - deny: {dmarc: [reject], message: \"550 5.7.1 DMARC\"}\n    - accept: {}\n"},
	}
	return headers, body, signed.Len(), configs
}

// authRuntime loads config with the daemon's features; "" is the null milter.
func authRuntime(b testing.TB, config string) milter.Runtime {
	b.Helper()
	if config == "" {
		return nil
	}
	p, err := policy.Parse("bench.yaml", []byte(config), features...)
	if err != nil {
		b.Fatal(err)
	}
	rt, err := policy.NewEnv(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry()).Runtime(p)
	if err != nil {
		b.Fatal(err)
	}
	return rt
}

// splitTXT writes a TXT record's value as zone-file character-strings of at
// most 255 bytes.
func splitTXT(v string) string {
	var parts []string
	for len(v) > 0 {
		n := min(255, len(v))
		parts, v = append(parts, `"`+v[:n]+`"`), v[n:]
	}
	return strings.Join(parts, " ")
}
