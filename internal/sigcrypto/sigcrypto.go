package sigcrypto

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
)

// Algorithm names as DKIM and ARC write them in a=.
const (
	RSASHA256     = "rsa-sha256"
	Ed25519SHA256 = "ed25519-sha256"
)

// MinRSABits is the smallest RSA key this package signs with (RFC 8301 §3.2).
const MinRSABits = 1024

// Names of the implementations, as logged and exported.
const (
	NameOpenSSL = "openssl"
	NameGo      = "go"
)

// Signer signs SHA-256 digests with one private key, parsed once.
// Safe for concurrent use.
type Signer interface {
	// Algorithm is RSASHA256 or Ed25519SHA256.
	Algorithm() string
	// Sign signs a 32-byte SHA-256 digest: RSASSA-PKCS1-v1_5 for RSA,
	// Ed25519 over the digest as the message (RFC 8463 §3).
	Sign(digest []byte) ([]byte, error)
	// Public is the Go form of the public key (*rsa.PublicKey or
	// ed25519.PublicKey), for key records and checks.
	Public() crypto.PublicKey
}

// PublicKey verifies signatures over SHA-256 digests with one public key.
// Safe for concurrent use.
type PublicKey interface {
	Algorithm() string
	// Bits is the RSA modulus size, 256 for Ed25519.
	Bits() int
	// Verify returns nil when sig is a good signature of digest.
	Verify(digest, sig []byte) error
}

// ErrVerify is wrapped by every failed verification.
var ErrVerify = errors.New("sigcrypto: bad signature")

// Impl is one implementation: Go's crypto or OpenSSL.
type Impl struct {
	name string
	// library describes what is loaded, e.g. "OpenSSL 3.0.17 1 Jul 2025".
	library string
	rsaSign func(*rsa.PrivateKey) (Signer, error)
	edSign  func(ed25519.PrivateKey) (Signer, error)
	rsaPub  func(*rsa.PublicKey) (PublicKey, error)
	edPub   func(ed25519.PublicKey) (PublicKey, error)
}

// Name is NameOpenSSL or NameGo.
func (i *Impl) Name() string { return i.name }

// Library describes the library doing the work, for the start-up log.
func (i *Impl) Library() string { return i.library }

// Go is Go's own crypto, always available.
var Go = &Impl{
	name: NameGo, library: "Go crypto/rsa and crypto/ed25519",
	rsaSign: func(k *rsa.PrivateKey) (Signer, error) { return goRSASigner{k}, nil },
	edSign:  func(k ed25519.PrivateKey) (Signer, error) { return goEdSigner(k), nil },
	rsaPub:  func(k *rsa.PublicKey) (PublicKey, error) { return goRSAPublic{k}, nil },
	edPub:   func(k ed25519.PublicKey) (PublicKey, error) { return goEdPublic(k), nil },
}

// libcryptoName is the library OpenSSL() loads; a test changes it.
var libcryptoName = "libcrypto.so.3"

var (
	openSSLOnce sync.Once
	openSSLImpl *Impl
	openSSLErr  error
)

// OpenSSL returns the OpenSSL implementation, loading libcrypto.so.3 on the
// first call, or why it is not available (a build without cgo, a missing
// or unusable library).
func OpenSSL() (*Impl, error) {
	openSSLOnce.Do(func() {
		openSSLImpl, openSSLErr = loadOpenSSL(libcryptoName)
		if openSSLErr != nil {
			openSSLErr = fmt.Errorf("sigcrypto: OpenSSL: %w", openSSLErr)
		}
	})
	return openSSLImpl, openSSLErr
}

// Default is the implementation this process signs and verifies with:
// OpenSSL when it loads, else Go. why says why OpenSSL is not used (nil
// when it is).
func Default() (impl *Impl, why error) {
	if o, err := OpenSSL(); err == nil {
		return o, nil
	} else {
		return Go, err
	}
}

func defaultImpl() *Impl {
	i, _ := Default()
	return i
}

// NewSigner makes a Signer of the Default implementation from a Go key.
func NewSigner(k crypto.Signer) (Signer, error) { return defaultImpl().NewSigner(k) }

// NewPublicKey makes a verification key of the Default implementation.
func NewPublicKey(pub crypto.PublicKey) (PublicKey, error) { return defaultImpl().NewPublicKey(pub) }

// NewSigner makes this implementation's Signer from a Go key
// (*rsa.PrivateKey of MinRSABits or more, or ed25519.PrivateKey). The new
// key signs a test digest that Go's crypto then verifies, so a library
// that mishandles the key fails here, at load, and not on mail.
func (i *Impl) NewSigner(k crypto.Signer) (Signer, error) {
	var s Signer
	var err error
	switch k := k.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < MinRSABits {
			return nil, fmt.Errorf("sigcrypto: RSA key of %d bits is too small to sign (min %d)", k.N.BitLen(), MinRSABits)
		}
		if err := k.Validate(); err != nil {
			return nil, fmt.Errorf("sigcrypto: %w", err)
		}
		s, err = i.rsaSign(k)
	case ed25519.PrivateKey:
		if len(k) != ed25519.PrivateKeySize {
			return nil, errors.New("sigcrypto: bad ed25519 key length")
		}
		s, err = i.edSign(k)
	default:
		return nil, fmt.Errorf("sigcrypto: unsupported key type %T", k)
	}
	if err != nil {
		return nil, fmt.Errorf("sigcrypto: %s: %w", i.name, err)
	}
	if err := selfTest(s); err != nil {
		return nil, fmt.Errorf("sigcrypto: %s: the new key fails its self-test: %w", i.name, err)
	}
	return s, nil
}

func selfTest(s Signer) error {
	digest := sha256.Sum256([]byte("sigcrypto self-test"))
	sig, err := s.Sign(digest[:])
	if err != nil {
		return err
	}
	pub, err := Go.NewPublicKey(s.Public())
	if err != nil {
		return err
	}
	return pub.Verify(digest[:], sig)
}

// NewPublicKey makes a verification key from a Go public key
// (*rsa.PublicKey or ed25519.PublicKey).
func (i *Impl) NewPublicKey(pub crypto.PublicKey) (PublicKey, error) {
	var k PublicKey
	var err error
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		k, err = i.rsaPub(pub)
	case ed25519.PublicKey:
		if len(pub) != ed25519.PublicKeySize {
			return nil, errors.New("sigcrypto: bad ed25519 public key length")
		}
		k, err = i.edPub(pub)
	default:
		return nil, fmt.Errorf("sigcrypto: unsupported public key type %T", pub)
	}
	if err != nil {
		return nil, fmt.Errorf("sigcrypto: %s: %w", i.name, err)
	}
	return k, nil
}

func checkDigest(digest []byte) error {
	if len(digest) != sha256.Size {
		return fmt.Errorf("sigcrypto: digest of %d bytes, want a SHA-256 digest", len(digest))
	}
	return nil
}

type goRSASigner struct{ k *rsa.PrivateKey }

func (goRSASigner) Algorithm() string          { return RSASHA256 }
func (s goRSASigner) Public() crypto.PublicKey { return &s.k.PublicKey }
func (s goRSASigner) Sign(digest []byte) ([]byte, error) {
	if err := checkDigest(digest); err != nil {
		return nil, err
	}
	// PKCS#1 v1.5 signing is deterministic: no randomness is read.
	return rsa.SignPKCS1v15(nil, s.k, crypto.SHA256, digest)
}

type goEdSigner ed25519.PrivateKey

func (goEdSigner) Algorithm() string          { return Ed25519SHA256 }
func (s goEdSigner) Public() crypto.PublicKey { return ed25519.PrivateKey(s).Public() }
func (s goEdSigner) Sign(digest []byte) ([]byte, error) {
	if err := checkDigest(digest); err != nil {
		return nil, err
	}
	return ed25519.Sign(ed25519.PrivateKey(s), digest), nil
}

type goRSAPublic struct{ k *rsa.PublicKey }

func (goRSAPublic) Algorithm() string { return RSASHA256 }
func (p goRSAPublic) Bits() int       { return p.k.N.BitLen() }
func (p goRSAPublic) Verify(digest, sig []byte) error {
	if err := rsa.VerifyPKCS1v15(p.k, crypto.SHA256, digest, sig); err != nil {
		return fmt.Errorf("%w: %v", ErrVerify, err)
	}
	return nil
}

type goEdPublic ed25519.PublicKey

func (goEdPublic) Algorithm() string { return Ed25519SHA256 }
func (goEdPublic) Bits() int         { return 256 }
func (p goEdPublic) Verify(digest, sig []byte) error {
	if !ed25519.Verify(ed25519.PublicKey(p), digest, sig) {
		return ErrVerify
	}
	return nil
}
