package arc

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

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

// KeyCache keeps parsed key records by their text, so that a key used by
// many messages is decoded once (base64, DER, the RSA modulus, the crypto
// library's key object) rather than once per message. The text is the key: a changed record is a new
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

// LoadKeyFile reads a private signing key: PEM PKCS#1 ("RSA PRIVATE KEY")
// or PKCS#8 ("PRIVATE KEY", RSA or Ed25519), or a bare base64 Ed25519
// seed as RFC 8463 and dkimpy's dknewkey write it. A file that group or
// others may access is refused: a signing key lets anyone vouch for mail
// as the domain.
//
// The key is parsed here, once per load or reload, into the key object
// of the crypto library in use (sigcrypto.Default).
func LoadKeyFile(path string) (sigcrypto.Signer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s is accessible by group or others (mode %04o); chmod 600 it", ErrKey, path, perm)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	k, err := sigcrypto.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrKey, path, err)
	}
	return k, nil
}

// GenerateKey makes a signing key for `tollgate arc keygen`: kind "rsa"
// (bits, default 2048, at least 1024) or "ed25519". It returns the key,
// its PKCS#8 PEM, and the DNS TXT record value to publish at
// <selector>._domainkey.<domain> (use ZoneTXT for a zone-file line).
func GenerateKey(kind string, bits int) (sigcrypto.Signer, []byte, string, error) {
	var key crypto.Signer
	var p string
	switch kind {
	case "rsa", "":
		kind = "rsa"
		if bits == 0 {
			bits = 2048
		}
		if bits < 1024 || bits > 8192 {
			return nil, nil, "", fmt.Errorf("%w: RSA size %d out of range 1024..8192", ErrKey, bits)
		}
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			return nil, nil, "", fmt.Errorf("%w: %v", ErrKey, err)
		}
		der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil {
			return nil, nil, "", fmt.Errorf("%w: %v", ErrKey, err)
		}
		key, p = k, base64.StdEncoding.EncodeToString(der)
	case "ed25519":
		pub, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, "", fmt.Errorf("%w: %v", ErrKey, err)
		}
		key, p = k, base64.StdEncoding.EncodeToString(pub)
	default:
		return nil, nil, "", fmt.Errorf("%w: unknown key type %q (rsa or ed25519)", ErrKey, kind)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, "", fmt.Errorf("%w: %v", ErrKey, err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	signer, err := sigcrypto.NewSigner(key)
	if err != nil {
		return nil, nil, "", fmt.Errorf("%w: %v", ErrKey, err)
	}
	return signer, pemBytes, "v=DKIM1; k=" + kind + "; p=" + p, nil
}

// ZoneTXT formats a TXT record for a zone file, split into the 255-byte
// character-strings DNS requires, e.g.
// `sel._domainkey.example.org. IN TXT ( "v=DKIM1; k=rsa; p=MIIB..." "..." )`.
func ZoneTXT(owner, value string) string {
	var b strings.Builder
	b.WriteString(strings.TrimSuffix(owner, ".") + ". IN TXT (")
	for len(value) > 0 {
		n := min(len(value), 255)
		b.WriteString(` "` + value[:n] + `"`)
		value = value[n:]
	}
	b.WriteString(" )")
	return b.String()
}
