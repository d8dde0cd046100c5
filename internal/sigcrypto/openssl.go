//go:build cgo

package sigcrypto

import (
	"crypto"
	"crypto/rsa"
	"errors"
	"fmt"
	"math/big"

	"github.com/golang-fips/openssl/v2"
	"github.com/golang-fips/openssl/v2/bbig"
)

// loadOpenSSL dlopens the library. golang-fips/openssl loads it once per
// process: a second call reports the first call's result.
func loadOpenSSL(lib string) (*Impl, error) {
	if err := openssl.Init(lib); err != nil {
		return nil, fmt.Errorf("loading %s: %w", lib, err)
	}
	if !openssl.SupportsHash(crypto.SHA256) {
		return nil, errors.New(lib + " offers no SHA-256")
	}
	impl := &Impl{
		name:    NameOpenSSL,
		library: openssl.VersionText(),
		rsaSign: openSSLRSASigner,
		rsaPub:  openSSLRSAPublicKey,
		// Ed25519 stays with Go's crypto: through golang-fips/openssl
		// v2.0.3 it takes about twice as long (BenchmarkLibcryptoEd25519).
		edSign: Go.edSign,
		edPub:  Go.edPub,
	}
	return impl, nil
}

func openSSLRSASigner(k *rsa.PrivateKey) (Signer, error) {
	if len(k.Primes) != 2 {
		// OpenSSL takes two-prime keys only; multi-prime keys are rare
		// and deprecated, Go's crypto signs them.
		return goRSASigner{k}, nil
	}
	k.Precompute()
	ok, err := openssl.NewPrivateKeyRSA(bbig.Enc(k.N), bbig.Enc(big.NewInt(int64(k.E))), bbig.Enc(k.D),
		bbig.Enc(k.Primes[0]), bbig.Enc(k.Primes[1]),
		bbig.Enc(k.Precomputed.Dp), bbig.Enc(k.Precomputed.Dq), bbig.Enc(k.Precomputed.Qinv))
	if err != nil {
		return nil, err
	}
	return &openSSLRSA{k: ok, pub: &k.PublicKey}, nil
}

type openSSLRSA struct {
	k   *openssl.PrivateKeyRSA
	pub *rsa.PublicKey
}

func (*openSSLRSA) Algorithm() string          { return RSASHA256 }
func (s *openSSLRSA) Public() crypto.PublicKey { return s.pub }
func (s *openSSLRSA) Sign(digest []byte) ([]byte, error) {
	if err := checkDigest(digest); err != nil {
		return nil, err
	}
	sig, err := openssl.SignRSAPKCS1v15(s.k, crypto.SHA256, digest)
	if err != nil {
		return nil, fmt.Errorf("sigcrypto: openssl: %w", err)
	}
	return sig, nil
}

func openSSLRSAPublicKey(k *rsa.PublicKey) (PublicKey, error) {
	ok, err := openssl.NewPublicKeyRSA(bbig.Enc(k.N), bbig.Enc(big.NewInt(int64(k.E))))
	if err != nil {
		// keys OpenSSL refuses (odd sizes or exponents) are still
		// checked, by Go's crypto, which has its own limits
		return goRSAPublic{k}, nil //nolint:nilerr // the fallback is the answer
	}
	return &openSSLRSAPub{k: ok, bits: k.N.BitLen()}, nil
}

type openSSLRSAPub struct {
	k    *openssl.PublicKeyRSA
	bits int
}

func (*openSSLRSAPub) Algorithm() string { return RSASHA256 }
func (p *openSSLRSAPub) Bits() int       { return p.bits }
func (p *openSSLRSAPub) Verify(digest, sig []byte) error {
	if err := openssl.VerifyRSAPKCS1v15(p.k, crypto.SHA256, digest, sig); err != nil {
		return fmt.Errorf("%w: %v", ErrVerify, err)
	}
	return nil
}
