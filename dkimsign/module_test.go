package dkimsign

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/dkimsig"
	"github.com/tollgate/tollgate/internal/sigcrypto"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tollgate/tollgate/arc"
	"github.com/tollgate/tollgate/internal/miltertest"
	"github.com/tollgate/tollgate/milter"
)

type mapResolver map[string]string

func (m mapResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	if v, ok := m[strings.TrimSuffix(name, ".")]; ok {
		return []string{v}, nil
	}
	return nil, &arc.DNSError{Name: name, Cause: "NXDOMAIN"}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// hop runs a message through DKIM signing and ARC sealing as the milter
// does (modules in order, ARC last) and returns it as it leaves.
func hop(t *testing.T, mods []milter.Module, headers []milter.Header, body string, vars map[string]string, controls ...string) (string, *milter.Txn) {
	t.Helper()
	tx := &milter.Txn{Session: &milter.Session{}, Headers: headers, Vars: vars}
	for _, c := range controls {
		tx.SetControl(c)
	}
	ctx := context.Background()
	arCfg := milter.AuthResultsConfig{AuthServID: "mx.example.org", Add: true, RemoveForged: true}
	for _, h := range headers {
		milter.RemoveForgedAuthResults(tx, arCfg, h)
		for _, m := range mods {
			if hh, ok := m.(milter.HeaderHook); ok {
				hh.Header(ctx, tx, h)
			}
		}
	}
	// in two chunks, cut inside a line
	miltertest.Body(ctx, tx, mods, []byte(body[:len(body)/2]), []byte(body[len(body)/2:]))
	for _, m := range mods {
		if e, ok := m.(milter.EndOfMessageHook); ok {
			e.EndOfMessage(ctx, tx)
		}
	}
	milter.WriteAuthResults(tx, arCfg)
	for _, m := range mods {
		if f, ok := m.(milter.FinalizeHook); ok {
			if err := f.Finalize(ctx, tx, milter.Decision{Verdict: milter.Accept}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var b strings.Builder
	for _, f := range tx.Mutations.ARCSet {
		b.WriteString(f.Name + ": " + f.Value + "\r\n")
	}
	for _, h := range tx.Mutations.FinalHeaders(headers, false) {
		b.WriteString(h.Name + ":" + dkimsig.FixLF(h.Value) + "\r\n")
	}
	return b.String() + "\r\n" + body, tx
}

func headerValues(msg, name string) []string {
	var out []string
	head, _, _ := strings.Cut(msg, "\r\n\r\n")
	for _, f := range strings.Split(strings.ReplaceAll(head, "\r\n\t", "\t"), "\r\n") {
		if n, v, ok := strings.Cut(f, ":"); ok && strings.EqualFold(n, name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// TestModuleUnderARCSeal: with dkim_sign and arc_sign both set, the message
// leaves with two DKIM-Signatures (RSA and Ed25519 for the From domain)
// that verify, and an ARC set whose AMS signs them and validates at the
// next hop.
func TestModuleUnderARCSeal(t *testing.T) {
	keys, dns := testKeys(t)
	res := mapResolver(dns)
	res["arc1._domainkey.example.org"] = dns["rsa1._domainkey.example.org"]
	reg := prometheus.NewRegistry()
	sign := NewModule(ModuleOptions{Keys: append([]Key{{Domain: "other.example", Selector: "x", Signer: keys[0].Signer}}, keys...),
		Metrics: NewMetrics(reg), Log: quiet})
	seal := arc.NewModule(arc.ModuleOptions{AuthServID: "mx.example.org", Resolver: res,
		Seal:    []arc.SealOptions{{Key: arc.Key{Domain: "example.org", Selector: "arc1", Signer: keys[0].Signer}, AuthServID: "mx.example.org"}},
		Metrics: arc.NewMetrics(prometheus.NewRegistry()), Log: quiet})
	headers := []milter.Header{{Name: "From", Value: "Alice <alice@Example.ORG>"}, {Name: "To", Value: "bob@example.net"},
		{Name: "Subject", Value: "signed\n\tand sealed"}, {Name: "Message-ID", Value: "<1@example.org>"}}
	body := "Hello Bob,  \r\n\r\nbye.\r\n\r\n"
	msg, _ := hop(t, []milter.Module{sign, seal}, headers, body, nil, ControlSign, arc.ControlSign)

	sigs := headerValues(msg, "DKIM-Signature")
	if len(sigs) != 2 {
		t.Fatalf("%d DKIM-Signatures:\n%s", len(sigs), msg)
	}
	for _, v := range verifyAll(t, msg, dns) {
		if v.Err != nil || v.Domain != "example.org" {
			t.Errorf("DKIM %s: %v", v.Domain, v.Err)
		}
	}
	ams := headerValues(msg, "ARC-Message-Signature")
	if len(ams) != 1 || strings.Count(strings.ReplaceAll(ams[0], "\t", ""), "dkim-signature") != 2 {
		t.Fatalf("the AMS does not sign both DKIM-Signatures: %q", ams)
	}
	// the next hop validates the chain
	var next []arc.Header
	head, _, _ := strings.Cut(msg, "\r\n\r\n")
	for _, f := range strings.Split(strings.ReplaceAll(head, "\r\n\t", "\x00"), "\r\n") {
		n, v, _ := strings.Cut(f, ":")
		next = append(next, arc.Header{Name: n, Value: strings.ReplaceAll(v, "\x00", "\r\n\t")})
	}
	v := arc.NewVerifier(arc.VerifyOptions{Resolver: res, VerifyOnly: true})
	for _, h := range next {
		v.Header(h)
	}
	v.EndOfHeaders()
	v.Body([]byte(body))
	if r := v.Result(context.Background()); r.State != arc.StatePass {
		t.Errorf("ARC at the next hop: %s %s", r.State, r.Reason)
	}
	if got := testutil.ToFloat64(sign.o.Metrics.Sign.WithLabelValues("signed")); got != 1 {
		t.Errorf("signed counter %v", got)
	}
}

func TestModuleKeySelection(t *testing.T) {
	keys, dns := testKeys(t)
	other := Key{Domain: "other.example", Selector: "o1", Signer: keys[1].Signer}
	dns["o1._domainkey.other.example"] = dns["ed1._domainkey.example.org"]
	m := NewModule(ModuleOptions{Keys: append([]Key{other}, keys...), Metrics: NewMetrics(prometheus.NewRegistry()), Log: quiet})
	for _, c := range []struct {
		from, acl string
		want      []string // d/s of the signatures, top first
	}{
		{"alice@example.org", "", []string{"example.org/rsa1", "example.org/ed1"}},
		{"alice@news.example.org", "", []string{"example.org/rsa1", "example.org/ed1"}},
		{"alice@elsewhere.example", "", []string{"other.example/o1"}},
		{"not an address", "", []string{"other.example/o1"}},
		{"Alice <alice@example.org", "", []string{"example.org/rsa1", "example.org/ed1"}}, // unparsable: the name after @
		{"alice@[192.0.2.1]", "", []string{"other.example/o1"}},
		{"alice@example.org", "OTHER.example", []string{"other.example/o1"}},
		{"alice@example.org", "nokey.example", nil},
	} {
		vars := map[string]string{}
		if c.acl != "" {
			vars[VarSignDomain] = c.acl
		}
		msg, tx := hop(t, []milter.Module{m}, []milter.Header{{Name: "From", Value: c.from}, {Name: "Subject", Value: "x"}}, "hi\r\n", vars, ControlSign)
		var got []string
		for _, f := range tx.Mutations.Prepend {
			v := strings.ReplaceAll(f.Value, "\r\n\t", " ")
			got = append(got, tagOf(v, "d")+"/"+tagOf(v, "s"))
		}
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("From %s, acl %q: signed %v want %v", c.from, c.acl, got, c.want)
		}
		for _, v := range verifyAll(t, msg, dns) {
			if v.Err != nil {
				t.Errorf("From %s: %s: %v", c.from, v.Domain, v.Err)
			}
		}
	}
	if got := testutil.ToFloat64(m.o.Metrics.Sign.WithLabelValues("no_key")); got != 1 {
		t.Errorf("no_key counter %v", got)
	}
	// not marked, or not accepted: nothing
	_, tx := hop(t, []milter.Module{m}, []milter.Header{{Name: "From", Value: "a@example.org"}}, "x\r\n", nil)
	if len(tx.Mutations.Prepend) != 0 {
		t.Errorf("signed without the control")
	}
	tx = &milter.Txn{Session: &milter.Session{}}
	tx.SetControl(ControlSign)
	if err := m.Finalize(context.Background(), tx, milter.Decision{Verdict: milter.Reject}); err != nil || len(tx.Mutations.Prepend) != 0 {
		t.Errorf("signed a rejected message: %v", err)
	}
}

// A key that fails to sign is a module error (on_error decides), counted.
func TestModuleSignError(t *testing.T) {
	m := NewModule(ModuleOptions{Keys: []Key{{Domain: "example.org", Selector: "s", Signer: failingSigner{}}},
		Metrics: NewMetrics(prometheus.NewRegistry()), Log: quiet})
	tx := &milter.Txn{Session: &milter.Session{}, Headers: []milter.Header{{Name: "From", Value: "a@example.org"}}}
	tx.SetControl(ControlSign)
	if err := m.Finalize(context.Background(), tx, milter.Decision{Verdict: milter.Accept}); err == nil {
		t.Fatal("no error")
	}
	if got := testutil.ToFloat64(m.o.Metrics.Sign.WithLabelValues("error")); got != 1 {
		t.Errorf("error counter %v", got)
	}
}

func tagOf(v, tag string) string {
	for _, p := range strings.Split(v, ";") {
		if k, val, ok := strings.Cut(strings.TrimSpace(p), "="); ok && k == tag {
			return val
		}
	}
	return ""
}

type failingSigner struct{}

func (failingSigner) Algorithm() string        { return sigcrypto.Ed25519SHA256 }
func (failingSigner) Public() crypto.PublicKey { return ed25519.PublicKey(make([]byte, 32)) }
func (failingSigner) Sign([]byte) ([]byte, error) {
	return nil, errors.New("the HSM is gone")
}
