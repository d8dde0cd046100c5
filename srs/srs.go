// Package srs implements the Sender Rewriting Scheme in its "Guarded" form,
// byte for byte as libsrs2 (postsrsd 1.x) and Perl's Mail::SRS write and read it.
//
// A forwarded sender user@orig.example becomes
//
//	SRS0=HHHH=TT=orig.example=user@<srs domain>
//
// where TT is the day stamp (days since 1970 mod 1024, two base32 letters) and
// HHHH the first HashLength characters of base64(HMAC-SHA1(secret,
// lower(TT + "orig.example" + "user"))). A sender that is already SRS0 becomes
//
//	SRS1=HHHH=hop1.example==HHHH=TT=orig.example=user@<srs domain>
//
// signed over lower("hop1.example" + "=HHHH=TT=orig.example=user"); an SRS1
// sender is re-signed under our domain, keeping its first hop, so a chain of
// forwarders never grows the address past one SRS1 layer. Reversing an SRS1
// address gives the first hop's SRS0 address back: only that hop can check its
// stamp, so there is none to check here (as in libsrs2 and Mail::SRS).
//
// The rules where the reference implementations could differ, and which one
// this package follows, are in README.md ("Facts"). In short: the hash compare
// is case-insensitive and in constant time; a hash longer than HashLength is
// cut to HashLength (postsrsd; Mail::SRS would instead check the extra
// characters); a stamp exactly MaxAge days old is valid, one day more is
// expired; the hash is checked before the stamp's age, so "expired" is only
// ever said of an address we really signed.
//
// An *SRS is immutable after New and safe for concurrent use.
package srs

import (
	"crypto/hmac"
	"crypto/sha1" // SRS is defined on HMAC-SHA1: compatibility, not choice
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
	"time"
)

// Defaults, from the seed's libsrs_alt options (srs_hashlength, srs_maxage).
// postsrsd and Mail::SRS use 4 and 21 days; set HashLength and MaxAge to
// interoperate with a peer that shares our secrets.
const (
	DefaultHashLength = 6
	DefaultMaxAge     = 31 * Day
	DefaultSeparator  = '='
)

// Day is the unit of MaxAge: stamps count whole UTC days.
const Day = 24 * time.Hour

const (
	// minHashLength is the floor for HashLength and HashMin: 4 base64
	// characters (24 bits, about 1 in 2^20 after case folding) is the shortest
	// default any reference implementation ships. Shorter hashes make forging
	// a bounce path a matter of a few hundred thousand tries.
	minHashLength = 4
	// maxHashLength: base64 of the 20-byte HMAC-SHA1 has 27 significant
	// characters; the 28th is padding.
	maxHashLength = 27
	// stampSlots is the stamp's range: two base32 letters, 10 bits.
	stampSlots = 1024
	// maxDigest is the full base64 encoding of an HMAC-SHA1 (with padding).
	maxDigest = 28
)

const base32Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

// Options configures an SRS rewriter. The zero value of every field except
// Domain and Secrets means "the default".
type Options struct {
	// Domain is the SRS domain written after the @ of every rewritten
	// address, e.g. fwd.example.org. It must route back to this system.
	Domain string

	// Secrets: the first signs, all verify. To rotate, put the new secret
	// first and keep the old one after it for at least MaxAge.
	Secrets []string

	// HashLength is the number of base64 characters of the HMAC written into
	// addresses: default 6 (srs_hashlength); postsrsd and Mail::SRS use 4.
	// Between 4 and 27.
	HashLength int

	// HashMin is the shortest hash accepted on reverse: default HashLength.
	// Lower it below HashLength only while addresses signed with a shorter
	// hash are still in flight (e.g. after raising HashLength).
	HashMin int

	// MaxAge is how long a rewritten sender stays valid for bounces, in whole
	// days: default 31 (srs_maxage); postsrsd uses 21. At most 1023 days,
	// since stamps repeat every 1024 days.
	MaxAge time.Duration

	// UseHash (srs_usehash), nil meaning true. False stops Reverse from
	// checking hashes: anyone can then send mail through this host to any
	// address by writing an SRS0 address for it, i.e. an open relay for
	// bounces. Only for a migration, never in normal operation. Forward
	// always signs, so turning it back on needs no new addresses.
	UseHash *bool

	// UseTimestamp (srs_usetimestamp), nil meaning true. False stops
	// Reverse from checking the stamp's age (its syntax is still checked);
	// Forward always writes a stamp, since postsrsd and Mail::SRS cannot read
	// an address without one (libsrs_alt, where this option comes from,
	// dropped the field instead).
	UseTimestamp *bool

	// Separator is the character right after SRS0/SRS1: '=' (default), '+'
	// or '-'. Reverse accepts all three, whatever this says.
	Separator byte

	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// SRS rewrites senders (Forward) and checks and undoes rewritten addresses
// (Reverse). Build it with New.
type SRS struct {
	domain     string
	secrets    [][]byte
	macs       []*sync.Pool // per secret: *macState, keyed once
	hashLen    int
	hashMin    int
	maxAgeDays int
	useHash    bool
	useStamp   bool
	sep        byte
	now        func() time.Time
}

// macState is an HMAC keyed with one secret plus scratch space for the
// lower-cased input; pooled because keying HMAC costs two SHA-1 blocks and
// several allocations, more than hashing an address.
type macState struct {
	mac hash.Hash
	buf []byte
	sum []byte
}

// OptionError is a problem with one option of Options; ConfigField names
// the option as the srs: configuration section spells it, so the loader
// reports it at that key's line.
type OptionError struct {
	Field string
	Msg   string
}

func (e *OptionError) Error() string { return "srs: " + e.Msg }

// ConfigField is the configuration key of the option.
func (e *OptionError) ConfigField() string { return e.Field }

// New checks o and returns a rewriter. Every problem found is reported, joined
// into one error.
func New(o Options) (*SRS, error) {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, &OptionError{Field: field, Msg: fmt.Sprintf(format, a...)})
	}

	domain := o.Domain
	switch {
	case domain == "":
		bad("domain", "domain is required")
	case strings.ContainsAny(domain, "@="):
		bad("domain", "domain %q: must be a plain domain (no @ or =)", domain)
	case !printableASCII(domain):
		bad("domain", "domain %q: must be printable ASCII without spaces (use the A-label of an IDN)", domain)
	}

	if len(o.Secrets) == 0 {
		bad("secrets", "at least one secret is required")
	}
	secrets := make([][]byte, 0, len(o.Secrets))
	for i, sec := range o.Secrets {
		if sec == "" {
			bad("secrets", "secret %d is empty", i+1)
			continue
		}
		secrets = append(secrets, []byte(sec))
	}

	hashLen := o.HashLength
	if hashLen == 0 {
		hashLen = DefaultHashLength
	}
	hashLenOK := hashLen >= minHashLength && hashLen <= maxHashLength
	if !hashLenOK {
		bad("hash_length", "hash_length %d: must be between %d and %d", hashLen, minHashLength, maxHashLength)
	}
	hashMin := o.HashMin
	if hashMin == 0 {
		hashMin = hashLen
	}
	if hashLenOK && (hashMin < minHashLength || hashMin > hashLen) {
		bad("hash_min", "hash_min %d: must be between %d and hash_length (%d)", hashMin, minHashLength, hashLen)
	}

	maxAge := o.MaxAge
	if maxAge == 0 {
		maxAge = DefaultMaxAge
	}
	switch {
	case maxAge < 0:
		bad("max_age", "max_age %v: must be positive", maxAge)
	case maxAge%Day != 0:
		bad("max_age", "max_age %v: must be whole days (stamps count days)", maxAge)
	case maxAge/Day >= stampSlots:
		bad("max_age", "max_age %v: must be under %d days (stamps repeat every %d days)", maxAge, stampSlots, stampSlots)
	}

	sep := o.Separator
	if sep == 0 {
		sep = DefaultSeparator
	}
	if !isSeparator(sep) {
		bad("separator", "separator %q: must be one of = + -", sep)
	}

	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	now := o.Now
	if now == nil {
		now = time.Now
	}
	s := &SRS{
		domain:     domain,
		secrets:    secrets,
		hashLen:    hashLen,
		hashMin:    hashMin,
		maxAgeDays: int(maxAge / Day),
		useHash:    o.UseHash == nil || *o.UseHash,
		useStamp:   o.UseTimestamp == nil || *o.UseTimestamp,
		sep:        sep,
		now:        now,
	}
	for _, key := range secrets {
		s.macs = append(s.macs, &sync.Pool{New: func() any {
			return &macState{mac: hmac.New(sha1.New, key), buf: make([]byte, 0, 256), sum: make([]byte, 0, sha1.Size)}
		}})
	}
	return s, nil
}

// Domain returns the SRS domain.
func (s *SRS) Domain() string { return s.domain }

// Forward rewrites an envelope sender (bare, without angle brackets):
//
//   - a plain address becomes SRS0 (stamped today);
//   - an SRS0 address (SRS0 followed by =, + or -, any case) becomes SRS1,
//     its domain becoming the first hop;
//   - a well-formed SRS1 address is re-signed as SRS1 under our domain,
//     keeping its first hop and the rest unchanged. A malformed one (where
//     libsrs2 gives up) is wrapped in SRS0 like any plain address, which
//     always reverses to exactly the sender we were given.
//
// The null sender ("" or "<>") is never rewritten: ErrNullSender. An address
// at the SRS domain itself comes back unchanged with a nil error (as with
// libsrs2 and Mail::SRS); callers that must not rewrite local, excluded or
// already-rewritten senders check that first (IsOurs helps).
//
// Addresses are split at the last @. A local part containing @ (possible when
// quoted), an empty local part or domain, or a domain containing = is
// ErrBadAddress: the hash covers the fields without separators, so a = in the
// domain would make the address reverse to a different sender. Anything else
// in the local part, including quotes, = and +, is carried through byte for
// byte, as the reference implementations do.
func (s *SRS) Forward(sender string) (string, error) {
	if sender == "" || sender == "<>" {
		return "", ErrNullSender
	}
	at := strings.LastIndexByte(sender, '@')
	if at < 0 {
		return "", fmt.Errorf("%w: no @", ErrBadAddress)
	}
	local, host := sender[:at], sender[at+1:]
	switch {
	case local == "":
		return "", fmt.Errorf("%w: empty local part", ErrBadAddress)
	case host == "":
		return "", fmt.Errorf("%w: empty domain", ErrBadAddress)
	case strings.IndexByte(local, '@') >= 0:
		return "", fmt.Errorf("%w: @ in the local part", ErrBadAddress)
	case strings.IndexByte(host, '=') >= 0:
		return "", fmt.Errorf("%w: = in the domain", ErrBadAddress)
	}
	if sameDomain(host, s.domain) {
		return sender, nil
	}

	switch tag(local) {
	case '1':
		if _, hop, rest, err := splitSRS1(local[5:]); err == nil {
			return s.srs1(hop, rest), nil
		}
	case '0':
		// The hop is the SRS0 address's domain; the rest keeps its own
		// separator, so "SRS0=..." becomes "...=hop==...".
		return s.srs1(host, local[4:]), nil
	}

	stamp := makeStamp(s.day())
	var digest [maxDigest]byte
	s.hash(0, &digest, stamp, host, local)
	var b strings.Builder
	b.Grow(5 + s.hashLen + 1 + 2 + 1 + len(host) + 1 + len(local) + 1 + len(s.domain))
	b.WriteString("SRS0")
	b.WriteByte(s.sep)
	b.Write(digest[:s.hashLen])
	b.WriteByte('=')
	b.WriteString(stamp)
	b.WriteByte('=')
	b.WriteString(host)
	b.WriteByte('=')
	b.WriteString(local)
	b.WriteByte('@')
	b.WriteString(s.domain)
	return b.String(), nil
}

func (s *SRS) srs1(hop, rest string) string {
	var digest [maxDigest]byte
	s.hash(0, &digest, hop, rest)
	var b strings.Builder
	b.Grow(5 + s.hashLen + 1 + len(hop) + 1 + len(rest) + 1 + len(s.domain))
	b.WriteString("SRS1")
	b.WriteByte(s.sep)
	b.Write(digest[:s.hashLen])
	b.WriteByte('=')
	b.WriteString(hop)
	b.WriteByte('=')
	b.WriteString(rest)
	b.WriteByte('@')
	b.WriteString(s.domain)
	return b.String()
}

// Reverse checks an SRS address (bare, without angle brackets) and returns
// what it stands for: the original sender for SRS0, the first hop's SRS0
// address (tag written "SRS0") for SRS1. The domain part is not looked at, as
// in libsrs2 and Mail::SRS: callers that must only reverse addresses at the
// SRS domain check IsOurs first.
//
// Errors match one of the sentinels with errors.Is; Reason and StatusOf turn
// them into a log/metric label and the seed's srs_status. The checks run in
// this order: tag and separator, structure, stamp syntax, hash length, hash,
// stamp age.
func (s *SRS) Reverse(addr string) (string, error) {
	local := addr
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		local = addr[:at]
	}
	kind := tag(local)
	switch {
	case kind == 0:
		return "", ErrNotSRS
	case kind == '?':
		return "", fmt.Errorf("%w %q", ErrUnknownSeparator, local[4])
	case strings.IndexByte(local, '@') >= 0:
		return "", fmt.Errorf("%w: @ in the local part", ErrBadFormat)
	}

	if kind == '1' {
		hash, hop, rest, err := splitSRS1(local[5:])
		if err != nil {
			return "", err
		}
		if err := s.checkHash(hash, hop, rest); err != nil {
			return "", err
		}
		return "SRS0" + rest + "@" + hop, nil
	}

	hash, stamp, host, user, err := splitSRS0(local[5:])
	if err != nil {
		return "", err
	}
	then, ok := parseStamp(stamp)
	if !ok {
		return "", fmt.Errorf("%w %q", ErrBadStamp, stamp)
	}
	if err := s.checkHash(hash, stamp, host, user); err != nil {
		return "", err
	}
	if s.useStamp {
		if age := stampAge(s.day(), then); age > s.maxAgeDays {
			if age > stampSlots-1-s.maxAgeDays {
				// Not plausibly old: a stamp from the future (clock skew
				// between forwarders, or a forgery that guessed the hash).
				return "", fmt.Errorf("%w: stamp %s is %d days ahead", ErrExpired, stamp, stampSlots-age)
			}
			return "", fmt.Errorf("%w: stamp %s is %d days old, max_age is %d", ErrExpired, stamp, age, s.maxAgeDays)
		}
	}
	return user + "@" + host, nil
}

// IsOurs reports whether addr's domain is the SRS domain (ASCII case and one
// trailing dot ignored): a sender that needs no rewriting, or a recipient that
// Reverse should look at.
func (s *SRS) IsOurs(addr string) bool {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return false
	}
	return sameDomain(addr[at+1:], s.domain)
}

func sameDomain(a, b string) bool {
	return equalFoldASCII(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, "."))
}

// IsSRS reports whether addr's local part starts like an SRS address: SRS0 or
// SRS1 (any case) followed by =, + or -. It says nothing about validity.
func IsSRS(addr string) bool {
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		addr = addr[:at]
	}
	k := tag(addr)
	return k == '0' || k == '1'
}

// tag classifies a local part: '0' or '1' for SRS0/SRS1 followed by a known
// separator, '?' for SRS0/SRS1 followed by anything else, 0 for the rest.
func tag(local string) byte {
	if len(local) < 5 || !equalFoldASCII(local[:3], "SRS") || (local[3] != '0' && local[3] != '1') {
		return 0
	}
	if !isSeparator(local[4]) {
		return '?'
	}
	return local[3]
}

// splitSRS1 splits what follows "SRS1<sep>": HASH=hop=rest. The rest is the
// first hop's SRS0 local part without "SRS0", so it starts with a separator.
// Forward and Reverse share it, so every SRS1 address we write, we can read.
func splitSRS1(body string) (hash, hop, rest string, err error) {
	hash, after, ok := strings.Cut(body, "=")
	if !ok {
		return "", "", "", fmt.Errorf("%w: SRS1 without a first hop", ErrBadFormat)
	}
	hop, rest, ok = strings.Cut(after, "=")
	switch {
	case !ok || hop == "":
		return "", "", "", fmt.Errorf("%w: SRS1 without a first hop", ErrBadFormat)
	case rest == "" || !isSeparator(rest[0]):
		return "", "", "", fmt.Errorf("%w: SRS1 whose rest is not an SRS0 address", ErrBadFormat)
	}
	return hash, hop, rest, nil
}

// splitSRS0 splits what follows "SRS0<sep>": HASH=TT=host=user, where only
// user may contain = (the first three are cut at the first = each, as every
// implementation does).
func splitSRS0(body string) (hash, stamp, host, user string, err error) {
	hash, rest, ok1 := strings.Cut(body, "=")
	stamp, rest, ok2 := strings.Cut(rest, "=")
	host, user, ok3 := strings.Cut(rest, "=")
	switch {
	case !ok1 || !ok2 || !ok3:
		return "", "", "", "", fmt.Errorf("%w: SRS0 needs hash, stamp, domain and local part", ErrBadFormat)
	case host == "":
		return "", "", "", "", fmt.Errorf("%w: SRS0 with an empty domain", ErrBadFormat)
	case user == "":
		return "", "", "", "", fmt.Errorf("%w: SRS0 with an empty local part", ErrBadFormat)
	}
	return hash, stamp, host, user, nil
}

// checkHash compares a received hash with ours under every secret. Case is
// ignored on both sides, since MTAs are allowed to fold the case of local
// parts (base64 then loses about 0.8 bits a character, as in libsrs2). A
// hash longer than hashLen is cut to hashLen, as postsrsd does; one between
// hashMin and hashLen is compared over its own length.
func (s *SRS) checkHash(given string, parts ...string) error {
	if !s.useHash {
		return nil
	}
	if len(given) < s.hashMin {
		return fmt.Errorf("%w: %d characters, at least %d required", ErrHashTooShort, len(given), s.hashMin)
	}
	n := min(len(given), s.hashLen)
	var got [maxHashLength]byte
	lowerInto(got[:n], given[:n])
	match := 0
	for i := range s.secrets {
		// Every secret is tried, matched or not: the time taken depends on
		// the number of secrets only.
		var digest [maxDigest]byte
		s.hash(i, &digest, parts...)
		lowerBytes(digest[:n])
		match |= subtle.ConstantTimeCompare(got[:n], digest[:n])
	}
	if match == 1 {
		return nil
	}
	return ErrBadHash
}

// hash writes base64(HMAC-SHA1(secret i, lower(concat(parts)))) into out.
// Lower-casing is ASCII only, like C's tolower in postsrsd and Perl's lc on
// byte strings in Mail::SRS: a UTF-8 local part keeps its non-ASCII bytes.
func (s *SRS) hash(i int, out *[maxDigest]byte, parts ...string) {
	st := s.macs[i].Get().(*macState)
	st.mac.Reset()
	for _, p := range parts {
		st.buf = append(st.buf[:0], p...)
		lowerBytes(st.buf)
		st.mac.Write(st.buf)
	}
	st.sum = st.mac.Sum(st.sum[:0])
	base64.StdEncoding.Encode(out[:], st.sum)
	if cap(st.buf) > 4096 { // do not keep a pathological address's buffer
		st.buf = make([]byte, 0, 256)
	}
	s.macs[i].Put(st)
}

// day is today's number since 1970-01-01, UTC.
func (s *SRS) day() int64 {
	sec := s.now().Unix()
	d := sec / 86400
	if sec%86400 < 0 {
		d--
	}
	return d
}

func makeStamp(day int64) string {
	v := day & (stampSlots - 1)
	return string([]byte{base32Alphabet[v>>5], base32Alphabet[v&31]})
}

// parseStamp reads two base32 letters, either case. Anything else, including
// one or three letters, is rejected (postsrsd calls a wrong length "out of
// date"; it is a syntax error).
func parseStamp(st string) (int, bool) {
	if len(st) != 2 {
		return 0, false
	}
	hi, lo := base32Value(st[0]), base32Value(st[1])
	if hi < 0 || lo < 0 {
		return 0, false
	}
	return hi<<5 | lo, true
}

func base32Value(c byte) int {
	switch {
	case 'A' <= c && c <= 'Z':
		return int(c - 'A')
	case 'a' <= c && c <= 'z':
		return int(c - 'a')
	case '2' <= c && c <= '7':
		return int(c-'2') + 26
	}
	return -1
}

// stampAge is how many days ago a stamp was made, counting around the
// 1024-day cycle: 0..1023. The references compute the same thing by adding
// 1024 to today until it is not below the stamp.
func stampAge(today int64, then int) int {
	return (int(today&(stampSlots-1)) - then + stampSlots) % stampSlots
}

func isSeparator(c byte) bool { return c == '=' || c == '+' || c == '-' }

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

func lowerBytes(b []byte) {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
}

// lowerInto writes the ASCII lower case of src[:len(dst)] into dst.
func lowerInto(dst []byte, src string) {
	for i := 0; i < len(dst); i++ {
		c := src[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst[i] = c
	}
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
