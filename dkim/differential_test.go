package dkim

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/tollgate/tollgate/milter"
)

// fixedKey reads a test signing key committed under testdata/keys, so that
// the fuzz seed corpus holds signatures that verify in every run.
func fixedKey(t testing.TB, file string) testKey {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "keys", file))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(data)
	if blk == nil {
		t.Fatalf("%s: no PEM", file)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	signer := k.(crypto.Signer)
	der, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	kind := "rsa"
	if strings.HasPrefix(file, "ed25519") {
		kind = "ed25519"
		der = der[len(der)-32:] // RFC 8463 §4.2: the bare 32-byte key
	}
	return testKey{signer, "v=DKIM1; k=" + kind + "; p=" + base64.StdEncoding.EncodeToString(der)}
}

// oracleKeys are the key records both verifiers look up: the committed
// keys under several selectors, a revoked one, garbage; anything else is
// NXDOMAIN.
func oracleKeys(t testing.TB) keyTable {
	rsa, ed := fixedKey(t, "rsa2048.pem"), fixedKey(t, "ed25519.pem")
	return keyTable{
		"rsa._domainkey.example.org":      rsa.txt,
		"ed._domainkey.example.org":       ed.txt,
		"rsa._domainkey.sub.example.org":  rsa.txt,
		"revoked._domainkey.example.org":  "v=DKIM1; k=rsa; p=",
		"garbled._domainkey.example.org":  "v=DKIM1; k=rsa; p=bm90IGEga2V5",
		"sha1only._domainkey.example.org": "v=DKIM1; k=rsa; h=sha1; " + rsa.txt[len("v=DKIM1; k=rsa; "):],
		"wrongkind._domainkey.example.org": "v=DKIM1; k=ed25519; " +
			ed.txt[len("v=DKIM1; k=ed25519; "):],
	}
}

// verdict is one signature's result as the A-R and the policy see it.
type oracleVerdict struct{ Result, Reason, Detail string }

// goMsgauthVerdicts verifies raw with go-msgauth v0.7.0, the verifier
// dkim used before its own, and maps its answers the way the module did
// then (classifyGoMsgauth is that classify, kept here as the oracle's).
func goMsgauthVerdicts(t testing.TB, raw string, keys keyTable, minRSABits int) []oracleVerdict {
	lookup := func(domain string) ([]string, error) {
		txts, err := keys.LookupTXT(context.Background(), domain)
		if err != nil {
			return nil, err
		}
		if minRSABits > DefaultMinRSABits && len(txts) == 1 {
			if bits := rsaKeyBits(txts[0]); bits > 0 && bits < minRSABits {
				return nil, &net.DNSError{Err: fmt.Sprintf("%v: %d bits, min_rsa_bits is %d", errKeyTooShort, bits, minRSABits), Name: domain}
			}
		}
		return txts, nil
	}
	vs, err := msgdkim.VerifyWithOptions(strings.NewReader(raw), &msgdkim.VerifyOptions{LookupTXT: lookup, MaxVerifications: DefaultMaxSignatures})
	if err != nil && !errors.Is(err, msgdkim.ErrTooManySignatures) {
		t.Fatalf("go-msgauth: %v", err)
	}
	out := make([]oracleVerdict, len(vs))
	for i, v := range vs {
		out[i] = classifyGoMsgauth(v.Err)
	}
	return out
}

func classifyGoMsgauth(err error) oracleVerdict {
	if err == nil {
		return oracleVerdict{"pass", "", ""}
	}
	kind := sigFail
	switch {
	case msgdkim.IsTempFail(err):
		kind = tempFail
	case msgdkim.IsPermFail(err):
		kind = permFail
	}
	r, _, reason, detail := classify(&sigError{kind, strings.TrimPrefix(err.Error(), "dkim: ")})
	return oracleVerdict{r, reason, detail}
}

// moduleVerdicts verifies raw through the module's hooks, the body in
// chunks of the given size.
func moduleVerdicts(t testing.TB, m *Module, raw string, chunk int) []oracleVerdict {
	hs, body := splitMessage(t, raw, "\r\n")
	tx := &milter.Txn{Session: &milter.Session{}}
	ctx := context.Background()
	for _, h := range hs {
		m.Header(ctx, tx, h)
	}
	for b := body; len(b) > 0; {
		n := min(chunk, len(b))
		feed(ctx, m, tx, b[:n])
		b = b[n:]
	}
	finish(ctx, m, tx)
	m.TxnEnd(tx)
	var out []oracleVerdict
	for _, s := range FactsOf(tx).Signatures {
		out = append(out, oracleVerdict{s.Result, s.Reason, s.Detail})
	}
	return out
}

// differentialCorpus is the dkim testdata messages signed every way the
// verifier must judge, each with the verdict expected of the top
// signature (both verifiers must give it).
func differentialCorpus(t testing.TB) []struct{ name, raw, want string } {
	rsa, ed := fixedKey(t, "rsa2048.pem"), fixedKey(t, "ed25519.pem")
	files, _ := filepath.Glob("testdata/messages/*.eml")
	if len(files) < 3 {
		t.Fatalf("messages: %v", files)
	}
	hk := []string{"From", "To", "Subject", "Date", "Message-ID"}
	var out []struct{ name, raw, want string }
	add := func(name, raw, want string) { out = append(out, struct{ name, raw, want string }{name, raw, want}) }
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		msg := strings.ReplaceAll(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n", "\r\n")
		base := filepath.Base(file)
		o := func(sel string, k testKey, hc, bc msgdkim.Canonicalization) msgdkim.SignOptions {
			return msgdkim.SignOptions{Domain: "example.org", Selector: sel, Signer: k.signer, HeaderKeys: hk,
				HeaderCanonicalization: hc, BodyCanonicalization: bc}
		}
		for _, c := range [][2]msgdkim.Canonicalization{{"simple", "simple"}, {"relaxed", "relaxed"}, {"relaxed", "simple"}, {"simple", "relaxed"}} {
			good := sign(t, msg, o("rsa", rsa, c[0], c[1]))
			name := base + "/" + string(c[0]) + "-" + string(c[1])
			add(name+"/good", good, "pass")
			head, body, _ := strings.Cut(good, "\r\n\r\n")
			add(name+"/bad bh", head+"\r\n\r\n"+strings.Replace(body, "e", "E", 1), "fail bodyhash_mismatch")
			add(name+"/bad b", strings.Replace(good, "\r\nSubject: ", "\r\nSubject: Re: ", 1), "fail signature_incorrect")
			add(name+"/body appended", good+"more\r\n", "fail bodyhash_mismatch")
			add(name+"/trailing empty lines", good+"\r\n\r\n", "pass")
		}
		add(base+"/ed25519", sign(t, msg, o("ed", ed, "relaxed", "relaxed")), "pass")
		add(base+"/ed25519 bad b", strings.Replace(sign(t, msg, o("ed", ed, "relaxed", "relaxed")), "\r\nTo: ", "\r\nTo: x", 1), "fail signature_incorrect")
		good := sign(t, msg, o("rsa", rsa, "relaxed", "relaxed"))
		// l= shorter and longer than the body: go-msgauth refuses l= as
		// such, policy whatever the hash.
		add(base+"/l= shorter", strings.Replace(good, "v=1;", "v=1; l=10;", 1), "policy body_length")
		add(base+"/l= longer", strings.Replace(good, "v=1;", "v=1; l=100000;", 1), "policy body_length")
		exp := o("rsa", rsa, "relaxed", "relaxed")
		exp.Expiration = time.Unix(1000000000, 0)
		add(base+"/expired", sign(t, msg, exp), "permerror signature_expired")
		add(base+"/missing key", sign(t, msg, o("nothere", rsa, "relaxed", "relaxed")), "permerror pubkey_unavailable")
		add(base+"/revoked key", sign(t, msg, o("revoked", rsa, "relaxed", "relaxed")), "permerror pubkey_unavailable")
		add(base+"/garbled key", sign(t, msg, o("garbled", rsa, "relaxed", "relaxed")), "permerror pubkey_der_syntax")
		add(base+"/key h=sha1 only", sign(t, msg, o("sha1only", rsa, "relaxed", "relaxed")), "permerror signature_syntax")
		add(base+"/key of the other kind", sign(t, msg, o("wrongkind", rsa, "relaxed", "relaxed")), "permerror signature_syntax")
		add(base+"/h= without From", strings.Replace(good, "h=From:", "h=", 1), "permerror signature_syntax")
		inSub := o("rsa", rsa, "relaxed", "relaxed")
		inSub.Identifier = "alice@mail.example.org"
		add(base+"/i= in a subdomain of d=", sign(t, msg, inSub), "pass")
		outside := o("rsa", rsa, "relaxed", "relaxed")
		outside.Identifier = "alice@example.net"
		add(base+"/i= outside d=", sign(t, msg, outside), "permerror signature_syntax")
		sub := o("rsa", rsa, "relaxed", "relaxed")
		sub.Domain = "sub.example.org"
		add(base+"/second signature on top", sign(t, good, sub), "pass")
		add(base+"/rsa-sha1", strings.Replace(good, "a=rsa-sha256", "a=rsa-sha1", 1), "permerror signature_syntax")
		add(base+"/c= unknown", strings.Replace(good, "c=relaxed/relaxed", "c=relaxed/fancy", 1), "permerror signature_syntax")
		add(base+"/q= unknown", strings.Replace(good, "v=1;", "v=1; q=dns/other;", 1), "permerror signature_syntax")
		add(base+"/v=2", strings.Replace(good, "v=1;", "v=2;", 1), "permerror signature_syntax")
	}
	return out
}

// TestDifferentialAgainstGoMsgauth: on every message of the corpus, the
// module's verifier and go-msgauth give each signature the same result,
// reason and words, whatever the chunking of the body.
func TestDifferentialAgainstGoMsgauth(t *testing.T) {
	keys := oracleKeys(t)
	m := NewModule(ModuleOptions{Resolver: keys})
	for _, c := range differentialCorpus(t) {
		t.Run(c.name, func(t *testing.T) {
			want := goMsgauthVerdicts(t, c.raw, keys, DefaultMinRSABits)
			if len(want) == 0 {
				t.Fatal("go-msgauth found no signature")
			}
			if got := strings.TrimSpace(want[0].Result + " " + want[0].Reason); got != c.want {
				t.Fatalf("go-msgauth: %s (%s), the corpus expects %s", got, want[0].Detail, c.want)
			}
			for _, chunk := range []int{1, 7, 4096} {
				got := moduleVerdicts(t, m, c.raw, chunk)
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("chunks of %d: module %v, go-msgauth %v", chunk, got, want)
				}
			}
		})
	}
}

// TestDifferentialMinRSABits: min_rsa_bits above 1024 refuses a key both
// ways alike (go-msgauth given the lookup the module used to give it).
func TestDifferentialMinRSABits(t *testing.T) {
	keys := oracleKeys(t)
	m := NewModule(ModuleOptions{Resolver: keys, MinRSABits: 4096})
	raw := sign(t, plainMessage, msgdkim.SignOptions{Domain: "example.org", Selector: "rsa", Signer: fixedKey(t, "rsa2048.pem").signer, HeaderKeys: headerKeys})
	want := goMsgauthVerdicts(t, raw, keys, 4096)
	got := moduleVerdicts(t, m, raw, 100)
	if fmt.Sprint(got) != fmt.Sprint(want) || want[0].Reason != "pubkey_too_short" {
		t.Errorf("module %v, go-msgauth %v", got, want)
	}
}

// crlfClean reports whether every CR and LF of s is part of a CRLF: where
// the two verifiers are meant to agree. (On a bare CR or LF they differ on
// purpose: go-msgauth makes a bare LF a line end, dkimsig takes both as
// ordinary bytes, as dkimpy and Mail::DKIM do.)
func crlfClean(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\r':
			if i+1 >= len(s) || s[i+1] != '\n' {
				return false
			}
			i++
		case '\n':
			return false
		}
	}
	return true
}

// FuzzDifferential feeds any message to the module and to go-msgauth: no
// panic, one verdict per signature, and on messages both read alike (CRLF
// line ends only, one empty line ending the header section) a signature
// passes with one exactly when it passes with the other.
func FuzzDifferential(f *testing.F) {
	for _, c := range differentialCorpus(f) {
		f.Add(c.raw, uint8(63))
	}
	keys := oracleKeys(f)
	m := NewModule(ModuleOptions{Resolver: keys})
	f.Fuzz(func(t *testing.T, raw string, chunk uint8) {
		if len(raw) > 1<<16 || !crlfClean(raw) {
			return
		}
		head, _, ok := strings.Cut(raw, "\r\n\r\n")
		if !ok || strings.HasPrefix(raw, "\r\n") || strings.HasPrefix(raw, " ") || strings.HasPrefix(raw, "\t") {
			return // no header section as splitMessage reads one
		}
		for line := range strings.SplitSeq(head, "\r\n") {
			if !strings.Contains(line, ":") && !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "\t") {
				return // a line that is no field: the milter never hands one over
			}
		}
		want := goMsgauthVerdicts(t, raw, keys, DefaultMinRSABits)
		got := moduleVerdicts(t, m, raw, int(chunk)+1)
		if len(got) != len(want) {
			t.Fatalf("module %d verdicts %v, go-msgauth %d %v", len(got), got, len(want), want)
		}
		for i := range got {
			if (got[i].Result == "pass") != (want[i].Result == "pass") {
				t.Fatalf("signature %d: module %v, go-msgauth %v", i, got[i], want[i])
			}
		}
	})
}
