package srs

import (
	"errors"
	"strings"
	"testing"
)

// FuzzReverse feeds arbitrary text, as a recipient (Reverse) and as a sender
// (Forward, then Reverse). Reverse must never panic and must label every
// failure; whatever Forward accepts must reverse to what it stands for. The
// seeds are in testdata/fuzz/FuzzReverse.
func FuzzReverse(f *testing.F) {
	s := mustNew(f, vecOptions(t0))
	f.Fuzz(func(t *testing.T, addr string) {
		back, err := s.Reverse(addr)
		if err != nil {
			if back != "" {
				t.Fatalf("Reverse(%q) = %q with error %v", addr, back, err)
			}
			if r := Reason(err); r == "error" || r == "" || StatusOf(err) == StatusValid {
				t.Fatalf("Reverse(%q): unlabelled error %v", addr, err)
			}
			if (StatusOf(err) == StatusNone) == IsSRS(addr) {
				t.Fatalf("Reverse(%q): status %s but IsSRS %v", addr, StatusOf(err), IsSRS(addr))
			}
		} else {
			if !IsSRS(addr) {
				t.Fatalf("Reverse(%q) accepted a non-SRS address", addr)
			}
			at := strings.LastIndexByte(back, '@')
			if at <= 0 || at == len(back)-1 {
				t.Fatalf("Reverse(%q) = %q: not an address", addr, back)
			}
		}

		fwd, err := s.Forward(addr)
		if err != nil {
			if !errors.Is(err, ErrNullSender) && !errors.Is(err, ErrBadAddress) {
				t.Fatalf("Forward(%q): unexpected error %v", addr, err)
			}
			return
		}
		if fwd == addr {
			if !s.IsOurs(addr) {
				t.Fatalf("Forward(%q) left it unchanged", addr)
			}
			return
		}
		if !s.IsOurs(fwd) || !IsSRS(fwd) {
			t.Fatalf("Forward(%q) = %q: not an SRS address of ours", addr, fwd)
		}
		back, err = s.Reverse(fwd)
		if want := expectedReverse(addr); err != nil || back != want {
			t.Fatalf("Reverse(Forward(%q) = %q) = %q, %v; want %q", addr, fwd, back, err, want)
		}
	})
}

// expectedReverse is what reversing our rewrite of sender must give, written
// from the scheme, not from the code under test: a well-formed SRS1 sender
// gives its first hop's SRS0 address, an SRS0 sender itself (tag in upper
// case), anything else itself.
func expectedReverse(sender string) string {
	at := strings.LastIndexByte(sender, '@')
	local, domain := sender[:at], sender[at+1:]
	isSep := func(c byte) bool { return strings.IndexByte("=+-", c) >= 0 }
	if len(local) < 5 || !strings.EqualFold(local[:3], "srs") || !isSep(local[4]) {
		return sender
	}
	switch local[3] {
	case '0':
		return "SRS0" + local[4:] + "@" + domain
	case '1':
		f := strings.SplitN(local[5:], "=", 3)
		if len(f) == 3 && f[1] != "" && f[2] != "" && isSep(f[2][0]) {
			return "SRS0" + f[2] + "@" + f[1]
		}
	}
	return sender
}

// FuzzReverseExim is FuzzReverse for Exim's scheme, with both schemes
// accepted (a migration): Reverse never panics and labels every failure;
// whatever Forward writes that Exim itself could reverse (see
// eximCanReverse) reverses to the sender in lower case. Seeds are shared
// with FuzzReverse through f.Add of the Exim forms.
func FuzzReverseExim(f *testing.F) {
	for _, seed := range []string{"alice@example.com", `"a b"@example.com`, "SRS0=4df1=jw=example.com=alice@fwd.example",
		`"SRS0=8388=jw=Example.COM=a b"@fwd.example`, "SRS0=4df1==example.com=alice@fwd.example", "srs0=4DF1=JW=x=@fwd.example"} {
		f.Add(seed)
	}
	s := mustNew(f, Options{Domain: "fwd.example", Secrets: []string{"tops3cr3t"}, Scheme: SchemeExim,
		Accept: []Scheme{SchemeExim, SchemeGuarded}, Now: at(t0)})
	f.Fuzz(func(t *testing.T, addr string) {
		back, err := s.Reverse(addr)
		if err != nil {
			if back != "" {
				t.Fatalf("Reverse(%q) = %q with error %v", addr, back, err)
			}
			if r := Reason(err); r == "error" || r == "" || StatusOf(err) == StatusValid {
				t.Fatalf("Reverse(%q): unlabelled error %v", addr, err)
			}
			if (StatusOf(err) == StatusNone) == IsSRS(addr) {
				t.Fatalf("Reverse(%q): status %s but IsSRS %v", addr, StatusOf(err), IsSRS(addr))
			}
		} else if !IsSRS(addr) {
			t.Fatalf("Reverse(%q) accepted a non-SRS address", addr)
		}
		fwd, err := s.Forward(addr)
		if err != nil || fwd == addr {
			return
		}
		if !IsSRS(fwd) {
			t.Fatalf("Forward(%q) = %q: not SRS", addr, fwd)
		}
		at := strings.LastIndexByte(addr, '@')
		local, host := addr[:at], addr[at+1:]
		// Exim rebuilds the recipient with its own quoting rule, over the
		// whole local part it sees (the domain field included): only a
		// sender written that way reverses (see eximCannotReverse in the
		// e2e test).
		inner := strings.ReplaceAll(local, `"`, "")
		canonical := inner
		if needsQuotes(host + inner) {
			canonical = `"` + inner + `"`
		}
		if local != canonical || inner == "" || strings.ContainsAny(inner+host, "\\\"") {
			return
		}
		back, err = s.Reverse(fwd)
		want := []byte(addr)
		lowerBytes(want)
		if err != nil || back != string(want) {
			t.Fatalf("Reverse(Forward(%q) = %q) = %q, %v; want %q", addr, fwd, back, err, want)
		}
	})
}
