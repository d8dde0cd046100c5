package dkimsign

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/dkimsig"
	"github.com/tollgate/tollgate/internal/sigcrypto"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/tollgate/tollgate/internal/keyfile"
)

func bodyHash(canon, body string, chunk int) []byte {
	h := newBodyHasher(canon)
	b := []byte(body)
	for chunk > 0 && len(b) > chunk {
		h.Write(b[:chunk])
		b = b[chunk:]
	}
	h.Write(b)
	return h.Sum()
}

// RFC 6376 §3.4.5's example and the edge cases of §3.4.3 and §3.4.4, each
// fed whole and cut at every byte.
func TestBodyCanon(t *testing.T) {
	for _, c := range []struct{ canon, in, want string }{
		{canonRelaxed, " C \r\nD \t E\r\n\r\n\r\n", " C\r\nD E\r\n"},
		{canonSimple, " C \r\nD \t E\r\n\r\n\r\n", " C \r\nD \t E\r\n"},
		{canonRelaxed, "", ""},
		{canonSimple, "", "\r\n"},
		{canonSimple, "\r\n\r\n", "\r\n"},
		{canonRelaxed, "\r\n \t\r\n", ""},
		{canonRelaxed, "a\r\n\r\nb\r\n\r\n", "a\r\n\r\nb\r\n"},
		{canonRelaxed, "no newline", "no newline\r\n"},
		{canonSimple, "no newline", "no newline\r\n"},
		{canonRelaxed, "lone\nLF and\rCR \r\n", "lone\nLF and\rCR\r\n"},
		{canonRelaxed, "ends in CR\r", "ends in CR\r\r\n"},
		{canonRelaxed, "  \t lead\r\n", " lead\r\n"},
	} {
		want := sha256.Sum256([]byte(c.want))
		for chunk := 0; chunk <= len(c.in); chunk++ {
			if got := bodyHash(c.canon, c.in, chunk); !bytes.Equal(got, want[:]) {
				t.Errorf("%s %q (chunks of %d): hash is not that of %q", c.canon, c.in, chunk, c.want)
				break
			}
		}
	}
}

func TestHeaderCanon(t *testing.T) {
	for _, c := range []struct{ canon, name, value, want string }{
		{canonRelaxed, "SubJect ", " \t A  b\n\tc  ", "subject:A b c\r\n"},
		{canonRelaxed, "From", " a@b\r\n c", "from:a@b c\r\n"},
		{canonSimple, "SubJect", " A  b\n\tc ", "SubJect: A  b\r\n\tc \r\n"},
	} {
		if got := string(appendHeader(nil, c.canon, c.name, c.value)); got != c.want {
			t.Errorf("%s %q: %q want %q", c.canon, c.value, got, c.want)
		}
	}
}

func TestSignedNames(t *testing.T) {
	hs := []Header{{"From", " a"}, {"To", " b"}, {"To", " c"}, {"Subject", " s"}}
	got := strings.Join(signedNames(hs, []string{"From", "=To", "+Subject", "=Cc", "+Reply-To", "Date"}), ":")
	if want := "from:to:to:subject:subject:reply-to:date"; got != want {
		t.Errorf("h=%s want %s", got, want)
	}
	if got := selectHeaders(hs, []string{"to", "to", "to", "from"}); fmt.Sprint(got) != "[2 1 -1 0]" {
		t.Errorf("selection %v", got)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{Headers: []string{"To"}}, "must include From"},
		{Options{Headers: []string{"+From", "Bad Name"}}, "bad header name"},
		{Options{Headers: []string{"=", "From"}}, "empty header name"},
		{Options{BodyCanon: "nofws"}, "not relaxed or simple"},
		{Options{Expire: -time.Second}, "negative"},
	} {
		if err := c.o.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.o, err, c.want)
		}
	}
	if err := (&Options{Headers: []string{"=from"}}).Validate(); err != nil {
		t.Errorf("=from: %v", err)
	}
}

// testKeys makes an RSA and an Ed25519 key for example.org and the DNS
// records of both.
func testKeys(t testing.TB) ([]Key, map[string]string) {
	t.Helper()
	rk, _, rtxt, err := keyfile.Generate("rsa", 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, _, etxt, err := keyfile.Generate("ed25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := sigcrypto.NewSigner(rk)
	if err != nil {
		t.Fatal(err)
	}
	es, err := sigcrypto.NewSigner(ek)
	if err != nil {
		t.Fatal(err)
	}
	return []Key{{Domain: "example.org", Selector: "rsa1", Signer: rs}, {Domain: "example.org", Selector: "ed1", Signer: es}},
		map[string]string{"rsa1._domainkey.example.org": rtxt, "ed1._domainkey.example.org": etxt}
}

// verifyAll checks every DKIM-Signature of msg with go-msgauth.
func verifyAll(t *testing.T, msg string, dns map[string]string) []*dkim.Verification {
	t.Helper()
	vs, err := dkim.VerifyWithOptions(strings.NewReader(msg), &dkim.VerifyOptions{LookupTXT: func(d string) ([]string, error) {
		if v, ok := dns[strings.TrimSuffix(d, ".")]; ok {
			return []string{v}, nil
		}
		return nil, errors.New("NXDOMAIN")
	}})
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func render(sigs []string, hs []Header, body string) string {
	var b strings.Builder
	for _, s := range sigs {
		b.WriteString("DKIM-Signature: " + s + "\r\n")
	}
	for _, h := range hs {
		b.WriteString(h.Name + ":" + dkimsig.FixLF(h.Value) + "\r\n")
	}
	return b.String() + "\r\n" + body
}

var (
	testHeaders = []Header{{"Received", " from x by y;\n\tThu, 3 Dec 2026 10:00:00 +0000"}, {"From", " Alice <alice@example.org>"},
		{"To", " bob@example.net"}, {"Subject", " a  folded\n\t subject "}, {"Date", " Thu, 3 Dec 2026 10:00:00 +0000"},
		{"Message-ID", " <1@example.org>"}}
	testBody = "Hello  Bob, \r\n\r\nsee you.\r\n\r\n\r\n"
)

// TestSignVerifies: every canonicalization, RSA and Ed25519 together (dual
// signing), verified by go-msgauth; a changed body or Subject fails both.
func TestSignVerifies(t *testing.T) {
	keys, dns := testKeys(t)
	for _, canon := range []string{"relaxed/relaxed", "simple/simple", "relaxed/simple", "simple/relaxed"} {
		hc, bc, _ := strings.Cut(canon, "/")
		o := Options{HeaderCanon: hc, BodyCanon: bc, Headers: []string{"+From", "=To", "Subject", "Date", "Message-ID", "Cc"},
			Expire: time.Hour, Now: func() time.Time { return time.Now().Add(-time.Minute) }}
		sigs, err := Sign(keys, testHeaders, bodyHash(bc, testBody, 7), o)
		if err != nil {
			t.Fatal(err)
		}
		if len(sigs) != 2 || !strings.Contains(sigs[0], "a=rsa-sha256") || !strings.Contains(sigs[1], "a=ed25519-sha256") {
			t.Fatalf("%s: %q", canon, sigs)
		}
		for _, s := range sigs {
			if !strings.Contains(s, "c="+canon+";") || !tagRE("t").MatchString(s) || !tagRE("x").MatchString(s) {
				t.Errorf("%s: tags missing in %q", canon, s)
			}
			for _, line := range strings.Split(s, "\r\n") {
				if len(line) > 78 {
					t.Errorf("%s: line of %d: %q", canon, len(line), line)
				}
			}
		}
		for _, v := range verifyAll(t, render(sigs, testHeaders, testBody), dns) {
			if v.Err != nil {
				t.Errorf("%s %s: %v", canon, v.Domain, v.Err)
			}
		}
		// a second From prepended breaks the oversigned signature
		spoofed := append([]Header{{"From", " mallory@example.org"}}, testHeaders...)
		for _, v := range verifyAll(t, render(sigs, spoofed, testBody), dns) {
			if v.Err == nil {
				t.Errorf("%s: a prepended From still verifies", canon)
			}
		}
		for _, v := range verifyAll(t, render(sigs, testHeaders, testBody+"P.S.\r\n"), dns) {
			if v.Err == nil {
				t.Errorf("%s: a changed body still verifies", canon)
			}
		}
	}
}

func tagRE(tag string) *regexp.Regexp { return regexp.MustCompile(`(^|[;\s])` + tag + `=\d+;`) }

func TestSignTimestamps(t *testing.T) {
	keys, _ := testKeys(t)
	at := time.Unix(1_800_000_000, 0)
	sigs, err := Sign(keys[:1], testHeaders, bodyHash(canonRelaxed, "", 0), Options{Now: func() time.Time { return at }, Expire: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sigs[0], "t=1800000000;") || !strings.Contains(sigs[0], "x=1800172800;") {
		t.Errorf("%q", sigs[0])
	}
	sigs, _ = Sign(keys[:1], testHeaders, bodyHash(canonRelaxed, "", 0), Options{NoTimestamp: true})
	if tagRE("t").MatchString(sigs[0]) || tagRE("x").MatchString(sigs[0]) {
		t.Errorf("NoTimestamp: %q", sigs[0])
	}
	// the default h= is Exim's list, each name once
	if !strings.Contains(strings.NewReplacer("\r\n\t", "").Replace(sigs[0]), "h=from:sender:reply-to:subject:date:message-id:to:cc:mime-version:") {
		t.Errorf("default h=: %q", sigs[0])
	}
}
