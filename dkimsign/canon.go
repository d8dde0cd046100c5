package dkimsign

import (
	"crypto/sha256"

	"github.com/tollgate/tollgate/internal/dkimsig"
)

// Canonicalization algorithms (RFC 6376 §3.4), as Options names them.
const (
	canonSimple  = "simple"
	canonRelaxed = "relaxed"
)

// bodyHasher canonicalises a body as it streams in, in chunks cut anywhere,
// and hashes it with SHA-256: dkimsig's canonicalization, the one ARC
// seals with, feeding one whole-body hash.
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

// appendHeader appends one header field canonicalised, with its CRLF.
// value is the text after the colon, leading space included.
func appendHeader(dst []byte, canon, name, value string) []byte {
	return append(appendHeaderNoCRLF(dst, canon, name, value), '\r', '\n')
}

// appendHeaderNoCRLF is appendHeader without the CRLF: how the
// DKIM-Signature itself is hashed (RFC 6376 §3.7). Folds may come with a
// bare LF from the MTA; they are hashed as the CRLF they are on the wire.
func appendHeaderNoCRLF(dst []byte, canon, name, value string) []byte {
	value = dkimsig.FixLF(value)
	if canon == canonSimple {
		return append(append(append(dst, name...), ':'), value...)
	}
	return dkimsig.AppendRelaxedHeader(dst, name, value)
}
