package dkim

import (
	"bytes"
	"context"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/tollgate/tollgate/internal/dnstest"
	"github.com/tollgate/tollgate/internal/resolver"
	"github.com/tollgate/tollgate/milter"
)

var headerKeys = []string{"From", "To", "Subject", "Date", "Message-ID"}

func TestVerifyPasses(t *testing.T) {
	srv := dnstest.Start(t)
	rsa2048, ed := rsaKey(t, 2048), ed25519Key(t)
	publish(srv, "rsa._domainkey.example.org", rsa2048.txt)
	publish(srv, "ed._domainkey.example.org", ed.txt)
	m, metrics := testModule(t, srv, ModuleOptions{})
	for _, tc := range []struct {
		name      string
		o         msgdkim.SignOptions
		lf        string
		chunk     int
		want      *regexp.Regexp
		signers   string
		selector  string
		identical bool
	}{
		{"rsa relaxed", msgdkim.SignOptions{Domain: "example.org", Selector: "rsa", Signer: rsa2048.signer, HeaderKeys: headerKeys,
			HeaderCanonicalization: "relaxed", BodyCanonicalization: "relaxed"}, "\r\n", 4096,
			regexp.MustCompile(`^dkim=pass header\.d=example\.org header\.s=rsa header\.b="?[A-Za-z0-9+/]{8}"?$`), "example.org", "rsa", false},
		{"rsa simple, folds with bare LF, one-byte chunks", msgdkim.SignOptions{Domain: "example.org", Selector: "rsa", Signer: rsa2048.signer,
			HeaderKeys: headerKeys, Identifier: "alice@mail.example.org"}, "\n", 1,
			regexp.MustCompile(`^dkim=pass header\.d=example\.org header\.s=rsa header\.b="?[A-Za-z0-9+/]{8}"? header\.i=alice@mail\.example\.org$`),
			"example.org:alice@mail.example.org", "rsa", false},
		{"ed25519", msgdkim.SignOptions{Domain: "example.org", Selector: "ed", Signer: ed.signer, HeaderKeys: headerKeys,
			HeaderCanonicalization: "relaxed", BodyCanonicalization: "simple"}, "\r\n", 7,
			regexp.MustCompile(`^dkim=pass header\.d=example\.org header\.s=ed header\.b="?[A-Za-z0-9+/]{8}"?$`), "example.org", "ed", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			signed := sign(t, plainMessage, tc.o)
			hs, body := splitMessage(t, signed, tc.lf)
			tx := run(t, m, hs, body, tc.chunk)
			got := dkimResults(tx)
			if len(got) != 1 || !tc.want.MatchString(got[0]) {
				t.Fatalf("results %q, want %v", got, tc.want)
			}
			f := FactsOf(tx)
			if f.Status != StatusPass || f.Reason != "" || strings.Join(f.Signers, ":") != tc.signers || f.Domain != "example.org" || f.Selector != tc.selector {
				t.Errorf("facts %+v", f)
			}
			// header.b is the start of the signature's b=, for DMARC reports
			// and for telling signatures apart.
			b := signatureTags(hs[0].Value).B
			if f.Signatures[0].B != b[:8] {
				t.Errorf("header.b %q, b= %q", f.Signatures[0].B, b)
			}
			if !strings.HasPrefix(tx.AuthResultsValue(), "mx.example.net;\r\n\tdkim=pass header.d=example.org header.s="+tc.selector) {
				t.Errorf("Authentication-Results %q", tx.AuthResultsValue())
			}
		})
	}
	if got := testutil.ToFloat64(metrics.Verify.WithLabelValues("pass")); got != 3 {
		t.Errorf("pass counted %v times", got)
	}
}

func TestVerifyFailures(t *testing.T) {
	srv := dnstest.Start(t)
	key := rsaKey(t, 2048)
	publish(srv, "s1._domainkey.example.org", key.txt)
	m, metrics := testModule(t, srv, ModuleOptions{})
	signed := sign(t, plainMessage, msgdkim.SignOptions{Domain: "example.org", Selector: "s1", Signer: key.signer, HeaderKeys: headerKeys,
		HeaderCanonicalization: "relaxed", BodyCanonicalization: "relaxed"})
	for _, tc := range []struct {
		name           string
		edit           func(string) string
		result, reason string
	}{
		{"body changed", func(s string) string { return strings.Replace(s, "Hello Bob", "Hello Eve", 1) }, "fail", "bodyhash_mismatch"},
		{"signed header changed", func(s string) string { return strings.Replace(s, "Subject: a signed", "Subject: a forged", 1) }, "fail", "signature_incorrect"},
		{"body appended", func(s string) string { return s + "P.S. click here\r\n" }, "fail", "bodyhash_mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs, body := splitMessage(t, tc.edit(signed), "\r\n")
			tx := run(t, m, hs, body, 512)
			f := FactsOf(tx)
			if f.Status != StatusFail || f.Reason != tc.reason || len(f.Signers) != 0 || f.Domain != "" {
				t.Errorf("facts %+v", f)
			}
			got := dkimResults(tx)
			if len(got) != 1 || !strings.HasPrefix(got[0], "dkim=fail reason=") || !strings.Contains(got[0], " header.d=example.org header.s=s1 header.b=") {
				t.Errorf("results %q", got)
			}
		})
	}
	if got := testutil.ToFloat64(metrics.Verify.WithLabelValues("fail")); got != 3 {
		t.Errorf("fail counted %v times", got)
	}
}

func TestUnsignedMessageStartsNothing(t *testing.T) {
	noLeaks(t)
	metrics := NewMetrics(prometheus.NewRegistry())
	m := NewModule(ModuleOptions{Resolver: keyTable{}, Metrics: metrics})
	hs, body := splitMessage(t, plainMessage, "\r\n")
	tx := &milter.Txn{Session: &milter.Session{}}
	ctx := context.Background()
	for _, h := range hs {
		m.Header(ctx, tx, h)
	}
	feed(ctx, m, tx, body)
	if st := m.state(tx); st.started || tx.BodyHashes().Wanted() || st.cancel != nil {
		t.Fatal("a message without a signature started the verifier")
	}
	finish(ctx, m, tx)
	milter.WriteAuthResults(tx, milter.AuthResultsConfig{AuthServID: "mx.example.net", Add: true})
	if got := tx.AuthResultsValue(); got != "mx.example.net;\r\n\tdkim=none" {
		t.Errorf("Authentication-Results %q", got)
	}
	if f := FactsOf(tx); f.Status != StatusNone || !f.Checked || len(f.Signatures) != 0 {
		t.Errorf("facts %+v", f)
	}
	if got := testutil.ToFloat64(metrics.Verify.WithLabelValues("none")); got != 1 {
		t.Errorf("none counted %v times", got)
	}
}

func TestKeyTrouble(t *testing.T) {
	srv := dnstest.Start(t)
	key1024, key2048 := rsaKey(t, 1024), rsaKey(t, 2048)
	publish(srv, "ok._domainkey.example.org", key2048.txt)
	publish(srv, "short._domainkey.example.org", key1024.txt)
	publish(srv, "revoked._domainkey.example.org", "v=DKIM1; k=rsa; p=")
	publish(srv, "garbled._domainkey.example.org", "v=DKIM1; k=rsa; p=bm90IGEga2V5")
	publish(srv, "nokey._domainkey.example.org", "v=DKIM1; k=rsa")
	srv.Set("servfail._domainkey.example.org", &dnstest.Zone{Rcode: dns.RcodeServerFailure})
	srv.Set("silent._domainkey.example.org", &dnstest.Zone{Silent: true})
	m, metrics := testModule(t, srv, ModuleOptions{MinRSABits: 2048, Timeout: 300 * time.Millisecond})
	for _, tc := range []struct {
		selector, result, status, reason string
	}{
		{"ok", "pass", StatusPass, ""},
		{"missing", "permerror", StatusInvalid, "pubkey_unavailable"},
		{"revoked", "permerror", StatusInvalid, "pubkey_unavailable"},
		{"garbled", "permerror", StatusInvalid, "pubkey_der_syntax"},
		{"nokey", "permerror", StatusInvalid, "pubkey_dns_syntax"},
		{"short", "permerror", StatusInvalid, "pubkey_too_short"},
		{"servfail", "temperror", StatusInvalid, "pubkey_unavailable"},
		{"silent", "temperror", StatusInvalid, "pubkey_unavailable"},
	} {
		t.Run(tc.selector, func(t *testing.T) {
			signer := key2048.signer
			if tc.selector == "short" {
				signer = key1024.signer
			}
			signed := sign(t, plainMessage, msgdkim.SignOptions{Domain: "example.org", Selector: tc.selector, Signer: signer, HeaderKeys: headerKeys})
			hs, body := splitMessage(t, signed, "\r\n")
			start := time.Now()
			tx := run(t, m, hs, body, 64)
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("took %v: the lookup deadline did not hold", took)
			}
			f := FactsOf(tx)
			if f.Status != tc.status || f.Reason != tc.reason {
				t.Errorf("status %q reason %q (%+v)", f.Status, f.Reason, f.Signatures)
			}
			got := dkimResults(tx)
			if len(got) != 1 || !strings.HasPrefix(got[0], "dkim="+tc.result+" ") {
				t.Errorf("results %q", got)
			}
		})
	}
	for result, n := range map[string]float64{"pass": 1, "permerror": 5, "temperror": 2} {
		if got := testutil.ToFloat64(metrics.Verify.WithLabelValues(result)); got != n {
			t.Errorf("%s counted %v times, want %v", result, got, n)
		}
	}
}

// signTimes signs msg n times with the selectors given, the last on top.
func signTimes(t *testing.T, msg string, selectors []string, key testKey) string {
	for _, s := range selectors {
		msg = sign(t, msg, msgdkim.SignOptions{Domain: s + ".example", Selector: "s1", Signer: key.signer, HeaderKeys: headerKeys})
	}
	return msg
}

func TestSeveralSignatures(t *testing.T) {
	srv := dnstest.Start(t)
	key := rsaKey(t, 2048)
	for _, d := range []string{"a", "b", "c", "d"} {
		publish(srv, "s1._domainkey."+d+".example", key.txt)
	}
	t.Run("best status and signers", func(t *testing.T) {
		m, _ := testModule(t, srv, ModuleOptions{})
		// "bad" has no key; the body changes after "a" signed, before "b"
		// and "c" did: a fails, bad is invalid, b and c pass.
		msg := signTimes(t, plainMessage, []string{"a"}, key)
		msg = strings.Replace(msg, "Hello Bob", "Hello Bobby", 1)
		msg = signTimes(t, msg, []string{"bad", "b", "c"}, key)
		hs, body := splitMessage(t, msg, "\r\n")
		tx := run(t, m, hs, body, 1000)
		f := FactsOf(tx)
		if f.Status != StatusPass || f.Domain != "c.example" || strings.Join(f.Signers, ":") != "c.example:b.example" {
			t.Errorf("facts %+v", f)
		}
		var results []string
		for _, r := range tx.AuthResults() {
			results = append(results, r.Result+" "+r.Props[0].Value)
		}
		if got := strings.Join(results, ", "); got != "pass c.example, pass b.example, permerror bad.example, fail a.example" {
			t.Errorf("results in header order: %s", got)
		}
	})
	t.Run("over max_signatures", func(t *testing.T) {
		m, metrics := testModule(t, srv, ModuleOptions{MaxSignatures: 2})
		msg := signTimes(t, plainMessage, []string{"a", "b", "c", "d"}, key)
		hs, body := splitMessage(t, msg, "\r\n")
		tx := run(t, m, hs, body, 1000)
		got := dkimResults(tx)
		if len(got) != 3 || !strings.HasPrefix(got[0], "dkim=pass header.d=d.example") || !strings.HasPrefix(got[1], "dkim=pass header.d=c.example") ||
			got[2] != `dkim=policy reason="2 more signatures not verified (max_signatures 2)"` {
			t.Errorf("results %q", got)
		}
		if f := FactsOf(tx); f.Status != StatusPass || strings.Join(f.Signers, ":") != "d.example:c.example" || len(f.Signatures) != 2 || f.Skipped != 2 {
			t.Errorf("facts %+v", f)
		}
		if n := testutil.ToFloat64(metrics.Verify.WithLabelValues("policy")); n != 2 {
			t.Errorf("policy counted %v", n)
		}
	})
	t.Run("only failures", func(t *testing.T) {
		m, _ := testModule(t, srv, ModuleOptions{})
		msg := signTimes(t, plainMessage, []string{"a", "nowhere"}, key)
		hs, body := splitMessage(t, strings.Replace(msg, "Hello Bob", "Hello Eve", 1), "\r\n")
		f := FactsOf(run(t, m, hs, body, 1000))
		if f.Status != StatusFail || f.Reason != "bodyhash_mismatch" || len(f.Signers) != 0 {
			t.Errorf("facts %+v", f)
		}
	})
}

func TestMalformedSignatures(t *testing.T) {
	srv := dnstest.Start(t)
	key := rsaKey(t, 2048)
	publish(srv, "s1._domainkey.example.org", key.txt)
	m, _ := testModule(t, srv, ModuleOptions{})
	good := sign(t, plainMessage, msgdkim.SignOptions{Domain: "example.org", Selector: "s1", Signer: key.signer, HeaderKeys: headerKeys})
	for _, tc := range []struct {
		name, sig, result, reason string
	}{
		{"not a tag list", "garbage", "permerror", "signature_syntax"},
		{"no b=", "v=1; a=rsa-sha256; d=example.org; s=s1; h=from; bh=AAAA", "permerror", "signature_syntax"},
		{"sha1", "v=1; a=rsa-sha1; d=example.org; s=s1; h=from; bh=AAAA; b=AAAA", "permerror", "signature_syntax"},
		{"From not signed", "v=1; a=rsa-sha256; d=example.org; s=s1; h=subject; bh=AAAA; b=AAAA", "permerror", "signature_syntax"},
		{"expired", "v=1; a=rsa-sha256; d=example.org; s=s1; h=from; bh=AAAA; b=AAAA; x=1000", "permerror", "signature_expired"},
		{"duplicate tag", "v=1; d=example.org; d=example.net", "permerror", "signature_syntax"},
		{"body length", "v=1; a=rsa-sha256; d=example.org; s=s1; h=from; bh=AAAA; b=AAAA; l=10", "policy", "body_length"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The broken signature on top of a good one: the good one
			// still passes and decides the status.
			hs, body := splitMessage(t, "DKIM-Signature: "+tc.sig+"\r\n"+good, "\r\n")
			tx := run(t, m, hs, body, 100)
			f := FactsOf(tx)
			if len(f.Signatures) != 2 || f.Signatures[0].Result != tc.result || f.Signatures[0].Reason != tc.reason || f.Status != StatusPass {
				t.Errorf("facts %+v", f)
			}
		})
	}
}

func TestAbortedMessageReleasesVerifier(t *testing.T) {
	noLeaks(t)
	key := rsaKey(t, 2048)
	keys := keyTable{}
	for _, d := range []string{"a", "b", "c"} {
		keys["s1._domainkey."+d+".example"] = key.txt
	}
	m := NewModule(ModuleOptions{Resolver: keys})
	for _, n := range []int{1, 3} { // one verifier, or go-msgauth's parallel ones
		msg := signTimes(t, plainMessage, []string{"a", "b", "c"}[:n], key)
		hs, body := splitMessage(t, msg, "\r\n")
		tx := &milter.Txn{Session: &milter.Session{}}
		ctx := context.Background()
		for _, h := range hs {
			m.Header(ctx, tx, h)
		}
		feed(ctx, m, tx, body[:10])
		if !m.state(tx).started {
			t.Fatal("not started")
		}
		m.TxnEnd(tx) // the client went away before the end of the message
	}
}

func TestSlowKeyLookupIsBounded(t *testing.T) {
	srv := dnstest.Start(t)
	key := rsaKey(t, 2048)
	srv.Set("s1._domainkey.example.org", &dnstest.Zone{Silent: true})
	// The resolver would wait 5s for the server; dkim.timeout is shorter.
	m := NewModule(ModuleOptions{Timeout: 300 * time.Millisecond,
		Resolver: resolver.New(resolver.Options{Server: srv.Addr, Timeout: 5 * time.Second, CacheSize: -1})})
	var logged bytes.Buffer
	m.o.Log = slog.New(slog.NewTextHandler(&logged, nil))
	signed := sign(t, plainMessage, msgdkim.SignOptions{Domain: "example.org", Selector: "s1", Signer: key.signer})
	hs, body := splitMessage(t, signed, "\r\n")
	tx := &milter.Txn{Session: &milter.Session{}}
	for _, h := range hs {
		m.Header(context.Background(), tx, h)
	}
	// The lookup starts at the end of the header section and the end of
	// the message waits for it, as long as dkim.timeout at most.
	ctx := context.Background()
	start := time.Now()
	feed(ctx, m, tx, body)
	finish(ctx, m, tx)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %v", took)
	}
	if f := FactsOf(tx); f.Status != StatusInvalid || f.Signatures[0].Result != "temperror" {
		t.Errorf("facts %+v", f)
	}
	if !strings.Contains(logged.String(), `level=WARN msg="DKIM key lookup failed; the signature is temperror"`) ||
		!strings.Contains(logged.String(), "kind=pubkey_unavailable") {
		t.Errorf("log: %s", logged.String())
	}
	if tx.Tags[0] != [2]string{"DKIM", "invalid"} {
		t.Errorf("tags %v", tx.Tags)
	}
}

// noLeaks checks, after every other cleanup of the test (the DNS server's
// included), that no goroutine the test started is left.
func noLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// TestSignaturesMatchedInGoMsgauthsOrder: a header value with a line break
// not followed by whitespace hides a second field from the milter's view,
// which go-msgauth reads as a field of its own: results are matched to
// signatures as go-msgauth counts them, never shifted onto another one.
func TestSignaturesMatchedInGoMsgauthsOrder(t *testing.T) {
	key := rsaKey(t, 2048)
	m := NewModule(ModuleOptions{Resolver: keyTable{"s1._domainkey.example.org": key.txt}})
	signed := sign(t, plainMessage, signOptions(key))
	hs, body := splitMessage(t, signed, "\r\n")
	hidden := milter.Header{Name: "X-Note", Value: "see below\nDKIM-Signature: v=1; a=rsa-sha256; d=evil.example; s=x; h=from; bh=AAAA; b=ZXZpbA=="}
	hs = append([]milter.Header{hidden}, hs...)
	tx := run(t, m, hs, body, 100)
	f := FactsOf(tx)
	if len(f.Signatures) != 2 || f.Signatures[0].Domain != "evil.example" || f.Signatures[0].Result != "permerror" ||
		f.Signatures[1].Domain != "example.org" || f.Signatures[1].Result != "pass" {
		t.Errorf("signatures %+v", f.Signatures)
	}
}

// TestSignatureGoMsgauthDoesNotSee: a DKIM-Signature after a value with an
// empty line in it, where go-msgauth's header section has ended, gives
// dkim=none, and the verifier started for it is done with by the end of
// message.
func TestSignatureGoMsgauthDoesNotSee(t *testing.T) {
	noLeaks(t)
	m := NewModule(ModuleOptions{Resolver: keyTable{}})
	hs := []milter.Header{{Name: "Subject", Value: "hello\n\nthere"}, {Name: "DKIM-Signature", Value: "v=1; d=example.org"}}
	tx := &milter.Txn{Session: &milter.Session{}}
	ctx := context.Background()
	for _, h := range hs {
		m.Header(ctx, tx, h)
	}
	feed(ctx, m, tx, []byte("body\r\n"))
	finish(ctx, m, tx)
	if st := m.state(tx); !st.started || st.got == nil {
		t.Errorf("verifier started %v, answered %v", st.started, st.got != nil)
	}
	if got := dkimResults(tx); len(got) != 1 || got[0] != "dkim=none" {
		t.Errorf("results %q", got)
	}
}
