package arc

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/tollgate/tollgate/internal/keyfile"
)

// Algorithms this package signs and verifies (RFC 8617 §4.1.3 allows only
// rsa-sha256; RFC 8463 adds ed25519-sha256 to DKIM, which ARC inherits).
const (
	AlgRSASHA256     = "rsa-sha256"
	AlgEd25519SHA256 = "ed25519-sha256"
)

// ErrKey is wrapped by key loading and parsing errors.
var ErrKey = errors.New("arc: key")

// publicKey is a parsed DKIM key record (RFC 6376 §3.6.1).
type publicKey struct {
	rsa     *rsa.PublicKey
	ed      ed25519.PublicKey
	bits    int
	revoked bool
}

// parseKeyRecord parses one TXT record as a DKIM key record.
// Line breaks count as plain whitespace: in DNS data they are not header
// folds, and dkimpy and Mail::DKIM accept them.
func parseKeyRecord(txt string) (*publicKey, error) {
	txt = strings.NewReplacer("\r", " ", "\n", " ").Replace(txt)
	tags, err := parseTagList(txt)
	if err != nil {
		return nil, err
	}
	// RFC 6376 wants v= first when present; dkimpy and OpenARC do not
	// insist, and neither does this.
	if v, ok := tags.get("v"); ok && v != "DKIM1" {
		return nil, errors.New("v= is not DKIM1")
	}
	if h, ok := tags.get("h"); ok && !listHas(h, "sha256") {
		return nil, errors.New("h= excludes sha256")
	}
	if s, ok := tags.get("s"); ok && !listHas(s, "*") && !listHas(s, "email") {
		return nil, errors.New("s= excludes email")
	}
	p, ok := tags.get("p")
	if !ok {
		return nil, errors.New("no p=")
	}
	k, ok := tags.get("k")
	if !ok {
		k = "rsa"
	}
	if stripFWS(p) == "" {
		return &publicKey{revoked: true}, nil
	}
	raw, err := decodeB64(p)
	if err != nil {
		return nil, fmt.Errorf("p= is not base64: %v", err)
	}
	switch k {
	case "rsa":
		pub, err := x509.ParsePKIXPublicKey(raw)
		if err != nil {
			// some publishers put a bare PKCS#1 RSAPublicKey in p=
			pk1, err1 := x509.ParsePKCS1PublicKey(raw)
			if err1 != nil {
				return nil, fmt.Errorf("p= is not an RSA key: %v", err)
			}
			pub = pk1
		}
		rk, ok := pub.(*rsa.PublicKey)
		if !ok {
			return nil, errors.New("p= is not an RSA key")
		}
		return &publicKey{rsa: rk, bits: rk.N.BitLen()}, nil
	case "ed25519":
		if len(raw) != ed25519.PublicKeySize {
			return nil, errors.New("p= is not an ed25519 key")
		}
		return &publicKey{ed: ed25519.PublicKey(raw), bits: 256}, nil
	}
	return nil, fmt.Errorf("unknown k=%s", k)
}

// KeyCache keeps parsed key records by their text, so that a key used by
// many messages is decoded once (base64, DER, the RSA modulus) rather
// than once per message. The text is the key: a changed record is a new
// entry, and the DNS cache decides how long a record is used. Safe for
// concurrent use; bounded, emptied when full.
type KeyCache struct {
	mu  sync.Mutex
	m   map[string]parsedKey
	max int
}

type parsedKey struct {
	key *publicKey
	err error
}

// NewKeyCache returns a cache of at most size records (default 1024).
func NewKeyCache(size int) *KeyCache {
	if size <= 0 {
		size = 1024
	}
	return &KeyCache{m: map[string]parsedKey{}, max: size}
}

// parse is parseKeyRecord through the cache; a nil cache parses.
func (c *KeyCache) parse(txt string) (*publicKey, error) {
	if c == nil {
		return parseKeyRecord(txt)
	}
	c.mu.Lock()
	pk, ok := c.m[txt]
	c.mu.Unlock()
	if ok {
		return pk.key, pk.err
	}
	k, err := parseKeyRecord(txt)
	c.mu.Lock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[txt] = parsedKey{k, err}
	c.mu.Unlock()
	return k, err
}

// listHas reports whether a colon-separated tag value lists want.
func listHas(v, want string) bool {
	for _, e := range strings.Split(stripFWS(v), ":") {
		if e == want {
			return true
		}
	}
	return false
}

// verifySig checks sig over the SHA-256 digest with the key for alg.
func (k *publicKey) verifySig(alg string, digest, sig []byte) bool {
	switch alg {
	case AlgRSASHA256:
		return k.rsa != nil && rsa.VerifyPKCS1v15(k.rsa, crypto.SHA256, digest, sig) == nil
	case AlgEd25519SHA256:
		// RFC 8463 §3: Ed25519 signs the SHA-256 hash, not the data
		return k.ed != nil && ed25519.Verify(k.ed, digest, sig)
	}
	return false
}

// signerAlg returns the ARC algorithm for a signer's public key.
func signerAlg(s crypto.Signer) (string, error) {
	if s == nil {
		return "", fmt.Errorf("%w: no signing key", ErrKey)
	}
	switch pub := s.Public().(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < 1024 {
			return "", fmt.Errorf("%w: RSA key of %d bits is too small to sign (min 1024)", ErrKey, pub.N.BitLen())
		}
		return AlgRSASHA256, nil
	case ed25519.PublicKey:
		return AlgEd25519SHA256, nil
	}
	return "", fmt.Errorf("%w: unsupported key type %T", ErrKey, s.Public())
}

func sign(s crypto.Signer, alg string, digest []byte) ([]byte, error) {
	if alg == AlgEd25519SHA256 {
		return s.Sign(rand.Reader, digest, crypto.Hash(0))
	}
	return s.Sign(rand.Reader, digest, crypto.SHA256)
}

// LoadKeyFile reads a private signing key in the formats keyfile.Load
// accepts (PEM PKCS#1 or PKCS#8, RSA or Ed25519, or a base64 Ed25519
// seed); a file that group or others may access is refused.
func LoadKeyFile(path string) (crypto.Signer, error) {
	k, err := keyfile.Load(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	return k, nil
}

func parsePrivateKey(data []byte) (crypto.Signer, error) { return keyfile.Parse(data) }

// GenerateKey makes a signing key for `tollgate arc keygen` (keyfile.Generate):
// kind "rsa" (bits, default 2048, at least 1024) or "ed25519". It returns
// the key, its PKCS#8 PEM, and the DNS TXT record value to publish at
// <selector>._domainkey.<domain> (use ZoneTXT for a zone-file line).
func GenerateKey(kind string, bits int) (crypto.Signer, []byte, string, error) {
	k, p, txt, err := keyfile.Generate(kind, bits)
	if err != nil {
		return nil, nil, "", fmt.Errorf("%w: %w", ErrKey, err)
	}
	return k, p, txt, nil
}

// ZoneTXT formats a TXT record for a zone file (keyfile.ZoneTXT).
func ZoneTXT(owner, value string) string { return keyfile.ZoneTXT(owner, value) }
