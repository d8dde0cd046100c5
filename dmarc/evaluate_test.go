package dmarc

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/authres"
)

// zone serves TXT records as resolver.Resolver does: a missing name is
// NXDOMAIN (IsNotFound), a name mapped to nil a SERVFAIL (temporary).
type zone map[string][]string

func (z zone) LookupTXT(_ context.Context, name string) ([]string, error) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	v, ok := z[name]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	if v == nil {
		return nil, &net.DNSError{Err: "server misbehaving", Name: name, IsTemporary: true}
	}
	return v, nil
}

func spfPass(mailfrom string) authres.Result {
	return authres.Result{Method: "spf", Result: "pass", Props: []authres.Prop{{Type: "smtp", Property: "mailfrom", Value: mailfrom}}}
}

func dkimResult(result, d string) authres.Result {
	return authres.Result{Method: "dkim", Result: result, Props: []authres.Prop{{Type: "header", Property: "d", Value: d}, {Type: "header", Property: "s", Value: "s1"}}}
}

var testZone = zone{
	"_dmarc.reject.example":        {"v=DMARC1; p=reject"},
	"_dmarc.quarantine.example":    {"v=DMARC1; p=quarantine; rua=mailto:d@quarantine.example"},
	"_dmarc.none.example":          {"v=spf1 -all", "v=DMARC1; p=none"},
	"_dmarc.sp.example":            {"v=DMARC1; p=reject; sp=none"},
	"_dmarc.own.sp.example":        {"v=DMARC1; p=quarantine"},
	"_dmarc.strict.example":        {"v=DMARC1; p=reject; aspf=s; adkim=s"},
	"_dmarc.pct0.example":          {"v=DMARC1; p=reject; pct=0"},
	"_dmarc.pct50.example":         {"v=DMARC1; p=quarantine; pct=50"},
	"_dmarc.bad.example":           {"v=DMARC1; p=maybe"},
	"_dmarc.two.example":           {"v=DMARC1; p=none", "v=DMARC1; p=reject"},
	"_dmarc.servfail.example":      nil,
	"_dmarc.sub.servfail2.example": {"v=DMARC1; p=none"},
	"_dmarc.other.example":         {"not dmarc"},
	"_dmarc.xn--bcher-kva.example": {"v=DMARC1; p=reject"},
}

func TestEvaluate(t *testing.T) {
	roll := func(n int) func() int { return func() int { return n } }
	tests := []struct {
		name       string
		from       []string
		results    []authres.Result
		roll       func() int
		status     Status
		used       string
		policy     string
		authResult string
	}{
		{name: "aligned spf", from: []string{"Alice <alice@reject.example>"}, results: []authres.Result{spfPass("bounce@reject.example")},
			status: StatusAccept, used: "reject.example", policy: "reject",
			authResult: "dmarc=pass (p=reject dis=none) header.from=reject.example"},
		{name: "relaxed spf from a subdomain", from: []string{"alice@reject.example"}, results: []authres.Result{spfPass("b@mail.reject.example")},
			status: StatusAccept},
		{name: "aligned dkim among others", from: []string{"alice@reject.example"},
			results: []authres.Result{spfPass("b@list.example"), dkimResult("pass", "list.example"), dkimResult("pass", "Reject.Example")},
			status:  StatusAccept},
		{name: "dkim fail does not align", from: []string{"alice@reject.example"}, results: []authres.Result{dkimResult("fail", "reject.example")},
			status: StatusReject, policy: "reject",
			authResult: "dmarc=fail (p=reject dis=reject) header.from=reject.example policy.dmarc=reject"},
		{name: "spf softfail does not align", from: []string{"alice@reject.example"},
			results: []authres.Result{{Method: "spf", Result: "softfail", Props: []authres.Prop{{Type: "smtp", Property: "mailfrom", Value: "a@reject.example"}}}},
			status:  StatusReject},
		{name: "unaligned", from: []string{"alice@quarantine.example"}, results: []authres.Result{spfPass("b@other.example"), dkimResult("pass", "other.example")},
			status: StatusQuarantine, policy: "quarantine"},
		{name: "p=none", from: []string{"alice@none.example"}, status: StatusNone, policy: "none",
			authResult: "dmarc=fail (p=none dis=none) header.from=none.example policy.dmarc=none"},
		{name: "sp for a subdomain without a record", from: []string{"alice@mail.sp.example"}, status: StatusNone, used: "sp.example", policy: "none",
			authResult: "dmarc=fail (p=reject sp=none dis=none) header.from=mail.sp.example policy.dmarc=none"},
		{name: "p for the organizational domain itself", from: []string{"alice@sp.example"}, status: StatusReject, used: "sp.example", policy: "reject"},
		{name: "a subdomain's own record", from: []string{"alice@own.sp.example"}, status: StatusQuarantine, used: "own.sp.example", policy: "quarantine"},
		{name: "p when sp is absent", from: []string{"alice@deep.mail.reject.example"}, status: StatusReject, used: "reject.example", policy: "reject"},
		{name: "strict spf", from: []string{"alice@strict.example"}, results: []authres.Result{spfPass("b@mail.strict.example"), dkimResult("pass", "mail.strict.example")},
			status: StatusReject},
		{name: "strict exact", from: []string{"alice@strict.example"}, results: []authres.Result{spfPass("b@strict.example")}, status: StatusAccept},
		{name: "null sender: the helo identity", from: []string{"alice@reject.example"},
			results: []authres.Result{{Method: "spf", Result: "pass", Props: []authres.Prop{{Type: "smtp", Property: "helo", Value: "mx.reject.example"}}}},
			status:  StatusAccept},
		{name: "pct=0 reject becomes quarantine", from: []string{"alice@pct0.example"}, roll: roll(0), status: StatusQuarantine, policy: "reject",
			authResult: "dmarc=fail (p=reject pct=0 dis=quarantine) header.from=pct0.example policy.dmarc=quarantine"},
		{name: "pct=50 sampled in", from: []string{"alice@pct50.example"}, roll: roll(49), status: StatusQuarantine},
		{name: "pct=50 sampled out", from: []string{"alice@pct50.example"}, roll: roll(50), status: StatusNone},
		{name: "no record", from: []string{"alice@nowhere.example"}, status: StatusNoRecord, authResult: "dmarc=none header.from=nowhere.example"},
		{name: "not a DMARC record", from: []string{"alice@other.example"}, status: StatusNoRecord},
		{name: "two records", from: []string{"alice@two.example"}, status: StatusNoRecord,
			authResult: `dmarc=none reason="2 DMARC records at _dmarc.two.example" header.from=two.example`},
		{name: "invalid record", from: []string{"alice@bad.example"}, status: StatusError,
			authResult: `dmarc=permerror reason="dmarc: invalid record at _dmarc.bad.example: invalid policy for parameter 'p'" header.from=bad.example`},
		{name: "servfail", from: []string{"alice@servfail.example"}, status: StatusTempError},
		{name: "servfail at the organizational domain", from: []string{"alice@a.servfail.example"}, status: StatusTempError},
		{name: "no From", status: StatusNoFrom, authResult: `dmarc=permerror reason="no From header field"`},
		{name: "From without a domain", from: []string{"undisclosed-recipients:;"}, status: StatusNoFrom},
		{name: "two From fields", from: []string{"a@reject.example", "b@reject.example"}, status: StatusError},
		{name: "two domains in From", from: []string{"a@reject.example, b@none.example"}, status: StatusError},
		{name: "two addresses, one domain", from: []string{"a@reject.example, B <b@Reject.Example>"}, status: StatusReject},
		{name: "display name net/mail refuses", from: []string{"Dr. A. Smith [ops] <a@reject.example>"}, status: StatusReject},
		{name: "encoded name in an unknown charset", from: []string{"=?x-unknown?q?A?= <a@reject.example>"}, status: StatusReject},
		{name: "domain literal", from: []string{"a@[192.0.2.1]"}, status: StatusNoFrom},
		{name: "UTF-8 domain, looked up as A-labels", from: []string{"a@Bücher.example"}, status: StatusReject, used: "xn--bcher-kva.example",
			authResult: "dmarc=fail (p=reject dis=reject) header.from=xn--bcher-kva.example policy.dmarc=reject"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Evaluate(context.Background(), Input{From: tc.from, AuthResults: tc.results, LookupTXT: testZone.LookupTXT, Roll: tc.roll})
			if r.Status != tc.status {
				t.Fatalf("status %s (%s), want %s", r.Status, r.Reason, tc.status)
			}
			if tc.used != "" && r.UsedDomain != tc.used {
				t.Errorf("used domain %q, want %q", r.UsedDomain, tc.used)
			}
			if tc.policy != "" && r.DomainPolicy != tc.policy {
				t.Errorf("domain policy %q, want %q", r.DomainPolicy, tc.policy)
			}
			if got := authres.FormatResult(r.AuthResult()); tc.authResult != "" && got != tc.authResult {
				t.Errorf("A-R %s\nwant %s", got, tc.authResult)
			}
			if r.Text() == "" {
				t.Errorf("no status text for %s", r.Status)
			}
		})
	}
}

func TestOrganizationalDomainAndAlignment(t *testing.T) {
	for in, want := range map[string]string{
		"mail.example.org": "example.org", "a.b.example.co.uk": "example.co.uk", "co.uk": "co.uk",
		"Example.ORG.": "example.org", "x.github.io": "x.github.io",
	} {
		if got := OrganizationalDomain(in); got != want {
			t.Errorf("OrganizationalDomain(%q) = %q, want %q", in, got, want)
		}
	}
	if !Aligned("example.org", "mail.example.org", "r") || Aligned("example.org", "mail.example.org", "s") ||
		Aligned("a.co.uk", "b.co.uk", "r") || !Aligned("EXAMPLE.org", "example.org.", "s") || Aligned("example.org", "", "r") {
		t.Error("alignment")
	}
}

// A lookup that outlives the message's deadline is a temperror.
func TestEvaluateDeadline(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	slow := func(ctx context.Context, name string) ([]string, error) {
		<-ctx.Done()
		return nil, &net.DNSError{Err: ctx.Err().Error(), Name: name, IsTimeout: true}
	}
	r := Evaluate(ctx, Input{From: []string{"a@example.org"}, LookupTXT: slow})
	if r.Status != StatusTempError || authres.FormatResult(r.AuthResult())[:16] != "dmarc=temperror " {
		t.Errorf("%+v %s", r, authres.FormatResult(r.AuthResult()))
	}
}
