package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tollgate/tollgate/srs"
)

// DBField is the domain field of every database-mode address:
//
//	SRS0=HHHHHH=TT=_db=<key>@<srs domain>
//
// It is an SRS0 address whose "original domain" is _db and whose "local
// part" is the key, signed by (*srs.SRS).Forward of <key>@_db: same secrets,
// hash length, separator and day stamp as every other address of ours, and
// checked by (*srs.SRS).Reverse with the same rules (all secrets, hash_min,
// case-insensitive, max_age). Why _db:
//
//   - No genuine address has it: a domain cannot start with an underscore
//     (RFC 5321 hostnames are letters, digits and hyphens), so no ordinary
//     SRS0 address of ours carries _db, and the reverse path can route on
//     the field alone (IsDBAddress), before any hash is computed. The whole
//     "_" namespace is claimed: any SRS0 address whose domain field starts
//     with "_" is database mode's to judge.
//   - No signature of ours can be replayed across the two kinds: hashes
//     cover the fields concatenated without separators (see ../README.md),
//     so an SRS0 address for sender L@H verifies as a database-mode one only
//     if H+L equals "_db"+key, i.e. H starts with "_": not a domain. The
//     other way, moving the field boundary of a database-mode address
//     ("_dbk=eyrest") keeps a valid hash but a domain field starting with
//     "_", so it stays with DB.Reverse, which refuses it (bad_format)
//     instead of reversing it to an address. An SRS1 hash covers hop+rest
//     with rest starting with = + or -, none of which is in "_db"+key.
//   - It stays a well-formed SRS0 address: a forwarder after us that knows
//     SRS rewrites it to SRS1 and reverses it back to us, as for any other.
//
// Length: SRS0 (4) + separator + hash (hash_length, at most 27) + "=TT=_db="
// (8) + key (10) = 23 + hash_length characters: 29 with the default hash
// length 6, 50 at most, whatever the sender.
const DBField = "_db"

// maxSenderLen bounds what Forward stores: SMTP's limit on a path is 256
// octets (RFC 5321 4.5.3.1.3); MTAs are known to take longer ones.
const maxSenderLen = 1024

// maxCollisions is how many keys Forward draws before giving up. With 50-bit
// keys, even one collision is rare (see NewKey); three in a row means the
// store or the random source is broken.
const maxCollisions = 3

// DB is SRS database mode: Forward stores the original sender under a new
// key and returns a signed address carrying only the key (see DBField);
// Reverse checks the signature and the stamp, then looks the key up.
// Safe for concurrent use if its Store is (both of ours are).
type DB struct {
	srs    *srs.SRS
	st     Store
	ttl    time.Duration
	newKey func() string
}

// NewDB returns database mode over s and st. maxAge should be s's max_age
// (srs.Options.MaxAge; 0 means srs.DefaultMaxAge): entries are kept for
// maxAge plus one day, because a stamp counts whole UTC days, so an address
// written late on day D is valid until the end of day D+max_age. The stamp,
// not the store, is what expires an address (ErrExpired, not ErrNotFound);
// the store only has to keep entries at least that long.
func NewDB(s *srs.SRS, st Store, maxAge time.Duration) *DB {
	if maxAge <= 0 {
		maxAge = srs.DefaultMaxAge
	}
	return &DB{srs: s, st: st, ttl: maxAge + srs.Day, newKey: NewKey}
}

// Forward stores sender (bare, without angle brackets) under a new key and
// returns the database-mode address and the key (the seed's srs_db_key). The
// sender is stored byte for byte, whatever it is (an SRS0 or SRS1 address of
// someone else, quotes, @ in a quoted local part), and reverses to exactly
// itself.
//
// Errors: srs.ErrNullSender for "" and "<>"; srs.ErrBadAddress for a sender
// without a local part or domain around its last @, with control characters,
// or longer than 1024 bytes; an error wrapping ErrUnavailable when the store
// fails (temporary: do not rewrite, or tempfail). A sender at the SRS domain
// comes back unchanged with an empty key and a nil error, as with
// (*srs.SRS).Forward.
func (d *DB) Forward(ctx context.Context, sender string) (addr, key string, err error) {
	if sender == "" || sender == "<>" {
		return "", "", srs.ErrNullSender
	}
	at := strings.LastIndexByte(sender, '@')
	switch {
	case at < 0:
		return "", "", fmt.Errorf("%w: no @", srs.ErrBadAddress)
	case at == 0:
		return "", "", fmt.Errorf("%w: empty local part", srs.ErrBadAddress)
	case at == len(sender)-1:
		return "", "", fmt.Errorf("%w: empty domain", srs.ErrBadAddress)
	case len(sender) > maxSenderLen:
		return "", "", fmt.Errorf("%w: longer than %d bytes", srs.ErrBadAddress, maxSenderLen)
	case hasControl(sender):
		return "", "", fmt.Errorf("%w: control character", srs.ErrBadAddress)
	}
	if d.srs.IsOurs(sender) {
		return sender, "", nil
	}
	for range maxCollisions {
		key := d.newKey()
		placeholder := key + "@" + DBField
		addr, err := d.srs.Forward(placeholder)
		if err != nil || addr == placeholder {
			// Only if the SRS domain itself were "_db".
			return "", "", fmt.Errorf("srs store: cannot sign a database-mode address under SRS domain %q: %v", d.srs.Domain(), err)
		}
		switch err := d.st.Put(ctx, key, sender, d.ttl); {
		case err == nil:
			return addr, key, nil
		case !errors.Is(err, ErrKeyExists):
			return "", "", err
		}
	}
	return "", "", fmt.Errorf("%w: %d key collisions in a row", ErrUnavailable, maxCollisions)
}

// Reverse checks a database-mode address (bare) and returns the original
// sender stored for it (the seed's srs_db_address) and its key (srs_db_key,
// also returned with ErrNotFound and ErrUnavailable, for the log). Like
// (*srs.SRS).Reverse it does not look at the domain part: gate it with IsOurs.
//
// Errors, in the order checked:
//
//   - ErrNotDB: not a database-mode address (IsDBAddress is false); an
//     ordinary SRS address goes to (*srs.SRS).Reverse instead;
//   - the errors of (*srs.SRS).Reverse (srs.ErrBadHash, srs.ErrExpired,
//     srs.ErrHashTooShort, srs.ErrBadStamp, srs.ErrBadFormat): forged,
//     damaged or too old, 5xx; the store is not asked;
//   - srs.ErrBadFormat: signed (or use_hash off) but the field is not
//     exactly _db, or the key is not one of NewKey's;
//   - ErrNotFound: no entry for the key (lost with a Redis without
//     persistence, or the store's clock is ahead): 5xx, unknown address;
//   - an error wrapping ErrUnavailable: the store is down: 4xx.
func (d *DB) Reverse(ctx context.Context, addr string) (orig, key string, err error) {
	if !IsDBAddress(addr) {
		return "", "", ErrNotDB
	}
	back, err := d.srs.Reverse(addr)
	if err != nil {
		return "", "", err
	}
	// back is <key>@_db, in the case the address was written in: MTAs may
	// fold the case of local parts, and keys are lower-case base32.
	at := strings.LastIndexByte(back, '@')
	if !strings.EqualFold(back[at+1:], DBField) {
		return "", "", fmt.Errorf("%w: database field %q is not %s", srs.ErrBadFormat, back[at+1:], DBField)
	}
	key = strings.ToLower(back[:at])
	if !validKey(key) {
		return "", "", fmt.Errorf("%w: database key %q is not one of ours", srs.ErrBadFormat, key)
	}
	orig, err = d.st.Get(ctx, key)
	if err != nil {
		return "", key, err
	}
	return orig, key, nil
}

// IsDBAddress reports whether addr (bare; the domain part is ignored) is
// shaped like a database-mode address: SRS0 in any case, any separator
// (= + -), then hash=stamp=_domainfield=rest, the domain field starting with
// an underscore (ours is _db; no real domain starts with one). Nothing is
// checked beyond the shape. Every address it accepts belongs to DB.Reverse,
// never to (*srs.SRS).Reverse, which would turn it into the recipient
// <key>@_db.
func IsDBAddress(addr string) bool {
	local := addr
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		local = addr[:at]
	}
	if len(local) < 5 || !strings.EqualFold(local[:4], "SRS0") {
		return false
	}
	switch local[4] {
	case '=', '+', '-':
	default:
		return false
	}
	f := strings.SplitN(local[5:], "=", 4)
	return len(f) == 4 && strings.HasPrefix(f[2], "_")
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f {
			return true
		}
	}
	return false
}
