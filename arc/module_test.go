package arc

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/miltertest"
	"github.com/tollgate/tollgate/milter"
)

type chainResolver map[string]string

func (m chainResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	if v, ok := m[strings.ToLower(strings.TrimSuffix(name, "."))]; ok {
		return []string{v}, nil
	}
	return nil, &DNSError{Name: name, Cause: "NXDOMAIN"}
}

// milterHop runs one message through the module as the milter does and returns
// the headers as they leave, the ARC set on top.
func milterHop(t *testing.T, m *Module, headers []milter.Header, body string, sign bool) ([]milter.Header, *milter.Txn) {
	t.Helper()
	tx := &milter.Txn{Session: &milter.Session{Identity: milter.Identity{}}, Headers: headers}
	if sign {
		tx.SetControl(ControlSign)
	}
	ctx := context.Background()
	arCfg := milter.AuthResultsConfig{AuthServID: m.o.AuthServID, Add: true, RemoveForged: true}
	for _, h := range headers {
		milter.RemoveForgedAuthResults(tx, arCfg, h)
		m.Header(ctx, tx, h)
	}
	miltertest.Body(ctx, tx, []milter.Module{m}, []byte(body))
	m.EndOfMessage(ctx, tx)
	milter.WriteAuthResults(tx, arCfg)
	if err := m.Finalize(ctx, tx, milter.Decision{Verdict: milter.Accept}); err != nil {
		t.Fatal(err)
	}
	out := []milter.Header{}
	for _, f := range tx.Mutations.ARCSet {
		out = append(out, milter.Header{Name: f.Name, Value: " " + strings.ReplaceAll(f.Value, "\r\n", "\n")})
	}
	return append(out, tx.Mutations.FinalHeaders(headers, false)...), tx
}

func TestModuleChainAcrossHops(t *testing.T) {
	signer, _, txt, err := GenerateKey("rsa", 2048)
	if err != nil {
		t.Fatal(err)
	}
	dns := chainResolver{"s1._domainkey.hop1.example": txt, "s1._domainkey.hop2.example": txt}
	module := func(domain string) *Module {
		return NewModule(ModuleOptions{AuthServID: "mx." + domain, Resolver: dns,
			Seal:    []SealOptions{{Key: Key{Domain: domain, Selector: "s1", Signer: signer}, AuthServID: "mx." + domain}},
			Metrics: NewMetrics(prometheus.NewRegistry()), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}
	// Values as an MTA without the leading-space option passes them.
	msg := []milter.Header{{Name: "From", Value: "alice@example.net"}, {Name: "To", Value: "bob@example.org"},
		{Name: "Subject", Value: "chain"}, {Name: "Authentication-Results", Value: "mx.hop1.example; arc=pass (forged)"}}
	body := "hello\r\n"

	first, tx1 := milterHop(t, module("hop1.example"), msg, body, true)
	if FactsOf(tx1).State != "none" || FactsOf(tx1).Sealed != "hop1.example" || len(tx1.Mutations.RemoveHeaders) != 1 {
		t.Fatalf("hop 1: %+v %+v", FactsOf(tx1), tx1.Mutations.RemoveHeaders)
	}
	for _, h := range first {
		if strings.Contains(h.Value, "forged") {
			t.Errorf("forged A-R left at hop 1: %q", h.Value)
		}
	}
	// milterHop hands on values with their leading space; strip it as the MTA would.
	strip := func(hs []milter.Header) []milter.Header {
		out := make([]milter.Header, len(hs))
		for i, h := range hs {
			out[i] = milter.Header{Name: h.Name, Value: strings.TrimPrefix(h.Value, " ")}
		}
		return out
	}
	second, tx2 := milterHop(t, module("hop2.example"), strip(first), body, true)
	if FactsOf(tx2).State != "pass" || FactsOf(tx2).Instances != 1 || strings.Join(FactsOf(tx2).Domains, ":") != "hop1.example" || FactsOf(tx2).OldestPass != 1 {
		t.Fatalf("hop 2: %+v", FactsOf(tx2))
	}
	if !strings.Contains(FactsOf(tx2).AuthResult, "arc=pass header.oldest-pass=0") {
		t.Errorf("A-R %q", FactsOf(tx2).AuthResult)
	}
	_, tx3 := milterHop(t, module("hop3.example"), strip(second), body, false)
	if FactsOf(tx3).State != "pass" || FactsOf(tx3).Instances != 2 {
		t.Errorf("hop 3: %+v", FactsOf(tx3))
	}
	// A body changed after sealing breaks the chain.
	_, bad := milterHop(t, module("hop3.example"), strip(second), "changed\r\n", false)
	if FactsOf(bad).State != "fail" || !strings.Contains(FactsOf(bad).Reason, "body hash") {
		t.Errorf("changed body: %+v", FactsOf(bad))
	}
}
