package dkimsign

import (
	"crypto/sha256"

	"github.com/tollgate/tollgate/internal/dkimsig"
)

// bodyHasher canonicalises a body as it streams in, in chunks cut anywhere,
// and hashes it with SHA-256, as the milter's shared body hashes do for
// the module; the tests hash bodies with it directly.
type bodyHasher struct {
	canon dkimsig.BodyCanon
	hash  dkimsig.BodyHash
}

func newBodyHasher(canon string) *bodyHasher {
	b := &bodyHasher{hash: dkimsig.BodyHash{Hash: sha256.New(), Limit: -1}}
	b.canon = dkimsig.BodyCanon{Relaxed: canon == canonRelaxed, Sinks: []*dkimsig.BodyHash{&b.hash}}
	return b
}

func (b *bodyHasher) Write(p []byte) (int, error) {
	b.canon.Write(p)
	return len(p), nil
}

// Sum ends the body and returns its hash: a last line without CRLF gets
// one, trailing empty lines go, and an empty simple body is one CRLF.
func (b *bodyHasher) Sum() []byte {
	b.canon.Close()
	return b.hash.Sum
}
