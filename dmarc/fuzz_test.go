package dmarc

import (
	"context"
	"errors"
	"strings"
	"testing"

	msgauth "github.com/emersion/go-msgauth/dmarc"

	"github.com/tollgate/tollgate/internal/authres"
)

// Seeds live in testdata/fuzz/<Target>/ as well; run a target with e.g.
//   go test -run=- -fuzz=FuzzParseRecord ./dmarc/

// Records come from DNS: whatever a domain publishes must never panic, and
// what parses is usable as the evaluation uses it.
func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{
		"v=DMARC1; p=reject", "v=DMARC1; p=none; sp=quarantine; pct=0; aspf=s; adkim=r; rua=mailto:a@b,mailto:c@d; ri=3600; fo=0:1:d:s; rf=afrf",
		"v=DMARC1;p=quarantine;pct=101", "v=DMARC1; p=", "v=DMARC1", "v=DMARC2; p=none", "v=spf1 -all", "v=DMARC1; p=none; pct=-1",
		"v=DMARC1; p=none; ri=0", "v=DMARC1; p=none; foo", "v=DMARC1 ; p = reject ; ", "v=DMARC1; p=reject; sp=bogus", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rec, err := ParseRecord(s)
		if err != nil {
			return
		}
		switch rec.Policy {
		case "none", "quarantine", "reject":
		default:
			t.Fatalf("policy %q from %q", rec.Policy, s)
		}
		if rec.Percent != nil && (*rec.Percent < 0 || *rec.Percent > 100) {
			t.Fatalf("pct %d from %q", *rec.Percent, s)
		}
		// The whole evaluation over it, as if published for example.org.
		z := zone{"_dmarc.example.org": {s}}
		r := Evaluate(context.Background(), Input{From: []string{"a@example.org"}, LookupTXT: z.LookupTXT, Roll: func() int { return 50 }})
		if r.Status == "" || authres.FormatResult(r.AuthResult()) == "" {
			t.Fatalf("empty result for %q", s)
		}
	})
}

// ARC-Seal tags, ARC-Authentication-Results and their results come from
// the message: never a panic, and what is read is within bounds.
func FuzzARCFields(f *testing.F) {
	for _, s := range []string{
		"i=1; a=rsa-sha256; cv=none; d=fwd.example.net; s=s1; t=1700000000; b=abc",
		"i=2; mx.fwd.example.net; dmarc=pass (p=reject dis=none) header.from=example.com; spf=pass smtp.mailfrom=\"a b\"@example.com",
		" i = 1 ; mx; dkim=pass reason=\"ok\" header.d=example.com header.s=s1 (comment (nested));",
		"i=0; d=x", "i=51; d=x", "i=1; i=2; d=x", "i=1;", "i=1", "d=example.org", "i=(c)1;x; none",
		"dmarc/1=pass header.from=example.org", "spf=pass smtp.mailfrom=", "x=y policy.dmarc", "=", "(",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if i, d, err := ParseSealTags(s); err == nil && (i < 1 || i > 50 || d == "") {
			t.Fatalf("seal i=%d d=%q from %q", i, d, s)
		}
		if i, rest, err := SplitAAR(s); err == nil {
			if i < 1 || i > 50 || !strings.HasSuffix(s, rest) {
				t.Fatalf("AAR i=%d rest %q from %q", i, rest, s)
			}
		}
		if r, err := ParseResult(s); err == nil && (r.Method == "" || r.Result == "") {
			t.Fatalf("result %+v from %q", r, s)
		}
		// The override over a chain made of it.
		in := Input{
			From:          []string{"a@example.com"},
			AuthResults:   []authres.Result{{Method: "arc", Result: "pass"}},
			ARC:           []ARCField{{Name: "ARC-Seal", Value: s}, {Name: "ARC-Authentication-Results", Value: s}, {Name: "ARC-Seal", Value: "i=1; d=example.net"}, {Name: "ARC-Authentication-Results", Value: "i=1; " + s}},
			TrustedSealer: func(string) bool { return true },
			LookupTXT:     zone{"_dmarc.example.com": {"v=DMARC1; p=reject"}}.LookupTXT,
		}
		if r := Evaluate(context.Background(), in); r.Status != StatusAccept && r.Status != StatusReject {
			t.Fatalf("status %s for %q", r.Status, s)
		}
	})
}

// From values come from the message.
func FuzzFromDomain(f *testing.F) {
	for _, s := range []string{
		"Alice <alice@example.org>", "a@example.org, b@example.net", "undisclosed-recipients:;", "\"a@b\" <c@d.example>",
		"Dr. A. Smith [ops] <a@example.org>", "=?utf-8?q?=C3=A9?= <x@bücher.example>", "<>", "@", "a@[192.0.2.1]", "g: a@x.example, b@y.example;",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, status, reason := FromDomain([]string{s})
		if status == "" && (d == "" || !validDomain(d) || d != strings.ToLower(d)) {
			t.Fatalf("domain %q from %q", d, s)
		}
		if status != "" && (d != "" || reason == "") {
			t.Fatalf("status %s with domain %q reason %q", status, d, reason)
		}
	})
}

// ParseRecord parses a DMARC record as the evaluation's lookup does
// (IsDMARCRecord, then go-msgauth's parser): the fuzzed entry point.
func ParseRecord(txt string) (*msgauth.Record, error) {
	if !IsDMARCRecord(txt) {
		return nil, errors.New("dmarc: not a DMARC record")
	}
	return msgauth.Parse(txt)
}
