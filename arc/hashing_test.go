package arc

import (
	"crypto/sha256"
	"hash"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/milter"
	"github.com/tollgate/tollgate/policy"
)

type countingHash struct {
	hash.Hash
	fed *int
}

func (c countingHash) Write(p []byte) (int, error) {
	*c.fed += len(p)
	return c.Hash.Write(p)
}

// countBodyHashing makes every body hash count what it is fed, for the
// length of the test (not parallel: it swaps a package variable).
func countBodyHashing(t *testing.T) (hashes, fed *int) {
	hashes, fed = new(int), new(int)
	t.Cleanup(func() { newBodyHash = sha256.New })
	newBodyHash = func() hash.Hash {
		*hashes++
		return countingHash{sha256.New(), fed}
	}
	return hashes, fed
}

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

	run := func(yml string) (string, int, int) {
		t.Helper()
		hashes, fed := countBodyHashing(t)
		rt, err := policy.NewEnv(nil, prometheus.NewRegistry()).Runtime(mustParse(t, yml))
		if err != nil {
			t.Fatal(err)
		}
		m := rt.Modules()[0].(*Module)
		m.o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
		_, tx := milterHop(t, m, msg, body, false)
		f := FactsOf(tx)
		return f.State + " " + f.AuthResult, *hashes, *fed
	}
	verdict, hashes, fed := run(noRule)
	if hashes != 0 || fed != 0 {
		t.Errorf("no ARC set, no seal rule: %d body hashes fed %d bytes, want none", hashes, fed)
	}
	sealedVerdict, hashes, fed := run(sealRule)
	if hashes != 1 || fed == 0 {
		t.Errorf("with a seal rule: %d body hashes fed %d bytes, want one fed the body", hashes, fed)
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
	hashes, fed := countBodyHashing(t)
	_, tx := milterHop(t, NewModule(opts(true)), sealed, "hello\r\n", false)
	if FactsOf(tx).State != "pass" || *hashes != 1 || *fed == 0 {
		t.Fatalf("%+v; %d hashes fed %d bytes", FactsOf(tx), *hashes, *fed)
	}
}
