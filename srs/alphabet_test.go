package srs

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// sendersWithHashPunct returns n senders whose standard hash (written by s,
// HashLength 6) holds a '+' or a '/': the only ones where the alphabets differ.
func sendersWithHashPunct(t testing.TB, s *SRS, n int) []string {
	t.Helper()
	var out []string
	for i := 0; len(out) < n && i < 10000; i++ {
		x := fmt.Sprintf("user%d@orig.example", i)
		a, err := s.Forward(x)
		if err != nil {
			t.Fatal(err)
		}
		if strings.ContainsAny(a[5:5+s.hashLen], "+/") {
			out = append(out, x)
		}
	}
	if len(out) < n {
		t.Fatalf("only %d senders with + or / in the hash", len(out))
	}
	return out
}

func TestHashAlphabet(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	opts := func(a Alphabet) Options {
		return Options{Domain: "fwd.example", Secrets: []string{"tops3cr3t"}, HashAlphabet: a, Now: at(now)}
	}
	std := mustNew(t, opts(""))
	stdNamed := mustNew(t, opts(AlphabetStandard))
	url := mustNew(t, opts(AlphabetURL))

	senders := sendersWithHashPunct(t, std, 20)
	// SRS1 too: an SRS0 sender from elsewhere.
	senders = append(senders, "SRS0=Ak0K=JK=orig.example=alice@hop1.example")
	for _, x := range senders {
		a, b, u := forwardOne(t, std, x), forwardOne(t, stdNamed, x), forwardOne(t, url, x)
		if a != b {
			t.Errorf("%s: default %s, standard %s", x, a, b)
		}
		hs, hu := a[5:11], u[5:11]
		if strings.ContainsAny(hu, "+/") || strings.ContainsAny(hs, "-_") {
			t.Errorf("%s: standard hash %s, url hash %s", x, hs, hu)
		}
		// The same hash in the other alphabet, the rest byte for byte.
		if strings.NewReplacer("+", "-", "/", "_").Replace(hs) != hu || a[11:] != u[11:] {
			t.Errorf("%s: standard %s, url %s", x, a, u)
		}
		// Reverse accepts both, whatever the forward alphabet, in any case.
		want := expectedReverse(x)
		for _, r := range []*SRS{std, url} {
			for _, addr := range []string{a, u, strings.ToLower(u), strings.ToUpper(a)} {
				got, err := r.Reverse(addr)
				if err != nil || !strings.EqualFold(got, want) {
					t.Errorf("Reverse(%s) = %q, %v; want %q", addr, got, err, want)
				}
			}
		}
	}
	// A hash character of neither alphabet, or the wrong one swapped in,
	// is still a bad hash.
	a := forwardOne(t, std, senders[0])
	i := 5 + strings.IndexAny(a[5:11], "+/")
	for _, c := range []string{".", "*", map[byte]string{'+': "_", '/': "-"}[a[i]]} {
		bad := a[:i] + c + a[i+1:]
		if _, err := url.Reverse(bad); !errors.Is(err, ErrBadHash) {
			t.Errorf("Reverse(%s) = %v, want ErrBadHash", bad, err)
		}
	}

	var oe *OptionError
	if _, err := New(opts("base64")); !errors.As(err, &oe) || oe.ConfigField() != "hash_alphabet" {
		t.Errorf("New with hash_alphabet base64: %v", err)
	}
}

func forwardOne(t testing.TB, s *SRS, x string) string {
	t.Helper()
	a, err := s.Forward(x)
	if err != nil {
		t.Fatalf("Forward(%q): %v", x, err)
	}
	return a
}
