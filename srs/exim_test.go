package srs

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func eximSRS(t testing.TB, now time.Time, accept ...Scheme) *SRS {
	t.Helper()
	return mustNew(t, Options{Domain: "fwd.example", Secrets: []string{"tops3cr3t"}, Scheme: SchemeExim, Accept: accept, Now: at(now)})
}

// The known answer of Debian's Exim 4.96 (FACTS.md), and the shapes that
// follow from its source; the e2e test compares with the binary itself.
func TestEximForward(t *testing.T) {
	dec3 := time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC)
	s := eximSRS(t, dec3)
	if got := forwardOne(t, s, "alice@example.com"); got != "SRS0=4df1=jw=example.com=alice@fwd.example" {
		t.Errorf("Forward = %s, want Exim's SRS0=4df1=jw=example.com=alice@fwd.example", got)
	}
	// The hash covers the sender in lower case; the fields keep its case.
	if got := forwardOne(t, s, "Alice@Example.COM"); got != "SRS0=4df1=jw=Example.COM=Alice@fwd.example" {
		t.Errorf("mixed case: %s", got)
	}
	// No SRS1: an SRS0 sender is wrapped again.
	if got := forwardOne(t, s, "SRS0=abcd=jw=orig.example=bob@hop.example"); !strings.HasPrefix(got, "SRS0=") || !strings.HasSuffix(got, "=hop.example=SRS0=abcd=jw=orig.example=bob@fwd.example") {
		t.Errorf("SRS0 sender: %s", got)
	}
	// Quotes: removed inside, the whole local part quoted.
	if got := forwardOne(t, s, `"a b"@example.com`); !strings.HasPrefix(got, `"SRS0=`) || !strings.HasSuffix(got, `=example.com=a b"@fwd.example`) {
		t.Errorf("quoted: %s", got)
	}
	// Stamps: always two letters (Debian's 4.96 carries 4.97's day-zero fix).
	for day, want := range map[int64]string{0: "aa", 1: "ab", 31: "a7", 32: "ba", 1023: "77", 1024: "aa", 20790: "jw"} {
		if got := eximStamp(day); got != want {
			t.Errorf("eximStamp(%d) = %q, want %q", day, got, want)
		}
	}
}

func TestEximReverse(t *testing.T) {
	dec3 := time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC)
	s := eximSRS(t, dec3)
	known := "SRS0=4df1=jw=example.com=alice@fwd.example"
	aged := func(days int, sender string) string {
		return forwardOne(t, eximSRS(t, dec3.AddDate(0, 0, -days)), sender)
	}
	for _, tc := range []struct {
		addr, want string
		err        error
	}{
		{known, "alice@example.com", nil},
		{strings.ToUpper(known), "alice@example.com", nil},
		{aged(10, "x@y.example"), "x@y.example", nil},
		{aged(11, "x@y.example"), "", ErrExpired},
		{aged(-1, "x@y.example"), "", ErrExpired},
		{forwardOne(t, s, "Alice@Example.COM"), "alice@example.com", nil},
		{forwardOne(t, s, `"a b"@example.com`), `"a b"@example.com`, nil},
		{forwardOne(t, s, "a=b@example.com"), "a=b@example.com", nil},
		{"SRS0=4df1=jw=example.com=alice", "alice@example.com", nil},
		{"SRS0=4df2=jw=example.com=alice@fwd.example", "", ErrBadHash},
		{"SRS0=4df=jw=example.com=alice@fwd.example", "", ErrHashTooShort},
		{"SRS0=4df1a=jw=example.com=alice@fwd.example", "", ErrBadHash},
		{"SRS0=4df1=j1=example.com=alice@fwd.example", "", ErrBadStamp},
		{"SRS0=4df1==example.com=alice@fwd.example", "", ErrBadStamp},
		{"SRS0=4df1=w=example.com=alice@fwd.example", "", ErrBadStamp},
		{"SRS0=4df1=ajw=example.com=alice@fwd.example", "", ErrBadStamp},
		{"SRS0+4df1=jw=example.com=alice@fwd.example", "", ErrBadFormat},
		{"SRS1=4df1=hop.example==4df1=jw=example.com=alice@fwd.example", "", ErrBadFormat},
		{"SRS0=4df1=jw=example.com@fwd.example", "", ErrBadFormat},
		{"postmaster@fwd.example", "", ErrNotSRS},
	} {
		got, err := s.Reverse(tc.addr)
		if got != tc.want || tc.err == nil && err != nil || tc.err != nil && !errors.Is(err, tc.err) {
			t.Errorf("Reverse(%s) = %q, %v; want %q, %v", tc.addr, got, err, tc.want, tc.err)
		}
	}
}

// A migration: forward writes guarded, reverse reads both.
func TestAcceptBothSchemes(t *testing.T) {
	dec3 := time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC)
	exim := eximSRS(t, dec3)
	guarded := mustNew(t, Options{Domain: "fwd.example", Secrets: []string{"tops3cr3t"}, Now: at(dec3)})
	both := mustNew(t, Options{Domain: "fwd.example", Secrets: []string{"tops3cr3t"}, Accept: []Scheme{SchemeGuarded, SchemeExim}, Now: at(dec3)})
	if both.Scheme() != SchemeGuarded {
		t.Errorf("Scheme() = %s", both.Scheme())
	}
	g, e := forwardOne(t, guarded, "Alice@example.com"), forwardOne(t, exim, "Alice@example.com")
	if g2 := forwardOne(t, both, "Alice@example.com"); g2 != g {
		t.Errorf("forward with accept [guarded, exim] = %s, want the guarded %s", g2, g)
	}
	for addr, want := range map[string]string{g: "Alice@example.com", e: "alice@example.com"} {
		if got, err := both.Reverse(addr); err != nil || got != want {
			t.Errorf("Reverse(%s) = %q, %v; want %q", addr, got, err, want)
		}
	}
	if _, err := guarded.Reverse(e); err == nil {
		t.Errorf("guarded alone reverses Exim's %s: %v", e, err)
	}
	if _, err := exim.Reverse(g); err == nil {
		t.Errorf("exim alone reverses the guarded %s", g)
	}
	// An old Exim address is expired, not bad, even though guarded is tried first.
	old := forwardOne(t, eximSRS(t, dec3.AddDate(0, 0, -12)), "x@y.example")
	if _, err := both.Reverse(old); !errors.Is(err, ErrExpired) {
		t.Errorf("Reverse(%s) = %v, want ErrExpired", old, err)
	}
	for _, o := range []Options{{Scheme: "sendmail"}, {Accept: []Scheme{"exim", "exim"}}, {Accept: []Scheme{"postsrsd"}}} {
		o.Domain, o.Secrets = "fwd.example", []string{"s"}
		var oe *OptionError
		if _, err := New(o); !errors.As(err, &oe) {
			t.Errorf("New(%+v) = %v", o, err)
		}
	}
}
