package arc

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/tollgate/tollgate/internal/keyfile"
	"github.com/tollgate/tollgate/internal/parsecache"
	"github.com/tollgate/tollgate/internal/sigcrypto"
)

// Algorithms this package signs and verifies (RFC 8617 §4.1.3 allows only
// rsa-sha256; RFC 8463 adds ed25519-sha256 to DKIM, which ARC inherits).
const (
	AlgRSASHA256     = sigcrypto.RSASHA256
	AlgEd25519SHA256 = sigcrypto.Ed25519SHA256
)

// ErrKey is wrapped by key loading and parsing errors.
var ErrKey = errors.New("arc: key")

// publicKey is a parsed DKIM key record (RFC 6376 §3.6.1), its key made
// once into the crypto library's key object.
type publicKey struct {
	key     sigcrypto.PublicKey
	revoked bool
}

func (k *publicKey) isRSA() bool { return k.key != nil && k.key.Algorithm() == AlgRSASHA256 }

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
		return newPublicKey(rk)
	case "ed25519":
		if len(raw) != ed25519.PublicKeySize {
			return nil, errors.New("p= is not an ed25519 key")
		}
		return newPublicKey(ed25519.PublicKey(raw))
	}
	return nil, fmt.Errorf("unknown k=%s", k)
}

func newPublicKey(pub crypto.PublicKey) (*publicKey, error) {
	k, err := sigcrypto.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return &publicKey{key: k}, nil
}

// KeyCache keeps parsed key records by their text (internal/parsecache),
// so that a key used by many messages is decoded once into the crypto
// library's key object rather than once per message. Safe for concurrent
// use; a nil *KeyCache parses every time.
type KeyCache = parsecache.Cache[*publicKey]

// NewKeyCache returns a cache of at most size records (default 1024).
func NewKeyCache(size int) *KeyCache { return parsecache.New[*publicKey](size) }

// listHas reports whether a colon-separated tag value lists want.
func listHas(v, want string) bool {
	for _, e := range strings.Split(stripFWS(v), ":") {
		if e == want {
			return true
		}
	}
	return false
}

// verifySig checks sig over the SHA-256 digest with the key for alg
// (RFC 8463 §3: Ed25519 signs the SHA-256 hash, not the data).
func (k *publicKey) verifySig(alg string, digest, sig []byte) bool {
	return k.key != nil && k.key.Algorithm() == alg && k.key.Verify(digest, sig) == nil
}

// signerAlg returns the ARC algorithm for a signing key.
func signerAlg(s sigcrypto.Signer) (string, error) {
	if s == nil {
		return "", fmt.Errorf("%w: no signing key", ErrKey)
	}
	return s.Algorithm(), nil
}

// LoadKeyFile reads a private signing key in the formats keyfile.Load
// accepts (PEM PKCS#1 or PKCS#8, RSA or Ed25519, or a base64 Ed25519
// seed); a file that group or others may access is refused: a signing key
// lets anyone vouch for mail as the domain.
//
// The key is parsed here, once per load or reload, into the key object
// of the crypto library in use (sigcrypto.Default).
func LoadKeyFile(path string) (sigcrypto.Signer, error) {
	k, err := keyfile.Load(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	s, err := sigcrypto.NewSigner(k)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrKey, path, err)
	}
	return s, nil
}

// GenerateKey makes a signing key for `tollgate arc keygen` (keyfile.Generate):
// kind "rsa" (bits, default 2048, at least 1024) or "ed25519". It returns
// the key, its PKCS#8 PEM, and the DNS TXT record value to publish at
// <selector>._domainkey.<domain> (use ZoneTXT for a zone-file line).
func GenerateKey(kind string, bits int) (sigcrypto.Signer, []byte, string, error) {
	k, p, txt, err := keyfile.Generate(kind, bits)
	if err != nil {
		return nil, nil, "", fmt.Errorf("%w: %w", ErrKey, err)
	}
	s, err := sigcrypto.NewSigner(k)
	if err != nil {
		return nil, nil, "", fmt.Errorf("%w: %v", ErrKey, err)
	}
	return s, p, txt, nil
}

// ZoneTXT formats a TXT record for a zone file (keyfile.ZoneTXT).
func ZoneTXT(owner, value string) string { return keyfile.ZoneTXT(owner, value) }
