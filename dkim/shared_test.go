package dkim

import (
	"context"
	"crypto"
	"strings"
	"sync"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tollgate/tollgate/internal/dkimsig"
	"github.com/tollgate/tollgate/internal/dnstest"
	"github.com/tollgate/tollgate/internal/miltertest"
	"github.com/tollgate/tollgate/milter"
	"github.com/tollgate/tollgate/policy"
)

// TestSharedBodyHashes: driven as the milter drives it (EndOfHeaders,
// then the body to the shared hashes), the module hashes nothing itself,
// its signatures with one body canonicalization share one hash, and a
// hash another module asked for is the one it reads.
func TestSharedBodyHashes(t *testing.T) {
	key := fixedKey(t, "rsa2048.pem")
	keys := keyTable{"rsa._domainkey.example.org": key.txt, "rsa._domainkey.sub.example.org": key.txt}
	o := func(domain string, bc msgdkim.Canonicalization) msgdkim.SignOptions {
		return msgdkim.SignOptions{Domain: domain, Selector: "rsa", Signer: key.signer, HeaderKeys: headerKeys,
			HeaderCanonicalization: "relaxed", BodyCanonicalization: bc}
	}
	msg := sign(t, sign(t, sign(t, plainMessage, o("example.org", "relaxed")), o("sub.example.org", "relaxed")), o("example.org", "simple"))
	hs, body := splitMessage(t, msg, "\r\n")
	m := NewModule(ModuleOptions{Resolver: keys})
	tx := &milter.Txn{Session: &milter.Session{}}
	ctx := context.Background()
	for _, h := range hs {
		m.Header(ctx, tx, h)
	}
	// Another module (ARC, say) asks for the relaxed hash first.
	other, err := tx.BodyHash(dkimsig.Relaxed, crypto.SHA256, -1)
	if err != nil {
		t.Fatal(err)
	}
	miltertest.Body(ctx, tx, []milter.Module{m}, body[:10], body[10:])
	if err := finish(ctx, m, tx); err != nil {
		t.Fatal(err)
	}
	m.TxnEnd(tx)
	st := m.state(tx)
	// Header order: simple (top), relaxed sub, relaxed.
	if st.sums[1] != other || st.sums[2] != other || st.sums[0] == other || st.sums[0] == nil {
		t.Errorf("body hashes not shared: %p %p %p, the other module's %p", st.sums[0], st.sums[1], st.sums[2], other)
	}
	f := FactsOf(tx)
	if len(f.Signatures) != 3 || f.Signatures[0].Result != "pass" || f.Signatures[1].Result != "pass" || f.Signatures[2].Result != "pass" {
		t.Errorf("facts %+v", f)
	}
}

// TestUnsignedAsksForNoBodyHash: without a signature, EndOfHeaders asks
// the milter for nothing, so nothing of the body is hashed for DKIM.
func TestUnsignedAsksForNoBodyHash(t *testing.T) {
	noLeaks(t)
	m := NewModule(ModuleOptions{Resolver: keyTable{}})
	hs, body := splitMessage(t, plainMessage, "\r\n")
	tx := &milter.Txn{Session: &milter.Session{}}
	ctx := context.Background()
	for _, h := range hs {
		m.Header(ctx, tx, h)
	}
	miltertest.Body(ctx, tx, []milter.Module{m}, body)
	finish(ctx, m, tx)
	if tx.BodyHashes().Wanted() || m.state(tx).started {
		t.Error("an unsigned message had its body hashed")
	}
	if got := dkimResults(tx); len(got) != 1 || got[0] != "dkim=none" {
		t.Errorf("results %q", got)
	}
}

// TestBodyHashAskedTooLate: a verifier started after the body began (a
// caller breaking the hook order) gets a temperror, not a verdict on a
// hash that missed part of the body.
func TestBodyHashAskedTooLate(t *testing.T) {
	key := fixedKey(t, "rsa2048.pem")
	m := NewModule(ModuleOptions{Resolver: keyTable{"rsa._domainkey.example.org": key.txt}})
	msg := sign(t, plainMessage, msgdkim.SignOptions{Domain: "example.org", Selector: "rsa", Signer: key.signer, HeaderKeys: headerKeys})
	hs, body := splitMessage(t, msg, "\r\n")
	tx := &milter.Txn{Session: &milter.Session{}}
	ctx := context.Background()
	for _, h := range hs {
		m.Header(ctx, tx, h)
	}
	tx.BodyHash(dkimsig.Relaxed, crypto.SHA256, -1) // someone wants a hash: the body is fed
	tx.WriteBody(body)
	m.EndOfHeaders(ctx, tx)
	tx.EndBody()
	finish(ctx, m, tx)
	m.TxnEnd(tx)
	f := FactsOf(tx)
	if len(f.Signatures) != 1 || f.Signatures[0].Result != "temperror" || f.Signatures[0].Reason != "verifier_error" ||
		!strings.Contains(f.Signatures[0].Detail, "no body hash") {
		t.Errorf("facts %+v", f)
	}
}

// TestThroughTheMilter: a message with two relaxed signatures and one
// simple one, sent over the milter protocol to a server running the
// module a policy builds, passes all three with one canonicalization pass
// per canonicalization (the milter's shared body hashes), not one per
// signature.
func TestThroughTheMilter(t *testing.T) {
	key := fixedKey(t, "rsa2048.pem")
	srv := dnstest.Start(t)
	publish(srv, "rsa._domainkey.example.org", key.txt)
	publish(srv, "rsa._domainkey.sub.example.org", key.txt)
	p, err := policy.Parse("t.yaml", []byte(`
authserv_id: mx.example.net
dns: {server: "`+srv.Addr+`", timeout: 2s}
dkim: {}
acl:
  data:
    - accept: {name: signed, dkim: [pass]}
`), Spec)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := policy.NewEnv(nil, prometheus.NewRegistry()).Runtime(p)
	if err != nil {
		t.Fatal(err)
	}
	m := rt.Modules()[0].(*Module)
	metrics := milter.NewMetrics(prometheus.NewRegistry())
	sock := miltertest.ServeMetrics(t, rt, 0, 0, metrics)
	o := func(domain string, bc msgdkim.Canonicalization) msgdkim.SignOptions {
		return msgdkim.SignOptions{Domain: domain, Selector: "rsa", Signer: key.signer, HeaderKeys: headerKeys,
			HeaderCanonicalization: "relaxed", BodyCanonicalization: bc}
	}
	msg := sign(t, sign(t, sign(t, plainMessage, o("example.org", "relaxed")), o("sub.example.org", "relaxed")), o("example.org", "simple"))
	hs, body := splitMessage(t, msg, "\r\n")
	c, macros := miltertest.Client(sock)
	miltertest.Send(t, c, macros, hs, body, 1)
	if got := testutil.ToFloat64(m.o.Metrics.Verify.WithLabelValues("pass")); got != 3 {
		t.Errorf("%v signatures passed, want 3", got)
	}
	relaxed := testutil.ToFloat64(metrics.BodyCanonicalizations.WithLabelValues("relaxed"))
	simple := testutil.ToFloat64(metrics.BodyCanonicalizations.WithLabelValues("simple"))
	if relaxed != 1 || simple != 1 {
		t.Errorf("canonicalization passes: relaxed %v, simple %v; want 1 each", relaxed, simple)
	}
}

// countingKeys counts the lookups of each name.
type countingKeys struct {
	keyTable
	mu sync.Mutex
	n  map[string]int
}

func (c *countingKeys) LookupTXT(ctx context.Context, name string) ([]string, error) {
	c.mu.Lock()
	c.n[name]++
	c.mu.Unlock()
	return c.keyTable.LookupTXT(ctx, name)
}

// TestOneLookupPerKey: signatures made with one key look it up once.
func TestOneLookupPerKey(t *testing.T) {
	key := fixedKey(t, "rsa2048.pem")
	keys := &countingKeys{keyTable: keyTable{"rsa._domainkey.example.org": key.txt}, n: map[string]int{}}
	m := NewModule(ModuleOptions{Resolver: keys})
	o := msgdkim.SignOptions{Domain: "example.org", Selector: "rsa", Signer: key.signer, HeaderKeys: headerKeys}
	msg := sign(t, sign(t, plainMessage, o), o)
	hs, body := splitMessage(t, msg, "\r\n")
	f := FactsOf(run(t, m, hs, body, 100))
	if len(f.Signatures) != 2 || f.Signatures[0].Result != "pass" || f.Signatures[1].Result != "pass" {
		t.Errorf("facts %+v", f)
	}
	if n := keys.n["rsa._domainkey.example.org"]; n != 1 {
		t.Errorf("%d lookups of one key for two signatures", n)
	}
}

// TestKeyStrictFlag: a key record with t=s refuses a signature whose i=
// is in a subdomain of d= (RFC 6376 §3.6.1), and takes one whose i= is in
// d= itself. Here the module departs from go-msgauth, which ignores t=.
func TestKeyStrictFlag(t *testing.T) {
	key := fixedKey(t, "rsa2048.pem")
	keys := keyTable{"strict._domainkey.example.org": strings.Replace(key.txt, "k=rsa;", "k=rsa; t=s;", 1)}
	m := NewModule(ModuleOptions{Resolver: keys})
	for _, tc := range []struct{ auid, result, gomsgauth string }{
		{"alice@example.org", "pass", "pass"},
		{"alice@mail.example.org", "permerror", "pass"},
	} {
		msg := sign(t, plainMessage, msgdkim.SignOptions{Domain: "example.org", Selector: "strict", Identifier: tc.auid, Signer: key.signer, HeaderKeys: headerKeys})
		got := moduleVerdicts(t, m, msg, 100)
		want := goMsgauthVerdicts(t, msg, keys, DefaultMinRSABits)
		if got[0].Result != tc.result || want[0].Result != tc.gomsgauth {
			t.Errorf("i=%s: module %v, go-msgauth %v", tc.auid, got, want)
		}
		if tc.result == "permerror" && (got[0].Reason != "signature_syntax" || !strings.Contains(got[0].Detail, "t=s")) {
			t.Errorf("i=%s: %+v", tc.auid, got[0])
		}
	}
}
