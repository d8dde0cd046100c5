package arc

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/authres"
)

func TestAuthServID(t *testing.T) {
	cases := []struct{ in, want string }{
		{" mx.example.org; spf=pass smtp.mailfrom=a@b", "mx.example.org"},
		{"mx.example.org;", "mx.example.org"},
		{" mx.example.org 1; none", "mx.example.org"},
		{" (comment; with semicolon) mx.example.org (x) ; arc=pass", "mx.example.org"},
		{"\r\n\tmx.example.org;\r\n\tdkim=pass", "mx.example.org"},
		{` "quoted id"; none`, "quoted id"},
		{" MX.Example.ORG; none", "MX.Example.ORG"},
	}
	for _, c := range cases {
		got, err := authres.AuthServID(c.in)
		if err != nil || got != c.want {
			t.Errorf("authres.AuthServID(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", " ", "mx.example.org", "; spf=pass", " (unterminated; x", `"open; none`, " a b; none"} {
		if id, err := authres.AuthServID(bad); err == nil {
			t.Errorf("authres.AuthServID(%q) = %q, want an error", bad, id)
		}
	}
}

func TestSplitResults(t *testing.T) {
	got, err := authres.SplitResults(` spf=pass (a; b) smtp.mailfrom=x;` + "\r\n\t" + ` dkim=pass header.b="q;uoted" ; none ;;` + "\r\n\t" + `arc=none`)
	want := []string{"spf=pass (a; b) smtp.mailfrom=x", `dkim=pass header.b="q;uoted"`, "arc=none"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("%q %v", got, err)
	}
	if _, err := authres.SplitResults(" spf=pass (open"); err == nil {
		t.Fatal("unterminated comment accepted")
	}
}

func TestBuildAAR(t *testing.T) {
	ars := []string{
		" mx.example.org; arc=none;\r\n\tspf=pass smtp.mailfrom=a@origin.example",
		" other.example; dkim=pass", // not ours
		" mx.example.org; dkim=pass (2048-bit key; good) header.d=origin.example",
		" mx.example.org; none",                               // no results
		" mx.example.org; dmarc=pass (broken\n header.from=x", // unparsable: left out
		" MX.EXAMPLE.ORG 1; iprev=pass\nsmtp.remote-ip=192.0.2.1",
	}
	got := buildAAR(3, "mx.example.org", ars)
	want := "i=3; mx.example.org;\r\n\tarc=none;\r\n\tspf=pass smtp.mailfrom=a@origin.example;\r\n\t" +
		"dkim=pass (2048-bit key; good) header.d=origin.example;\r\n\tiprev=pass smtp.remote-ip=192.0.2.1"
	if got != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
	if got := buildAAR(1, "mx.example.org", nil); got != "i=1; mx.example.org; none" {
		t.Fatalf("%q", got)
	}
	if inst, err := parseAAR(" " + want); err != nil || inst != 3 {
		t.Fatalf("own AAR does not parse: %d %v", inst, err)
	}
}

func TestSignedNames(t *testing.T) {
	hs := []Header{{"From", ""}, {"To", ""}, {"Received", ""}, {"Received", ""}, {"DKIM-Signature", ""}, {"dkim-signature", ""}, {"ARC-Seal", ""}}
	got := signedNames(hs, SealOptions{Headers: []string{"From", "to", "received", "cc", "ARC-Seal", "dkim-signature"}, OversignHeaders: []string{"from", "subject", "arc-seal"}})
	want := []string{"from", "from", "to", "received", "received", "dkim-signature", "dkim-signature", "subject"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q", got)
	}
	got = signedNames([]Header{{"From", ""}, {"Subject", ""}, {"X-Other", ""}}, SealOptions{})
	if !reflect.DeepEqual(got, []string{"from", "from", "subject"}) {
		t.Fatalf("defaults: %q", got)
	}
}

func TestSealOptionsValidate(t *testing.T) {
	k := testKeys()["ed1"]
	good := SealOptions{Key: Key{Domain: "example.org", Selector: "s2026", Signer: k}, AuthServID: "mx.example.org", Expire: DefaultExpire}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*SealOptions){
		"no key":         func(o *SealOptions) { o.Key.Signer = nil },
		"bad domain":     func(o *SealOptions) { o.Key.Domain = "exa mple.org" },
		"bad selector":   func(o *SealOptions) { o.Key.Selector = "" },
		"bad servid":     func(o *SealOptions) { o.AuthServID = "mx;example" },
		"bad expire":     func(o *SealOptions) { o.Expire = "+-1" },
		"signs arc-seal": func(o *SealOptions) { o.Headers = []string{"from", "ARC-Seal"} },
		"bad name":       func(o *SealOptions) { o.OversignHeaders = []string{"from:to"} },
	} {
		o := good
		mod(&o)
		if err := o.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestSealLayout checks that what Seal returns can go on the wire as it
// is: no leading space, CRLF TAB folds only, short lines, i= first.
func TestSealLayout(t *testing.T) {
	res := mapResolver{}
	hs, body := parseMessage(plainMessage)
	m := mustSealHop(t, res, hs, body, testKey(res, "hop1"), t0, nil, func(o *SealOptions) {
		o.Expire = DefaultExpire
		o.Headers = append(append([]string{}, DefaultSignHeaders...), "x-a-rather-long-header-name-one", "x-a-rather-long-header-name-two")
		o.OversignHeaders = []string{"from", "to", "subject", "date", "message-id", "cc", "reply-to", "x-a-rather-long-header-name-one"}
	})
	names := []string{"ARC-Seal", "ARC-Message-Signature", "ARC-Authentication-Results"}
	for i, want := range names {
		h := m[i]
		if h.Name != want {
			t.Fatalf("header %d is %s, want %s", i, h.Name, want)
		}
		if strings.HasPrefix(h.Value, " ") || !strings.HasPrefix(h.Value, "i=") {
			t.Errorf("%s starts with %q", h.Name, h.Value[:5])
		}
		for n, line := range strings.Split(h.Name+": "+h.Value, "\r\n") {
			if n > 0 && !strings.HasPrefix(line, "\t") {
				t.Errorf("%s: continuation %q not folded with a tab", h.Name, line)
			}
			if w := len(strings.ReplaceAll(line, "\t", "        ")); w > 80 {
				t.Errorf("%s: line of %d columns: %q", h.Name, w, line)
			}
			if strings.ContainsAny(line, "\r\n") {
				t.Errorf("%s: bare CR or LF", h.Name)
			}
		}
	}
	if !strings.Contains(m[1].Value, "x=") || !strings.Contains(m[1].Value, "t=") || !strings.Contains(m[0].Value, "t=") || strings.Contains(m[0].Value, "x=") {
		t.Errorf("t=/x= placement:\n%s\n%s", m[0].Value, m[1].Value)
	}
	if r := verifyAt(res, m, body, t0); r.State != StatePass {
		t.Fatalf("%+v", r)
	}
}

func TestSealNeedsResult(t *testing.T) {
	v := NewVerifier(VerifyOptions{})
	v.Header(Header{"From", " a@b"})
	v.EndOfHeaders()
	if _, err := v.Seal(SealOptions{}, nil, nil); !errors.Is(err, ErrNotPrepared) {
		t.Fatalf("%v", err)
	}
	v = NewVerifier(VerifyOptions{VerifyOnly: true, Now: func() time.Time { return t0 }})
	v.Header(Header{"From", " a@b"})
	v.Result(t.Context())
	if _, err := v.Seal(SealOptions{}, nil, nil); !errors.Is(err, ErrNotPrepared) {
		t.Fatalf("%v", err)
	}
}

func TestSealChainChanged(t *testing.T) {
	res := mapResolver{}
	hs, body := parseMessage(plainMessage)
	k := testKey(res, "ed1")
	m := mustSealHop(t, res, hs, body, k, t0, nil)
	v, r := verifyMessage(VerifyOptions{Resolver: res, Now: func() time.Time { return t0 }}, m, body, 0)
	if r.State != StatePass {
		t.Fatal(r.Reason)
	}
	// the milter dropped a set header after validation: refuse to seal
	if _, err := v.Seal(SealOptions{Key: k, AuthServID: "mx"}, m[1:], nil); err == nil {
		t.Fatal("sealed over a changed chain")
	}
}

func TestAuthResult(t *testing.T) {
	cases := []struct {
		r    Result
		ip   string
		want string
	}{
		{Result{State: StatePass, OldestPass: 1}, "192.0.2.1", "mx.example.org;\r\n\tarc=pass header.oldest-pass=0 smtp.remote-ip=192.0.2.1"},
		{Result{State: StatePass, OldestPass: 2}, "", "mx.example.org;\r\n\tarc=pass header.oldest-pass=2"},
		{Result{State: StateNone}, "2001:db8::1", "mx.example.org;\r\n\tarc=none smtp.remote-ip=2001:db8::1"},
		{Result{State: StateFail, Reason: `as.1 malformed: bad d="(x)\"`}, "", "mx.example.org;\r\n\t" + `arc=fail (as.1 malformed: bad d="\(x\)\\")`},
	}
	for _, c := range cases {
		got := authres.Format("mx.example.org", []authres.Result{c.r.AuthResult(c.ip)})
		if got != c.want {
			t.Errorf("got  %s\nwant %s", got, c.want)
		}
		// what we write, we read back
		if id, err := authres.AuthServID(" " + got); err != nil || id != "mx.example.org" {
			t.Errorf("%q: %q %v", got, id, err)
		}
		if rs, err := authres.SplitResults(strings.SplitN(got, ";", 2)[1]); err != nil || len(rs) != 1 {
			t.Errorf("%q splits into %q, %v", got, rs, err)
		}
	}
}
