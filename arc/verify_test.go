package arc

import (
	"context"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/sigcrypto"
)

var t0 = time.Unix(1_750_000_000, 0)

// testKeys are made once: RSA generation is slow under -race.
var testKeys = sync.OnceValue(func() map[string]sigcrypto.Signer {
	m := map[string]sigcrypto.Signer{}
	for _, name := range []string{"hop1", "hop2", "hop3"} {
		data, err := os.ReadFile(filepath.Join("testdata", "keys", name+".pem"))
		if err != nil {
			panic(err)
		}
		if m[name], err = ParsePrivateKey(data); err != nil {
			panic(err)
		}
	}
	for i := 1; i <= 3; i++ {
		seed := make([]byte, ed25519.SeedSize)
		seed[0] = byte(i)
		k, err := sigcrypto.NewSigner(ed25519.NewKeyFromSeed(seed))
		if err != nil {
			panic(err)
		}
		m[fmt.Sprintf("ed%d", i)] = k
	}
	return m
})

// testKey returns a signing identity for d=<name>.example, s=sel, and
// publishes its key record in res.
func testKey(res mapResolver, name string) Key {
	k := testKeys()[name]
	d := name + ".example"
	res["sel._domainkey."+d] = []string{dnsRecord(k)}
	return Key{Domain: d, Selector: "sel", Signer: k}
}

func dnsRecord(k sigcrypto.Signer) string {
	switch pub := k.Public().(type) {
	case *rsa.PublicKey:
		der, _ := x509.MarshalPKIXPublicKey(pub)
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	}
	panic("key type")
}

const plainMessage = "From: a@origin.example\r\n" +
	"To: b@dest.example\r\n" +
	"Subject: hello\r\n" +
	"Date: Mon, 16 Jun 2025 10:00:00 +0000\r\n" +
	"Message-ID: <1@origin.example>\r\n" +
	"\r\n" +
	"body line\r\n"

// sealHop is one hop of ours: verify, add our Authentication-Results,
// optionally change the message (after verifying), seal. It returns the
// outgoing headers (new set first) and the verdict the hop saw.
func sealHop(t testing.TB, res Resolver, hs []Header, body []byte, k Key, now time.Time, modify func([]Header) []Header, mod ...func(*SealOptions)) ([]Header, *Result, error) {
	t.Helper()
	clock := func() time.Time { return now }
	v, r := verifyMessage(VerifyOptions{Resolver: res, Now: clock}, hs, body, 3)
	srv := "mx." + k.Domain
	ar := Header{"Authentication-Results", " " + srv + "; arc=" + string(r.State)}
	out := append([]Header{ar}, hs...)
	if modify != nil {
		out = modify(out)
	}
	opts := SealOptions{Key: k, AuthServID: srv, Timestamps: true, Now: clock}
	for _, m := range mod {
		m(&opts)
	}
	set, err := v.Seal(opts, out, []string{ar.Value})
	if err != nil {
		return out, r, err
	}
	return append(set, out...), r, nil
}

func mustSealHop(t testing.TB, res Resolver, hs []Header, body []byte, k Key, now time.Time, modify func([]Header) []Header, mod ...func(*SealOptions)) []Header {
	t.Helper()
	out, r, err := sealHop(t, res, hs, body, k, now, modify, mod...)
	if err != nil {
		t.Fatalf("seal (chain %s %q): %v", r.State, r.Reason, err)
	}
	return out
}

func verifyAt(res Resolver, hs []Header, body []byte, now time.Time) *Result {
	_, r := verifyMessage(VerifyOptions{Resolver: res, Now: func() time.Time { return now }}, hs, body, 0)
	return r
}

func tagSubject(hs []Header) []Header {
	out := append([]Header(nil), hs...)
	for i := range out {
		if strings.EqualFold(out[i].Name, "Subject") {
			out[i].Value = " [list]" + out[i].Value
		}
	}
	return out
}

func TestOldestPass(t *testing.T) {
	res := mapResolver{}
	hs, body := parseMessage(plainMessage)
	k1, k2, k3 := testKey(res, "ed1"), testKey(res, "ed2"), testKey(res, "hop3")

	m1 := mustSealHop(t, res, hs, body, k1, t0, nil)
	m2 := mustSealHop(t, res, m1, body, k2, t0, nil)
	r := verifyAt(res, m2, body, t0)
	if r.State != StatePass || r.OldestPass != 1 || r.HeaderOldestPass() != 0 || r.Instances != 2 {
		t.Fatalf("untouched chain: %+v", r)
	}
	// hop 2 tags the subject after validating: AMS 1 no longer validates
	m2 = mustSealHop(t, res, m1, body, k2, t0, tagSubject)
	m3 := mustSealHop(t, res, m2, body, k3, t0, nil)
	r = verifyAt(res, m3, body, t0)
	if r.State != StatePass || r.OldestPass != 2 || r.HeaderOldestPass() != 2 {
		t.Fatalf("chain with AMS 1 broken: %+v", r)
	}
	if got := strings.Join(r.Domains, ":"); got != "ed1.example:ed2.example:hop3.example" {
		t.Errorf("domains %q", got)
	}
	// tag it again after hop 3: only AMS 3 would break, the newest: fail
	r = verifyAt(res, tagSubject(m3), body, t0)
	if r.State != StateFail || r.Reason != "ams.3 signature invalid" || r.OldestPass != 0 {
		t.Fatalf("newest AMS broken: %+v", r)
	}
}

func TestBodyModifiedAfterSealing(t *testing.T) {
	res := mapResolver{}
	hs, body := parseMessage(plainMessage)
	m := mustSealHop(t, res, hs, body, testKey(res, "hop1"), t0, nil)
	r := verifyAt(res, m, append(body, "appended\r\n"...), t0)
	if r.State != StateFail || r.Reason != "ams.1 body hash mismatch" {
		t.Fatalf("%+v", r)
	}
}

func TestTooManySets(t *testing.T) {
	res := mapResolver{}
	hs, body := parseMessage(plainMessage)
	k := testKey(res, "ed1")
	for i := 0; i < MaxInstances; i++ {
		hs = mustSealHop(t, res, hs, body, k, t0, nil)
	}
	v, r := verifyMessage(VerifyOptions{Resolver: res, Now: func() time.Time { return t0 }}, hs, body, 0)
	if r.State != StatePass || r.Instances != 50 || len(r.Domains) != 50 {
		t.Fatalf("50 sets: %s %s (%d)", r.State, r.Reason, r.Instances)
	}
	if _, err := v.Seal(SealOptions{Key: k, AuthServID: "mx.ed1.example"}, hs, nil); !errors.Is(err, ErrNoSeal) {
		t.Fatalf("sealed a 51st set: %v", err)
	}
	// a 51st set, however well made, fails the chain
	extra := []Header{
		{"ARC-Seal", " i=51; a=ed25519-sha256; cv=pass; d=ed1.example; s=sel; b=AAAA"},
		{"ARC-Message-Signature", " i=51; a=ed25519-sha256; d=ed1.example; s=sel; h=from; bh=AAAA; b=AAAA"},
		{"ARC-Authentication-Results", " i=51; mx.ed1.example; arc=pass"},
	}
	r = verifyAt(res, append(extra, hs...), body, t0)
	if r.State != StateFail || !strings.Contains(r.Reason, "too many ARC sets") || r.Instances != 51 {
		t.Fatalf("51 sets: %+v", r)
	}
	// a lone absurd instance number costs nothing
	r = verifyAt(res, []Header{{"ARC-Seal", " i=999999999; cv=none"}}, body, t0)
	if r.State != StateFail || r.Domains != nil {
		t.Fatalf("huge i=: %+v", r)
	}
}

func TestArrivedCVFailNotExtended(t *testing.T) {
	res := mapResolver{}
	hs, body := parseMessage(plainMessage)
	m1 := mustSealHop(t, res, hs, body, testKey(res, "hop1"), t0, nil)
	// hop 2 receives a broken chain and seals cv=fail
	m2, r, err := sealHop(t, res, tagSubject(m1), body, testKey(res, "ed2"), t0, nil)
	if err != nil || r.State != StateFail || !strings.Contains(m2[0].Value, "cv=fail") {
		t.Fatalf("hop 2: %v %+v %q", err, r, m2[0].Value)
	}
	// hop 3 must not extend it
	_, r, err = sealHop(t, res, m2, body, testKey(res, "ed3"), t0, nil)
	if !errors.Is(err, ErrNoSeal) || r.ArrivedCV != "fail" || r.State != StateFail {
		t.Fatalf("hop 3: err=%v %+v", err, r)
	}
}

// TestFailSealScope: the AS of a cv=fail seal covers only its own set
// (RFC 8617 §5.1.2), for our seals and for those of both peers.
func TestFailSealScope(t *testing.T) {
	res := mapResolver{}
	hs, body := parseMessage(plainMessage)
	m1 := mustSealHop(t, res, hs, body, testKey(res, "hop1"), t0, nil)
	m2 := mustSealHop(t, res, tagSubject(m1), body, testKey(res, "hop2"), t0, nil)
	checkFailScope(t, res, m2, body)
}

func checkFailScope(t *testing.T, res Resolver, hs []Header, body []byte) {
	t.Helper()
	v, r := verifyMessage(VerifyOptions{Resolver: res, Now: func() time.Time { return t0 }}, hs, body, 0)
	if r.ArrivedCV != "fail" || r.Instances != 2 {
		t.Fatalf("%+v", r)
	}
	if f := v.verifyAS(context.Background(), 2, 2); f != nil {
		t.Errorf("cv=fail seal over its own set: %s", f.reason)
	}
	if f := v.verifyAS(context.Background(), 2, 1); f == nil {
		t.Errorf("cv=fail seal also validates over the whole chain")
	}
}

func TestTimestamps(t *testing.T) {
	res := mapResolver{}
	hs, body := parseMessage(plainMessage)
	k := testKey(res, "ed1")
	cases := []struct {
		name     string
		signAt   time.Time
		expire   string
		verifyAt time.Time
		want     string // "" for pass
	}{
		{"now", t0, "", t0, ""},
		{"t in the future", t0.Add(2 * time.Hour), "", t0, "ams.1 t= is in the future"},
		{"t within the skew", t0.Add(10 * time.Minute), "", t0, ""},
		{"x relative, fresh", t0, "+3600", t0.Add(30 * time.Minute), ""},
		{"x relative, expired", t0, "+3600", t0.Add(3 * time.Hour), "ams.1 signature expired"},
		{"x absolute, expired", t0, fmt.Sprint(t0.Unix() + 60), t0.Add(2 * time.Hour), "ams.1 signature expired"},
		{"x just past, within the skew", t0, "+60", t0.Add(30 * time.Minute), ""},
		{"x default month", t0, DefaultExpire, t0.Add(29 * 24 * time.Hour), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := mustSealHop(t, res, hs, body, k, c.signAt, nil, func(o *SealOptions) { o.Expire = c.expire })
			r := verifyAt(res, m, body, c.verifyAt)
			if (c.want == "" && r.State != StatePass) || (c.want != "" && r.Reason != c.want) {
				t.Fatalf("got %s %q, want %q", r.State, r.Reason, c.want)
			}
		})
	}
	if _, _, err := ParseExpire("soon"); err == nil {
		t.Error("ParseExpire accepted junk")
	}
}

func TestDNSFailureKinds(t *testing.T) {
	res := mapResolver{}
	hs, body := parseMessage(plainMessage)
	k := testKey(res, "ed1")
	m := mustSealHop(t, res, hs, body, k, t0, nil)

	temp := mapResolver{"sel._domainkey.ed1.example": nil}
	v, r := verifyMessage(VerifyOptions{Resolver: temp, Now: func() time.Time { return t0 }}, m, body, 0)
	if r.State != StateFail || !r.Temporary || r.Reason != "ams.1 dns: temporary failure for sel._domainkey.ed1.example (SERVFAIL)" {
		t.Fatalf("temp: %+v", r)
	}
	// a temporary failure must not brand the chain cv=fail for good
	_, err := v.Seal(SealOptions{Key: k, AuthServID: "mx.ed1.example"}, m, nil)
	if !errors.Is(err, ErrNoSeal) || !errors.Is(err, ErrTempDNS) {
		t.Fatalf("seal after a temporary failure: %v", err)
	}

	r = verifyAt(mapResolver{}, m, body, t0)
	if r.State != StateFail || r.Temporary || r.Reason != "ams.1 dns: no record at sel._domainkey.ed1.example (NXDOMAIN)" {
		t.Fatalf("perm: %+v", r)
	}
	r = verifyAt(errResolver{errors.New("resolver exploded")}, m, body, t0)
	if !r.Temporary {
		t.Fatalf("unknown resolver errors count as temporary: %+v", r)
	}
	r = verifyAt(errResolver{context.DeadlineExceeded}, m, body, t0)
	if !r.Temporary {
		t.Fatalf("deadline: %+v", r)
	}
}

type errResolver struct{ err error }

func (e errResolver) LookupTXT(context.Context, string) ([]string, error) { return nil, e.err }

func TestKeyRecords(t *testing.T) {
	res := mapResolver{}
	hs, body := parseMessage(plainMessage)
	k := testKey(res, "hop1")
	m := mustSealHop(t, res, hs, body, k, t0, nil)
	name := "sel._domainkey.hop1.example"
	good := res[name][0]
	other := dnsRecord(testKeys()["hop2"])
	cases := []struct {
		name    string
		records []string
		want    string
	}{
		{"one", []string{good}, ""},
		{"one key and an unrelated record", []string{"v=spf1 -all", good}, ""},
		{"two keys", []string{good, other}, "ams.1 key: 2 key records at " + name},
		{"wrong key", []string{other}, "ams.1 signature invalid"},
		{"revoked", []string{"v=DKIM1; k=rsa; p="}, "ams.1 key revoked"},
		{"bad version", []string{strings.Replace(good, "DKIM1", "DKIM2", 1)}, "ams.1 key: bad record at " + name + ": v= is not DKIM1"},
		{"ed25519 record for rsa", []string{dnsRecord(testKeys()["ed1"])}, "ams.1 signature invalid"},
		{"service other", []string{good + "; s=tlsrpt"}, "ams.1 key: bad record at " + name + ": s= excludes email"},
		{"hash sha1 only", []string{good + "; h=sha1"}, "ams.1 key: bad record at " + name + ": h= excludes sha256"},
		{"folded", []string{strings.Replace(good, "p=", "p=\r\n ", 1)}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := verifyAt(mapResolver{name: c.records, "sel._domainkey.ed1.example": res["sel._domainkey.ed1.example"]}, m, body, t0)
			if (c.want == "" && r.State != StatePass) || (c.want != "" && r.Reason != c.want) {
				t.Fatalf("got %s %q, want %q", r.State, r.Reason, c.want)
			}
		})
	}
}

func TestMinRSABits(t *testing.T) {
	res := mapResolver{}
	hs, body := parseMessage(plainMessage)
	m := mustSealHop(t, res, hs, body, testKey(res, "hop1"), t0, nil)
	_, r := verifyMessage(VerifyOptions{Resolver: res, Now: func() time.Time { return t0 }, MinRSABits: 3072}, m, body, 0)
	if r.State != StateFail || r.Reason != "ams.1 key too small (2048 bits < 3072)" {
		t.Fatalf("%+v", r)
	}
	if r := verifyAt(res, m, body, t0); r.State != StatePass {
		t.Fatalf("default minimum: %+v", r)
	}
}

func TestEd25519RoundTrip(t *testing.T) {
	key, pemBytes, txt, err := GenerateKey("ed25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParsePrivateKey(pemBytes)
	if err != nil || !key.Public().(ed25519.PublicKey).Equal(parsed.Public()) {
		t.Fatalf("PEM round trip: %v", err)
	}
	res := mapResolver{"ed._domainkey.example.net": {txt}}
	hs, body := parseMessage(plainMessage)
	k := Key{Domain: "example.net", Selector: "ed", Signer: parsed}
	m := mustSealHop(t, res, hs, body, k, t0, nil)
	if !strings.Contains(m[0].Value, "a=ed25519-sha256") || !strings.Contains(m[1].Value, "a=ed25519-sha256") {
		t.Fatalf("not ed25519: %q", m[0].Value)
	}
	// and on to an RSA hop: mixed chains work
	m = mustSealHop(t, res, m, body, testKey(res, "hop2"), t0, nil)
	if r := verifyAt(res, m, body, t0); r.State != StatePass || r.OldestPass != 1 {
		t.Fatalf("%+v", r)
	}
}

func TestMalformedHeadersNeverPanic(t *testing.T) {
	res := mapResolver{}
	hs, body := parseMessage(plainMessage)
	m := mustSealHop(t, res, hs, body, testKey(res, "ed1"), t0, nil)
	for i := range 3 {
		v := m[i].Value
		for cut := 0; cut <= len(v); cut++ {
			mm := append([]Header(nil), m...)
			mm[i].Value = v[:cut]
			r := verifyAt(res, mm, body, t0)
			if r.State == StatePass && cut < len(v)-1 {
				// the AAR may be cut inside its last result and still
				// parse, but then the seal breaks
				t.Fatalf("%s cut at %d passes", m[i].Name, cut)
			}
		}
	}
}

func TestHeaderLineEndings(t *testing.T) {
	res := mapResolver{}
	hs, body := parseMessage(plainMessage)
	m := mustSealHop(t, res, hs, body, testKey(res, "ed1"), t0, nil)
	// an MTA that hands over folded values with bare LF
	for i := range m {
		m[i].Value = strings.ReplaceAll(m[i].Value, "\r\n", "\n")
	}
	if r := verifyAt(res, m, body, t0); r.State != StatePass {
		t.Fatalf("%+v", r)
	}
}
