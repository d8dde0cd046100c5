// Package keyfile reads and makes the private keys that sign mail (ARC
// seals and DKIM signatures share one format, so that `tollgate arc keygen`
// and `tollgate dkim keygen` keys work for both). Errors carry no package
// prefix: the caller names the configuration key they came from.
package keyfile

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
)

// ErrInsecure is wrapped when a key file is open to group or others.
var ErrInsecure = errors.New("is accessible by group or others")

// MinRSABits is the smallest RSA key that signs: RFC 8301 forbids less
// than 1024 bits.
const MinRSABits = 1024

// Load reads a private signing key: PEM PKCS#1 ("RSA PRIVATE KEY") or
// PKCS#8 ("PRIVATE KEY", RSA or Ed25519), or a bare base64 Ed25519 seed as
// RFC 8463 and dkimpy's dknewkey write it. A file that group or others may
// access is refused: a signing key lets anyone vouch for mail as the
// domain.
func Load(path string) (crypto.Signer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s %w (mode %04o); chmod 600 it", path, ErrInsecure, perm)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// Parse reads a key in the formats Load accepts.
func Parse(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
		if err != nil || len(seed) != ed25519.SeedSize {
			return nil, errors.New("neither PEM nor a base64 ed25519 seed")
		}
		return ed25519.NewKeyFromSeed(seed), nil
	}
	var key any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
	}
	if err != nil {
		return nil, err
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < MinRSABits {
			return nil, fmt.Errorf("RSA key of %d bits is too small to sign (min %d)", k.N.BitLen(), MinRSABits)
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("unsupported key type %T", key)
}

// Generate makes a signing key: kind "rsa" (bits, default 2048, 1024 to
// 8192) or "ed25519". It returns the key, its PKCS#8 PEM, and the DNS TXT
// record value to publish at <selector>._domainkey.<domain> (ZoneTXT
// formats a zone-file line).
func Generate(kind string, bits int) (crypto.Signer, []byte, string, error) {
	var key crypto.Signer
	var p string
	switch kind {
	case "rsa", "":
		kind = "rsa"
		if bits == 0 {
			bits = 2048
		}
		if bits < MinRSABits || bits > 8192 {
			return nil, nil, "", fmt.Errorf("RSA size %d out of range %d..8192", bits, MinRSABits)
		}
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			return nil, nil, "", err
		}
		der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil {
			return nil, nil, "", err
		}
		key, p = k, base64.StdEncoding.EncodeToString(der)
	case "ed25519":
		pub, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, "", err
		}
		key, p = k, base64.StdEncoding.EncodeToString(pub)
	default:
		return nil, nil, "", fmt.Errorf("unknown key type %q (rsa or ed25519)", kind)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, "", err
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return key, pemBytes, "v=DKIM1; k=" + kind + "; p=" + p, nil
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
