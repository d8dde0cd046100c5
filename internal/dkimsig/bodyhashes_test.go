package dkimsig

import (
	"bytes"
	"crypto"
	"crypto/sha1" //nolint:gosec // rsa-sha1 body hashes are read
	"crypto/sha256"
	"errors"
	"slices"
	"testing"
)

// standalone is a body hash computed by a BodyCanon of its own: what each
// consumer did before the hashes were shared.
func standalone(c Canon, h crypto.Hash, limit int64, chunks ...string) []byte {
	var sink BodyHash
	switch h {
	case crypto.SHA1:
		sink = BodyHash{Hash: sha1.New(), Limit: limit} //nolint:gosec
	default:
		sink = BodyHash{Hash: sha256.New(), Limit: limit}
	}
	bc := BodyCanon{Relaxed: c == Relaxed, Sinks: []*BodyHash{&sink}}
	for _, p := range chunks {
		bc.Write([]byte(p))
	}
	bc.Close()
	return sink.Sum
}

func TestBodyHashesShared(t *testing.T) {
	var b BodyHashes
	if b.Wanted() {
		t.Fatal("wanted before anyone asked")
	}
	type need struct {
		c     Canon
		h     crypto.Hash
		limit int64
	}
	needs := []need{{Relaxed, crypto.SHA256, -1}, {Simple, crypto.SHA256, -1}, {Relaxed, crypto.SHA256, 5},
		{Relaxed, crypto.SHA1, -1}, {Simple, crypto.SHA256, 1000}}
	got := map[need]*BodyHash{}
	for _, n := range needs {
		s, err := b.Need(n.c, n.h, n.limit)
		if err != nil {
			t.Fatal(err)
		}
		got[n] = s
		again, _ := b.Need(n.c, n.h, n.limit)
		if again != s {
			t.Errorf("%+v asked twice: two hashes", n)
		}
	}
	if again, _ := b.Need(Relaxed, crypto.SHA256, -7); again != got[need{Relaxed, crypto.SHA256, -1}] {
		t.Error("a negative limit is not the whole body")
	}
	chunks := []string{"Hello  \t world \r", "\n\r\nsecond line\t\r\n", "\r\n\r\n"}
	for _, c := range chunks {
		b.Write([]byte(c))
	}
	if _, err := b.Need(Relaxed, crypto.SHA256, 3); !errors.Is(err, ErrBodyStarted) {
		t.Errorf("asked after the body started: %v", err)
	}
	if b.Closed() {
		t.Fatal("closed before Close")
	}
	if ran := b.Close(); !slices.Equal(ran, []Canon{Simple, Relaxed}) {
		t.Errorf("passes %v, want one simple and one relaxed", ran)
	}
	if ran := b.Close(); ran != nil {
		t.Errorf("closed twice ran %v", ran)
	}
	for n, s := range got {
		if want := standalone(n.c, n.h, n.limit, chunks...); !bytes.Equal(s.Sum, want) {
			t.Errorf("%+v: shared hash differs from a standalone one", n)
		}
	}
	if n := got[need{Relaxed, crypto.SHA256, 5}].N; n <= 5 {
		t.Errorf("N %d: the canonical length past the limit is what l= is checked against", n)
	}
}

func TestBodyHashesRefuses(t *testing.T) {
	var b BodyHashes
	if _, err := b.Need(Relaxed, crypto.SHA512, -1); err == nil {
		t.Error("SHA-512 body hash accepted")
	}
	if _, err := b.Need(Canon(7), crypto.SHA256, -1); err == nil {
		t.Error("unknown canonicalization accepted")
	}
	if b.Wanted() {
		t.Error("a refused need counts as wanted")
	}
	if ran := b.Close(); ran != nil {
		t.Errorf("nothing asked for, yet %v ran", ran)
	}
	var empty BodyHashes
	s, _ := empty.Need(Simple, crypto.SHA256, -1)
	empty.Close()
	if want := standalone(Simple, crypto.SHA256, -1); !bytes.Equal(s.Sum, want) {
		t.Error("an empty simple body is not one CRLF")
	}
}

// TestBodyHashesLateAskWithNobodyHashing: the body went by while nobody
// wanted a hash; asking afterwards is still refused, not a hash of the rest.
func TestBodyHashesLateAskWithNobodyHashing(t *testing.T) {
	var b BodyHashes
	b.Write([]byte("first chunk\r\n"))
	if _, err := b.Need(Relaxed, crypto.SHA256, -1); !errors.Is(err, ErrBodyStarted) {
		t.Errorf("asked after an unhashed chunk: %v", err)
	}
	var c BodyHashes
	c.Close()
	if _, err := c.Need(Relaxed, crypto.SHA256, -1); !errors.Is(err, ErrBodyStarted) {
		t.Errorf("asked after the end of an empty body: %v", err)
	}
}
