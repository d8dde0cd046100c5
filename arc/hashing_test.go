package arc

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/milter"
	"github.com/tollgate/tollgate/policy"
)

// TestNoBodyHashingNobodyNeeds: a message without ARC headers, under a
// configuration whose policy never sets arc_sign, feeds no body hash (the
// keys configured or not), and gets the verdict and Authentication-Results
// it got when the body was hashed for a possible seal.
func TestNoBodyHashingNobodyNeeds(t *testing.T) {
	key := arcKey(t, 0o600)
	const base = "authserv_id: mx.example.org\narc:\n  sign:\n    - {domain: example.org, selector: s1, key: " + "%KEY%" + "}\n"
	noRule := strings.ReplaceAll(base, "%KEY%", key) + "acl:\n  data:\n    - accept: {}\n"
	sealRule := strings.ReplaceAll(base, "%KEY%", key) + "acl:\n  data:\n    - accept: {control: [arc_sign]}\n"
	msg := []milter.Header{{Name: "From", Value: "alice@example.net"}, {Name: "To", Value: "bob@example.org"}, {Name: "Subject", Value: "plain"}}
	body := strings.Repeat("a line of text  with\tblanks \r\n", 200)

	run := func(yml string) (string, bool) {
		t.Helper()
		rt, err := policy.NewEnv(nil, prometheus.NewRegistry()).Runtime(mustParse(t, yml))
		if err != nil {
			t.Fatal(err)
		}
		m := rt.Modules()[0].(*Module)
		m.o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
		_, tx := milterHop(t, m, msg, body, false)
		f := FactsOf(tx)
		return f.State + " " + f.AuthResult, tx.BodyHashes().Wanted()
	}
	verdict, hashed := run(noRule)
	if hashed {
		t.Errorf("no ARC set, no seal rule: the body was hashed")
	}
	sealedVerdict, hashed := run(sealRule)
	if !hashed {
		t.Errorf("with a seal rule: the body was not hashed")
	}
	if verdict != sealedVerdict || !strings.HasPrefix(verdict, "none arc=none") {
		t.Errorf("verdicts differ: %q without hashing, %q with", verdict, sealedVerdict)
	}
}

// TestBodyHashedWhenAChainNeedsIt: without a seal rule, a message that
// carries an ARC set still has its body hashed, and passes.
func TestBodyHashedWhenAChainNeedsIt(t *testing.T) {
	signer, _, txt, err := GenerateKey("ed25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	dns := chainResolver{"s1._domainkey.hop1.example": txt}
	opts := func(noSealRule bool) ModuleOptions {
		return ModuleOptions{AuthServID: "mx.hop1.example", Resolver: dns, NoSealRule: noSealRule,
			Seal:    []SealOptions{{Key: Key{Domain: "hop1.example", Selector: "s1", Signer: signer}, AuthServID: "mx.hop1.example"}},
			Metrics: NewMetrics(prometheus.NewRegistry()), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	}
	msg := []milter.Header{{Name: "From", Value: "alice@example.net"}, {Name: "Subject", Value: "chain"}}
	sealed, _ := milterHop(t, NewModule(opts(false)), msg, "hello\r\n", true)
	for i := range sealed {
		sealed[i].Value = strings.TrimPrefix(sealed[i].Value, " ")
	}
	_, tx := milterHop(t, NewModule(opts(true)), sealed, "hello\r\n", false)
	if FactsOf(tx).State != "pass" || !tx.BodyHashes().Wanted() {
		t.Fatalf("%+v; body hashed: %v", FactsOf(tx), tx.BodyHashes().Wanted())
	}
}
