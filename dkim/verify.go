package dkim

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tollgate/tollgate/internal/dkimsig"
	"github.com/tollgate/tollgate/internal/parsecache"
	"github.com/tollgate/tollgate/internal/resolver"
	"github.com/tollgate/tollgate/internal/sigcrypto"
)

// The verifier below checks one DKIM-Signature in the order go-msgauth
// v0.7.0 does and words its verdicts the same way (README.md "Results"
// maps those words to reasons), so that replacing go-msgauth changed no
// result; go-msgauth stays in the tests as the oracle. What it does
// differently: it takes the body hash from outside (one canonicalisation
// per message, issue #18), canonicalises with internal/dkimsig like arc
// and dkimsign, and verifies through internal/sigcrypto (OpenSSL when
// loaded).

// errKind is how a verdict counts: RFC 8601's permerror, temperror or fail.
type errKind uint8

const (
	permFail errKind = iota
	tempFail
	sigFail
	internalFail // the verifier's own trouble: temperror
)

// sigError is the verdict on a signature that did not pass.
type sigError struct {
	kind errKind
	msg  string
}

func (e *sigError) Error() string { return "dkim: " + e.msg }

func perm(msg string) error { return &sigError{permFail, msg} }

func errorKind(err error) (errKind, bool) {
	var e *sigError
	if errors.As(err, &e) {
		return e.kind, true
	}
	return 0, false
}

// readSection splits a header section into its fields the way go-msgauth
// v0.7.0 does (its readHeader, on net/textproto's ReadLine): a line ends
// at LF, one CR before it dropped; a line starting with SP or HT
// continues the field before; the section ends at the first empty line.
// Each field keeps its folds and ends in CRLF.
func readSection(section []byte) []string {
	var fields []string
	for len(section) > 0 {
		line := section
		if i := bytes.IndexByte(section, '\n'); i >= 0 {
			line, section = section[:i], section[i+1:]
		} else {
			section = nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) == 0 {
			break
		}
		if len(fields) > 0 && (line[0] == ' ' || line[0] == '\t') {
			fields[len(fields)-1] += string(line) + "\r\n"
		} else {
			fields = append(fields, string(line)+"\r\n")
		}
	}
	return fields
}

// splitField returns a field's name and value, both trimmed.
func splitField(field string) (string, string) {
	k, v, _ := strings.Cut(field, ":")
	return strings.TrimSpace(k), strings.TrimSpace(v)
}

// signature is one DKIM-Signature, read and checked as far as it can be
// without its key.
type signature struct {
	field    string // the whole field, folds and CRLF included
	params   map[string]string
	domain   string // d=, whitespace removed
	selector string
	err      error // the verdict already known, before any key lookup
	noQuery  bool  // q= names no method this verifier knows
	// auidSubdomain: i= is in a subdomain of d=, which a key with t=s
	// refuses.
	auidSubdomain bool

	// What the body hash needs, valid when needsBody.
	needsBody bool
	bodyCanon dkimsig.Canon
	hdrCanon  dkimsig.Canon
	hash      crypto.Hash
	headers   []string // h=
	keyAlgo   string   // from a=
	hashAlgo  string
	bh, b     []byte
	bhErr     error // bh= is not base64
	bErr      error // b= is not base64
}

// parseParams reads a tag list as go-msgauth v0.7.0 does.
func parseParams(s string) (map[string]string, error) {
	params := make(map[string]string)
	for spec := range strings.SplitSeq(s, ";") {
		key, value, ok := strings.Cut(spec, "=")
		if !ok {
			if strings.TrimSpace(spec) == "" {
				continue
			}
			return params, errors.New("dkim: malformed header params")
		}
		key = strings.TrimSpace(key)
		if _, dup := params[key]; dup {
			return params, errors.New("dkim: duplicate tag name")
		}
		params[key] = strings.TrimSpace(value)
	}
	return params, nil
}

func stripWhitespace(s string) string {
	ascii, space := true, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		ascii = ascii && c < utf8.RuneSelf
		space = space || asciiSpace[c]
	}
	if ascii {
		if !space {
			return s
		}
		b := make([]byte, 0, len(s))
		for i := 0; i < len(s); i++ {
			if !asciiSpace[s[i]] {
				b = append(b, s[i])
			}
		}
		return string(b)
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s)
}

// asciiSpace marks the ASCII bytes unicode.IsSpace reports.
var asciiSpace = [256]bool{'\t': true, '\n': true, '\v': true, '\f': true, '\r': true, ' ': true}

func parseList(s string) []string {
	l := strings.Split(s, ":")
	for i, t := range l {
		l[i] = stripWhitespace(t)
	}
	return l
}

func parseUnixTime(s string) (time.Time, error) {
	sec, err := strconv.ParseInt(stripWhitespace(s), 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(sec, 0), nil
}

// parseCanonicalization reads c= as go-msgauth does: an empty part is
// simple, anything but simple or relaxed is not ok.
func parseCanonicalization(s string) (hdr, body dkimsig.Canon, hdrOK, bodyOK bool) {
	cans := strings.SplitN(stripWhitespace(s), "/", 2)
	hdr, hdrOK = dkimsig.Simple, true
	if cans[0] != "" {
		hdr, hdrOK = canonByName(cans[0])
	}
	body, bodyOK = dkimsig.Simple, true
	if len(cans) > 1 {
		body, bodyOK = canonByName(cans[1])
	}
	return
}

func canonByName(v string) (dkimsig.Canon, bool) {
	switch v {
	case "simple":
		return dkimsig.Simple, true
	case "relaxed":
		return dkimsig.Relaxed, true
	}
	return 0, false
}

var requiredTags = []string{"v", "a", "b", "bh", "d", "h", "s"}

// parseSignature checks what go-msgauth checks before it looks up the key,
// and works out what the body hash will be, if the signature can pass.
func parseSignature(field string, now time.Time) *signature {
	_, value := splitField(field)
	s := &signature{field: field}
	params, err := parseParams(value)
	if err != nil {
		s.err = perm("malformed signature tags: " + err.Error())
		return s
	}
	s.params = params
	if params["v"] != "1" {
		s.err = perm("incompatible signature version")
		return s
	}
	s.domain = stripWhitespace(params["d"])
	for _, tag := range requiredTags {
		if _, ok := params[tag]; !ok {
			s.err = perm("signature missing required tag")
			return s
		}
	}
	s.selector = stripWhitespace(params["s"])
	if i, ok := params["i"]; ok {
		auid := stripWhitespace(i)
		s.auidSubdomain = !strings.HasSuffix(auid, "@"+s.domain)
		if s.auidSubdomain && !strings.HasSuffix(auid, "."+s.domain) {
			s.err = perm("domain mismatch")
			return s
		}
	}
	s.headers = parseList(params["h"])
	from := false
	for _, k := range s.headers {
		from = from || strings.EqualFold(k, "from")
	}
	if !from {
		s.err = perm("From field not signed")
		return s
	}
	if ts, ok := params["t"]; ok {
		if _, err := parseUnixTime(ts); err != nil {
			s.err = perm("malformed time: " + err.Error())
			return s
		}
	}
	if xs, ok := params["x"]; ok {
		x, err := parseUnixTime(xs)
		if err != nil {
			s.err = perm("malformed expiration time: " + err.Error())
			return s
		}
		if now.After(x) {
			s.err = perm("signature has expired")
			return s
		}
	}
	s.noQuery = true
	methods := []string{"dns/txt"}
	if q, ok := params["q"]; ok {
		methods = parseList(q)
	}
	for _, m := range methods {
		if m == "dns/txt" {
			s.noQuery = false
			break
		}
	}
	if s.noQuery {
		return s
	}

	// What follows is checked after the key in go-msgauth's order (a key
	// error wins), so it is only noted here: the body is hashed for this
	// signature only when nothing but the key and the hashes can fail it.
	keyAlgo, hashAlgo, ok := strings.Cut(stripWhitespace(params["a"]), "-")
	s.keyAlgo, s.hashAlgo = keyAlgo, hashAlgo
	hdr, body, hdrOK, bodyOK := parseCanonicalization(params["c"])
	s.hdrCanon, s.bodyCanon = hdr, body
	_, hasL := params["l"]
	bh, errBH := base64.StdEncoding.DecodeString(stripWhitespace(params["bh"]))
	b, errB := base64.StdEncoding.DecodeString(stripWhitespace(params["b"]))
	s.bh, s.b, s.bhErr, s.bErr = bh, b, errBH, errB
	s.hash = crypto.SHA256
	s.needsBody = ok && hashAlgo == "sha256" && (keyAlgo == "rsa" || keyAlgo == "ed25519") &&
		hdrOK && bodyOK && !hasL && errBH == nil && errB == nil
	return s
}

// keyName is where the signature's key record is.
func (s *signature) keyName() string { return s.selector + "._domainkey." + s.domain }

// needsKey: the verdict depends on the key record.
func (s *signature) needsKey() bool { return s.err == nil && !s.noQuery }

// finish gives the verdict of a signature whose key lookup gave key or
// keyErr, with the body hash sum (nil when it was not computed), over the
// header section fields.
func (s *signature) finish(fields []string, key *keyRecord, keyErr error, bodySum []byte) error {
	if s.err != nil {
		return s.err
	}
	if s.noQuery {
		return perm("unsupported public key query method")
	}
	if keyErr != nil {
		return keyErr
	}
	if _, _, ok := strings.Cut(stripWhitespace(s.params["a"]), "-"); !ok {
		return perm("malformed algorithm name")
	}
	if key.hashAlgos != nil && !contains(key.hashAlgos, s.hashAlgo) {
		return perm("inappropriate hash algorithm")
	}
	switch s.hashAlgo {
	case "sha1":
		// RFC 8301 §3.1: rsa-sha1 MUST NOT be used for verifying.
		return perm("hash algorithm too weak: sha1")
	case "sha256":
	default:
		return perm("unsupported hash algorithm")
	}
	if key.keyAlgo != s.keyAlgo {
		return perm("inappropriate key algorithm")
	}
	if key.services != nil && !contains(key.services, "email") {
		return perm("inappropriate service")
	}
	if key.strict && s.auidSubdomain {
		// RFC 6376 §3.6.1 t=s: i= MUST be in d= itself. go-msgauth
		// ignores the flag; OpenDKIM and dkimpy do not.
		return perm("domain mismatch: the key's t=s wants i= in d= itself, not a subdomain")
	}
	_, _, hdrOK, bodyOK := parseCanonicalization(s.params["c"])
	if !hdrOK {
		return perm("unsupported header canonicalization algorithm")
	}
	if !bodyOK {
		return perm("unsupported body canonicalization algorithm")
	}
	if _, ok := s.params["l"]; ok {
		// l= leaves part of the body unsigned; go-msgauth refuses it, and
		// so does this (classify makes it policy).
		return &sigError{sigFail, "message contains an insecure body length tag"}
	}
	if s.bhErr != nil {
		return perm("malformed body hash: " + s.bhErr.Error())
	}
	if s.bErr != nil {
		return perm("malformed signature: " + s.bErr.Error())
	}
	if bodySum == nil || subtle.ConstantTimeCompare(bodySum, s.bh) != 1 {
		return &sigError{sigFail, "body hash did not verify"}
	}
	digest := s.headerHash(fields)
	if key.key.Verify(digest, s.b) != nil {
		// go-msgauth's words, which carry its crypto library's
		if key.keyAlgo == "rsa" {
			return &sigError{sigFail, "signature did not verify: crypto/rsa: verification error"}
		}
		return &sigError{sigFail, "signature did not verify: dkim: invalid Ed25519 signature"}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// headerHash is the SHA-256 of the signed header fields (RFC 6376 §3.7):
// each name of h= picks the lowest instance not yet picked, a name with
// none left contributes nothing, and the signature's own field comes last
// with b= emptied and without its CRLF.
func (s *signature) headerHash(fields []string) []byte {
	// Fields by lower-case name, bottom-up: a long h= over many fields
	// costs their sum, not their product.
	byName := make(map[string][]int, len(fields))
	for i := len(fields) - 1; i >= 0; i-- {
		k, _ := splitField(fields[i])
		k = strings.ToLower(k)
		byName[k] = append(byName[k], i)
	}
	buf := make([]byte, 0, 1024)
	for _, name := range s.headers {
		lower := strings.ToLower(name)
		if idx := byName[lower]; len(idx) > 0 {
			buf = appendField(buf, s.hdrCanon, fields[idx[0]])
			byName[lower] = idx[1:]
		}
	}
	buf = appendField(buf, s.hdrCanon, emptyB(s.field))
	buf = buf[:len(buf)-2]
	sum := sha256.Sum256(buf)
	return sum[:]
}

// appendField appends one field, read with its CRLF, canonicalized.
func appendField(dst []byte, c dkimsig.Canon, field string) []byte {
	name, value, _ := strings.Cut(strings.TrimSuffix(field, "\r\n"), ":")
	return dkimsig.AppendHeader(dst, c, name, value)
}

// emptyB returns a DKIM-Signature field with the value of its b= tag
// removed, the whitespace around it too (RFC 6376 §3.7); the other tags,
// bh= among them, stay as they are.
func emptyB(field string) string {
	name, value, ok := strings.Cut(field, ":")
	if !ok {
		return field
	}
	var out strings.Builder
	out.WriteString(name)
	out.WriteByte(':')
	for i, spec := range strings.Split(value, ";") {
		if i > 0 {
			out.WriteByte(';')
		}
		if tag, _, hasEq := strings.Cut(spec, "="); hasEq && strings.TrimSpace(tag) == "b" {
			// the value and the whitespace after it, up to the next tag
			// or the end of the field, CRLF included
			out.WriteString(spec[:len(tag)+1])
			continue
		}
		out.WriteString(spec)
	}
	return out.String()
}

// keyRecord is a DKIM key record (RFC 6376 §3.6.1) with its key made into
// the crypto library's key object.
type keyRecord struct {
	key       sigcrypto.PublicKey
	keyAlgo   string   // rsa or ed25519
	hashAlgos []string // h=, nil for any
	services  []string // s=, nil for any
	strict    bool     // t= has s: no i= in a subdomain of d=
}

// keyCache keeps parsed key records by their text (internal/parsecache),
// so that a key used by many messages is decoded and made into a key
// object once; the DNS cache decides how long a record is used.
type keyCache = parsecache.Cache[*keyRecord]

// parseKeyRecord reads a key record as go-msgauth v0.7.0 does, with its
// words for what is wrong.
func parseKeyRecord(txt string) (*keyRecord, error) {
	params, err := parseParams(txt)
	if err != nil {
		return nil, perm("key record error: " + err.Error())
	}
	if v, ok := params["v"]; ok && v != "DKIM1" {
		return nil, perm("incompatible public key version")
	}
	p, ok := params["p"]
	if !ok {
		return nil, perm("key syntax error: missing public key data")
	}
	if p == "" {
		return nil, perm("key revoked")
	}
	der, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(p, " ", ""))
	if err != nil {
		return nil, perm("key syntax error: " + err.Error())
	}
	rec := &keyRecord{}
	var pub crypto.PublicKey
	switch params["k"] {
	case "rsa", "":
		parsed, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			// RFC 6376 erratum 3017: some publish the bare RSAPublicKey.
			var err1 error
			if parsed, err1 = x509.ParsePKCS1PublicKey(der); err1 != nil {
				return nil, perm("key syntax error: " + err1.Error())
			}
		}
		rk, ok := parsed.(*rsa.PublicKey)
		if !ok {
			return nil, perm("key syntax error: not an RSA public key")
		}
		if rk.Size()*8 < DefaultMinRSABits { // RFC 8301 §3.2
			return nil, perm(fmt.Sprintf("key is too short: want 1024 bits, has %v bits", rk.Size()*8))
		}
		pub, rec.keyAlgo = rk, "rsa"
	case "ed25519":
		if len(der) != ed25519.PublicKeySize {
			return nil, perm(fmt.Sprintf("invalid Ed25519 public key size: %v bytes", len(der)))
		}
		pub, rec.keyAlgo = ed25519.PublicKey(der), "ed25519"
	default:
		return nil, perm("unsupported key algorithm")
	}
	if h, ok := params["h"]; ok {
		rec.hashAlgos = parseList(h)
	}
	if s, ok := params["s"]; ok {
		if l := parseList(s); !contains(l, "*") {
			rec.services = l
		}
	}
	if t, ok := params["t"]; ok {
		rec.strict = contains(parseList(t), "s")
	}
	k, err := sigcrypto.NewPublicKey(pub)
	if err != nil {
		return nil, perm("key syntax error: " + err.Error())
	}
	rec.key = k
	return rec, nil
}

// lookupKey fetches and parses the key record at name, the lookup bounded
// by timeout. A temporary DNS failure is a temperror, any other failure a
// permerror, worded as go-msgauth words them.
func lookupKey(ctx context.Context, r resolver.Resolver, cache *keyCache, name string, timeout time.Duration, minRSABits int) (*keyRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	txts, err := r.LookupTXT(ctx, name)
	if err != nil {
		var dnsErr *net.DNSError
		if !errors.As(err, &dnsErr) {
			dnsErr = &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true, IsTimeout: ctx.Err() != nil}
		}
		if dnsErr.Temporary() {
			return nil, &sigError{tempFail, "key unavailable: " + dnsErr.Error()}
		}
		return nil, perm("no key for signature: " + dnsErr.Error())
	}
	switch len(txts) {
	case 0:
		return nil, perm("no valid key found")
	case 1:
	default:
		return nil, perm("multiple TXT records found for key")
	}
	if minRSABits > DefaultMinRSABits {
		if bits := rsaKeyBits(txts[0]); bits > 0 && bits < minRSABits {
			short := &net.DNSError{Err: fmt.Sprintf("%v: %d bits, min_rsa_bits is %d", errKeyTooShort, bits, minRSABits), Name: name}
			return nil, perm("no key for signature: " + short.Error())
		}
	}
	return cache.Parse(txts[0], parseKeyRecord)
}
