// Package store is SRS "database mode" (the seed's srs_dbinsert and
// srs_dbselect): instead of carrying the original sender inside the SRS
// address, Forward keeps it in a Store under a short random key for max_age
// and signs the key into the address, so that a long or odd sender still gives
// a rewritten address well under the 64-character local-part limit.
//
// Two stores implement Store: Bolt, an embedded bbolt file for a single
// machine, and Redis, a small RESP2 client for several daemons behind several
// MTAs sharing one Redis. DB does the SRS side on top of an *srs.SRS.
//
// The address form, the key space and the expiry rules are described on DB
// and NewKey, and in ../README.md ("Database mode").
package store

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"time"

	"github.com/tollgate/tollgate/srs"
)

// Store keeps original addresses under short keys for max_age.
//
// Put stores addr under key for ttl, only if key is not in use (NX): a
// collision of random keys must never overwrite someone else's sender, or
// their bounces would go to a stranger. It returns ErrKeyExists when the key
// is taken, an error wrapping ErrUnavailable when the store cannot be reached
// or fails, and a plain error for arguments no caller should pass (an empty
// key, a ttl not positive).
//
// Get returns the address stored under key; ErrNotFound when it is missing
// or expired. Every other error wraps ErrUnavailable: the store is down or
// failing, which is temporary for mail (4xx).
//
// Implementations are safe for concurrent use.
type Store interface {
	Put(ctx context.Context, key, addr string, ttl time.Duration) error
	Get(ctx context.Context, key string) (string, error)
	Close() error
}

// The sentinel errors are the srs package's, so that its milter hooks can
// tell them apart; match with errors.Is and label with srs.Reason.
var (
	ErrNotFound    = srs.ErrDBNotFound    // 5xx for a recipient: unknown address
	ErrUnavailable = srs.ErrDBUnavailable // 4xx: the store is down, slow or failing
	ErrKeyExists   = srs.ErrDBKeyExists   // Put found the key in use; Forward draws another
	ErrNotDB       = srs.ErrNotDB         // not a database-mode address: hand it to (*srs.SRS).Reverse
)

// KeyLen is the length of the keys NewKey makes: 10 base32 characters, 50
// random bits.
const KeyLen = 10

// keyAlphabet is RFC 4648 base32 in lower case: no 0, 1, 8, 9, so a key can
// never start like "SRS0=" or "SRS1=", and folding its case loses nothing.
const keyAlphabet = "abcdefghijklmnopqrstuvwxyz234567"

// NewKey returns a fresh random key: KeyLen characters of lower-case base32
// (RFC 4648 alphabet, no padding) drawn from crypto/rand, 50 bits.
//
// Collisions. With N keys alive (forwarded in the last max_age), a new key
// hits one of them with probability N/2^50. At 100,000 forwards a day kept 32
// days, N = 3.2 million: 2.8e-9 per forward, and about a 0.5% chance of at
// least one collision in the whole month (1-exp(-N²/2^51)). At a million a
// day it is 2.8e-8 per forward and about one chance in three a month. So Put is
// NX (store only if absent) and DB.Forward draws a new key on ErrKeyExists:
// a collision costs one more round trip and never overwrites a sender.
// Guessing is not the defence against forgery (the signature is): the key
// only has to be unique while alive.
func NewKey() string {
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	v := binary.LittleEndian.Uint64(b[:])
	var out [KeyLen]byte
	for i := range out {
		out[i] = keyAlphabet[v&31]
		v >>= 5
	}
	return string(out[:])
}

// validKey reports whether k looks like a key of NewKey (lower case).
func validKey(k string) bool {
	if len(k) != KeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || '2' <= c && c <= '7') {
			return false
		}
	}
	return true
}

// checkPut checks Put's arguments, the same for every store.
func checkPut(key string, ttl time.Duration) error {
	switch {
	case key == "":
		return errors.New("srs store: empty key")
	case len(key) > maxKeyLen:
		return errors.New("srs store: key longer than 256 bytes")
	case ttl <= 0:
		return errors.New("srs store: ttl must be positive")
	}
	return nil
}

// maxKeyLen bounds keys given to Put and Get: ours are KeyLen; the stores
// accept any key up to this for other callers.
const maxKeyLen = 256
