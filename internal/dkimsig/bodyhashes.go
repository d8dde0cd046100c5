package dkimsig

import (
	"crypto"
	"errors"
	"fmt"

	// The hashes a DKIM or ARC body hash may name; linked here so that
	// crypto.Hash.New works for them.
	_ "crypto/sha1" //nolint:gosec // rsa-sha1 signatures are still read (RFC 8301 says how to judge them)
	_ "crypto/sha256"
)

// ErrBodyStarted is returned by Need once the body has begun to stream:
// a hash asked for then would miss what went by.
var ErrBodyStarted = errors.New("dkimsig: body hash asked for after the body started")

// BodyHashes is the body hashing of one message, shared by every consumer
// (DKIM verification, ARC verification, DKIM signing, the ARC seal): one
// canonicalization pass per canonicalization in use, each feeding one hash
// per distinct (hash, l=) pair. Consumers ask with Need before the body
// streams; the owner feeds the body with Write and ends it with Close,
// after which every BodyHash has its Sum. Not safe for concurrent use.
type BodyHashes struct {
	canons  [2]*BodyCanon
	sinks   map[sinkKey]*BodyHash
	started bool
	closed  bool
}

type sinkKey struct {
	canon Canon
	hash  crypto.Hash
	limit int64
}

// Need returns the body hash of canonicalization c with hash h over the
// first limit canonical bytes (-1: the whole body), shared with every
// other consumer that needs the same one.
func (b *BodyHashes) Need(c Canon, h crypto.Hash, limit int64) (*BodyHash, error) {
	if b.started {
		return nil, ErrBodyStarted
	}
	if h != crypto.SHA256 && h != crypto.SHA1 {
		return nil, fmt.Errorf("dkimsig: no body hash %v", h)
	}
	if c != Simple && c != Relaxed {
		return nil, fmt.Errorf("dkimsig: no canonicalization %d", c)
	}
	if limit < -1 {
		limit = -1
	}
	k := sinkKey{c, h, limit}
	if s, ok := b.sinks[k]; ok {
		return s, nil
	}
	if b.sinks == nil {
		b.sinks = make(map[sinkKey]*BodyHash, 2)
	}
	bc := b.canons[c]
	if bc == nil {
		bc = &BodyCanon{Relaxed: c == Relaxed}
		b.canons[c] = bc
	}
	s := &BodyHash{Hash: h.New(), Limit: limit}
	bc.Sinks = append(bc.Sinks, s)
	b.sinks[k] = s
	return s, nil
}

// Wanted reports whether any consumer asked for a body hash.
func (b *BodyHashes) Wanted() bool { return len(b.sinks) > 0 }

// Write feeds the next chunk of the body (CRLF line ends, cut anywhere).
func (b *BodyHashes) Write(p []byte) {
	b.started = true
	if b.closed {
		return
	}
	for _, c := range b.canons {
		if c != nil {
			c.Write(p)
		}
	}
}

// Close ends the body and sets every Sum. It returns the canonicalizations
// that ran (nil when nobody needed a hash); later calls return nil.
func (b *BodyHashes) Close() []Canon {
	b.started = true
	if b.closed {
		return nil
	}
	b.closed = true
	var ran []Canon
	for i, c := range b.canons {
		if c != nil {
			c.Close()
			ran = append(ran, Canon(i))
		}
	}
	return ran
}

// Closed reports whether Close has run: the Sums are ready.
func (b *BodyHashes) Closed() bool { return b.closed }
