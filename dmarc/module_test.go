package dmarc

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tollgate/tollgate/arc"
	"github.com/tollgate/tollgate/feature"
	"github.com/tollgate/tollgate/internal/authres"
	"github.com/tollgate/tollgate/internal/dnstest"
	"github.com/tollgate/tollgate/internal/miltertest"
	"github.com/tollgate/tollgate/internal/resolver"
	"github.com/tollgate/tollgate/milter"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

const authServID = "mx.example.org"

// hop runs one message through the modules as the milter does (headers,
// body, every end-of-message hook in order, the Authentication-Results
// written) and returns the transaction; before runs ahead of the
// end-of-message hooks, as the SPF and DKIM modules would.
func hop(t *testing.T, mods []milter.Module, headers []milter.Header, body string, before func(*milter.Txn)) *milter.Txn {
	t.Helper()
	tx := &milter.Txn{Session: &milter.Session{}, Headers: headers}
	ctx := context.Background()
	cfg := milter.AuthResultsConfig{AuthServID: authServID, Add: true, RemoveForged: true}
	for _, h := range headers {
		milter.RemoveForgedAuthResults(tx, cfg, h)
		for _, m := range mods {
			if hh, ok := m.(milter.HeaderHook); ok {
				hh.Header(ctx, tx, h)
			}
		}
	}
	miltertest.Body(ctx, tx, mods, []byte(body))
	if before != nil {
		before(tx)
	}
	for _, m := range mods {
		if eh, ok := m.(milter.EndOfMessageHook); ok {
			if err := eh.EndOfMessage(ctx, tx); err != nil {
				t.Fatal(err)
			}
		}
	}
	milter.WriteAuthResults(tx, cfg)
	return tx
}

func newTestModule(t *testing.T, dns resolver.Resolver, trusted ...string) (*Module, *Metrics) {
	t.Helper()
	metrics := NewMetrics(prometheus.NewRegistry())
	sec := Spec.Compile(&Config{TrustedARCSealers: feature.Strs(trusted...)}, &feature.CompileEnv{Report: failReporter{t}, AuthServID: authServID})
	mod, err := sec.Module(&feature.ModuleEnv{Log: quiet, Metrics: metrics, DNS: dns})
	if err != nil {
		t.Fatal(err)
	}
	return mod.(*Module), metrics
}

type failReporter struct{ t *testing.T }

func (r failReporter) Errorf(line int, format string, args ...any) {
	r.t.Errorf("line %d: "+format, append([]any{line}, args...)...)
}

type collect []string

func (c *collect) Errorf(line int, format string, args ...any) {
	*c = append(*c, fmt.Sprintf("%d: ", line)+fmt.Sprintf(format, args...))
}

// Through the real resolver and a DNS server: the record, the A-R, the
// facts the policy reads and the metric.
func TestModuleWithDNS(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Set("_dmarc.example.net", &dnstest.Zone{RRs: []string{`TXT "v=DMARC1; p=reject; sp=quarantine"`}})
	srv.Set("_dmarc.broken.example", &dnstest.Zone{Rcode: 2})
	dns := resolver.New(resolver.Options{Server: srv.Addr, Timeout: time.Second})
	m, metrics := newTestModule(t, dns)
	msg := func(from string) []milter.Header {
		return []milter.Header{{Name: "From", Value: " " + from}, {Name: "Subject", Value: " hi"}}
	}

	tx := hop(t, []milter.Module{m}, msg("Alice <alice@lists.example.net>"), "body\r\n", func(tx *milter.Txn) {
		tx.AddAuthResult(spfPass("bounce@other.example"))
		tx.AddAuthResult(dkimResult("fail", "example.net"))
	})
	f := FactsOf(tx)
	if f.Status != "quarantine" || f.UsedDomain != "example.net" || f.DomainPolicy != "quarantine" || f.StatusText != "Quarantine" {
		t.Errorf("facts %+v", f)
	}
	want := "mx.example.org;\r\n\tspf=pass smtp.mailfrom=bounce@other.example;\r\n\tdkim=fail header.d=example.net header.s=s1;\r\n\t" +
		"dmarc=fail (p=reject sp=quarantine dis=quarantine) header.from=lists.example.net policy.dmarc=quarantine"
	if got := tx.AuthResultsValue(); got != want {
		t.Errorf("Authentication-Results\n%q\nwant\n%q", got, want)
	}
	if testutil.ToFloat64(metrics.Results.WithLabelValues("quarantine")) != 1 {
		t.Error("metric not counted")
	}

	tx = hop(t, []milter.Module{m}, msg("bob@broken.example"), "", nil)
	if FactsOf(tx).Status != "temperror" || !strings.Contains(tx.AuthResultsValue(), "dmarc=temperror") {
		t.Errorf("SERVFAIL: %+v %q", FactsOf(tx), tx.AuthResultsValue())
	}
	// A message without From: nofrom, and nothing asked of DNS.
	tx = hop(t, []milter.Module{m}, []milter.Header{{Name: "Subject", Value: " x"}}, "", nil)
	if FactsOf(tx).Status != "nofrom" || testutil.ToFloat64(metrics.Results.WithLabelValues("nofrom")) != 1 {
		t.Errorf("no From: %+v", FactsOf(tx))
	}
}

// The condition and variables as the policy evaluates them at data.
func TestVocabulary(t *testing.T) {
	v := Spec.Vocabulary()
	tx := &milter.Txn{}
	e := &feature.Eval{Stage: milter.StageData, Txn: tx}
	var r collect
	test := v.Conditions[0].Compile(&feature.StrList{{Value: "reject"}, {Value: "quarantine"}}, 1, nil, &r)
	not := v.Conditions[0].Compile(&feature.StrList{{Value: "!accept"}}, 1, nil, &r)
	if ok, _ := test.Match(e); ok {
		t.Error("matched before DMARC ran")
	}
	f := factsFor(tx)
	f.Checked, f.Status, f.UsedDomain, f.DomainPolicy, f.Override = true, "reject", "example.net", "reject", ""
	if ok, _ := test.Match(e); !ok {
		t.Error("reject not matched")
	}
	if ok, _ := not.Match(e); !ok {
		t.Error("!accept not matched by reject")
	}
	f.Status, f.Override = "accept", "arc:fwd.example"
	if ok, _ := not.Match(e); ok {
		t.Error("!accept matched accept")
	}
	vars := map[string]string{}
	for _, x := range v.Variables {
		vars[x.Name] = x.Value(e)
		if !x.Stages.Has(milter.StageData) {
			t.Errorf("%s not at data", x.Name)
		}
	}
	if vars["dmarc_status"] != "accept" || vars["dmarc_used_domain"] != "example.net" || vars["dmarc_override"] != "arc:fwd.example" || vars["dmarc_domain_policy"] != "reject" {
		t.Errorf("variables %v", vars)
	}
	v.Conditions[0].Compile(&feature.StrList{{Value: "fail", Line: 7}}, 7, nil, &r)
	if len(r) != 1 || !strings.HasPrefix(r[0], "7: dmarc: \"fail\" is not one of") {
		t.Errorf("errors %q", r)
	}
}

func TestCompileNeedsAuthServID(t *testing.T) {
	var r collect
	cfg := &Config{}
	cfg.Pos.Line = 4
	Spec.Compile(cfg, &feature.CompileEnv{Report: &r})
	if len(r) != 1 || !strings.HasPrefix(r[0], "4: dmarc needs authserv_id (top level)") {
		t.Errorf("errors %q", r)
	}
}

// RFC 8617 §7.2.1: a message forwarded by a trusted sealer, whose body the
// forwarder changed (so DKIM fails here) and whose envelope is the
// forwarder's (so SPF is unaligned), fails DMARC but is accepted on the
// sealer's word; an untrusted sealer, or a chain that no longer validates,
// changes nothing.
func TestARCOverride(t *testing.T) {
	signer, _, txt, err := arc.GenerateKey("rsa", 2048)
	if err != nil {
		t.Fatal(err)
	}
	srv := dnstest.Start(t)
	srv.Set("s1._domainkey.fwd.example.net", &dnstest.Zone{RRs: []string{"TXT " + quoteTXT(txt)}})
	srv.Set("s1._domainkey.other.example", &dnstest.Zone{RRs: []string{"TXT " + quoteTXT(txt)}})
	srv.Set("_dmarc.example.com", &dnstest.Zone{RRs: []string{`TXT "v=DMARC1; p=reject"`}})
	dns := resolver.New(resolver.Options{Server: srv.Addr, Timeout: time.Second})

	// The forwarder's hop: it saw DMARC pass (its A-R says so) and seals.
	seal := func(domain string, hopResults ...authres.Result) []milter.Header {
		sealer := arc.NewModule(arc.ModuleOptions{AuthServID: "mx." + domain, Resolver: dns,
			Seal:    []arc.SealOptions{{Key: arc.Key{Domain: domain, Selector: "s1", Signer: signer}, AuthServID: "mx." + domain}},
			Metrics: arc.NewMetrics(prometheus.NewRegistry()), Log: quiet})
		headers := []milter.Header{{Name: "From", Value: "Alice <alice@example.com>"}, {Name: "To", Value: "list@fwd.example.net"},
			{Name: "Subject", Value: "hello"}}
		tx := &milter.Txn{Session: &milter.Session{}, Headers: headers}
		tx.SetControl(arc.ControlSign)
		ctx := context.Background()
		for _, h := range headers {
			sealer.Header(ctx, tx, h)
		}
		miltertest.Body(ctx, tx, []milter.Module{sealer}, []byte("original\r\n"))
		sealer.EndOfMessage(ctx, tx)
		for _, r := range hopResults {
			tx.AddAuthResult(r)
		}
		milter.WriteAuthResults(tx, milter.AuthResultsConfig{AuthServID: "mx." + domain, Add: true})
		if err := sealer.Finalize(ctx, tx, milter.Decision{Verdict: milter.Accept}); err != nil {
			t.Fatal(err)
		}
		var out []milter.Header
		for _, f := range tx.Mutations.ARCSet {
			out = append(out, milter.Header{Name: f.Name, Value: strings.ReplaceAll(f.Value, "\r\n", "\n")})
		}
		return append(out, tx.Mutations.FinalHeaders(headers, false)...)
	}
	dmarcPass := authres.Result{Method: "dmarc", Result: "pass", Props: []authres.Prop{{Type: "header", Property: "from", Value: "example.com"}}}
	// Here: the forwarder's envelope, the author's signature broken by the list footer.
	here := func(tx *milter.Txn) {
		tx.AddAuthResult(spfPass("list-bounces@fwd.example.net"))
		tx.AddAuthResult(dkimResult("fail", "example.com"))
	}
	verify := arc.NewModule(arc.ModuleOptions{AuthServID: authServID, Resolver: dns, Metrics: arc.NewMetrics(prometheus.NewRegistry()), Log: quiet})

	trustedMod, metrics := newTestModule(t, dns, "fwd.example.net")
	tx := hop(t, []milter.Module{verify, trustedMod}, seal("fwd.example.net", dmarcPass), "original\r\n", here)
	f := FactsOf(tx)
	if arc.FactsOf(tx).State != "pass" || f.Status != "accept" || f.Override != "arc:fwd.example.net" || f.StatusText != "Accept (local policy override: arc:fwd.example.net)" {
		t.Fatalf("arc %+v, dmarc %+v", arc.FactsOf(tx), f)
	}
	want := "dmarc=fail (p=reject dis=none; arc override: trusted sealer fwd.example.net saw dmarc=pass) header.from=example.com policy.dmarc=none"
	if f.AuthResult != want || !strings.Contains(tx.AuthResultsValue(), want) {
		t.Errorf("A-R %q\nwant %q", f.AuthResult, want)
	}
	if testutil.ToFloat64(metrics.Overrides) != 1 || testutil.ToFloat64(metrics.Results.WithLabelValues("accept")) != 1 {
		t.Error("override not counted")
	}

	// The sealer saw only aligned DKIM: that counts too.
	dkimPass := dkimResult("pass", "example.com")
	tx = hop(t, []milter.Module{verify, trustedMod}, seal("fwd.example.net", dkimPass), "original\r\n", here)
	if f := FactsOf(tx); f.Status != "accept" || !strings.Contains(f.AuthResult, "saw dkim=pass header.d=example.com") {
		t.Errorf("aligned DKIM at the hop: %+v", f)
	}
	// ... but not an unaligned one.
	tx = hop(t, []milter.Module{verify, trustedMod}, seal("fwd.example.net", dkimResult("pass", "fwd.example.net")), "original\r\n", here)
	if f := FactsOf(tx); f.Status != "reject" {
		t.Errorf("unaligned DKIM at the hop: %+v", f)
	}
	// An untrusted sealer.
	tx = hop(t, []milter.Module{verify, trustedMod}, seal("other.example", dmarcPass), "original\r\n", here)
	if f := FactsOf(tx); f.Status != "reject" || f.Override != "" {
		t.Errorf("untrusted sealer: %+v", f)
	}
	// A chain broken after the seal (the body changed): no override.
	tx = hop(t, []milter.Module{verify, trustedMod}, seal("fwd.example.net", dmarcPass), "changed\r\n", here)
	if arc.FactsOf(tx).State != "fail" || FactsOf(tx).Status != "reject" {
		t.Errorf("broken chain: arc %+v dmarc %+v", arc.FactsOf(tx), FactsOf(tx))
	}
	// No trusted sealers configured.
	plain, _ := newTestModule(t, dns)
	tx = hop(t, []milter.Module{verify, plain}, seal("fwd.example.net", dmarcPass), "original\r\n", here)
	if FactsOf(tx).Status != "reject" {
		t.Errorf("no trusted sealers: %+v", FactsOf(tx))
	}
}

// quoteTXT writes a TXT record's text as zone-file strings of at most 255
// bytes.
func quoteTXT(s string) string {
	var parts []string
	for len(s) > 0 {
		n := min(len(s), 255)
		parts = append(parts, `"`+s[:n]+`"`)
		s = s[n:]
	}
	return strings.Join(parts, " ")
}

// Messages DMARC cannot judge are counted each, and logged once per kind
// and minute however many arrive.
func TestUnjudgedLoggedOnce(t *testing.T) {
	var logs strings.Builder
	metrics := NewMetrics(prometheus.NewRegistry())
	m := NewModule(ModuleOptions{LookupTXT: testZone.LookupTXT, Metrics: metrics, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	for range 3 {
		hop(t, []milter.Module{m}, []milter.Header{{Name: "From", Value: " a@reject.example"}, {Name: "From", Value: " b@reject.example"}}, "", nil)
	}
	if n := strings.Count(logs.String(), "DMARC cannot judge a message"); n != 1 || !strings.Contains(logs.String(), `reason="2 From header fields"`) {
		t.Errorf("%d log lines:\n%s", n, logs.String())
	}
	if testutil.ToFloat64(metrics.Results.WithLabelValues("error")) != 3 {
		t.Error("not every message counted")
	}
}
