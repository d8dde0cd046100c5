package sigcrypto

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/tollgate/tollgate/internal/benchcpu"
)

func TestMain(m *testing.M) {
	// TestFallback starts this binary again with a library that is not there.
	if lib := os.Getenv("SIGCRYPTO_TEST_LIBCRYPTO"); lib != "" {
		libcryptoName = lib
	}
	os.Exit(m.Run())
}

// goKeys are made once: RSA generation is slow under -race.
var goKeys = sync.OnceValue(func() map[string]crypto.Signer {
	r, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return map[string]crypto.Signer{"rsa2048": r, "ed25519": ed}
})

func pemOf(t testing.TB, k crypto.Signer, pkcs1 bool) []byte {
	if pkcs1 {
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k.(*rsa.PrivateKey))})
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func TestParsePrivateKey(t *testing.T) {
	keys := goKeys()
	seed := base64.StdEncoding.EncodeToString(keys["ed25519"].(ed25519.PrivateKey).Seed())
	for name, c := range map[string]struct {
		data []byte
		alg  string
	}{
		"pkcs1 rsa":          {pemOf(t, keys["rsa2048"], true), RSASHA256},
		"pkcs8 rsa":          {pemOf(t, keys["rsa2048"], false), RSASHA256},
		"pkcs8 ed25519":      {pemOf(t, keys["ed25519"], false), Ed25519SHA256},
		"base64 seed":        {[]byte(seed + "\n"), Ed25519SHA256},
		"pem after comments": {append([]byte("# made for the tests\n"), pemOf(t, keys["ed25519"], false)...), Ed25519SHA256},
	} {
		for _, impl := range impls(t) {
			s, err := impl.ParsePrivateKey(c.data)
			if err != nil {
				t.Errorf("%s, %s: %v", name, impl.Name(), err)
				continue
			}
			if s.Algorithm() != c.alg {
				t.Errorf("%s, %s: algorithm %s, want %s", name, impl.Name(), s.Algorithm(), c.alg)
			}
		}
	}
	small, err := os.ReadFile("testdata/rsa512.pem")
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		data []byte
		want string
	}{
		"512-bit rsa":     {small, "too small"},
		"certificate pem": {[]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "unsupported PEM block"},
		"broken der":      {[]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "asn1"},
		"short seed":      {[]byte(base64.StdEncoding.EncodeToString([]byte("short"))), "neither PEM"},
		"empty":           {nil, "neither PEM"},
	} {
		for _, impl := range impls(t) {
			if _, err := impl.ParsePrivateKey(c.data); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s, %s: error %v, want one saying %q", name, impl.Name(), err, c.want)
			}
		}
	}
}

// TestCrossVerify: each implementation verifies what the other signed, and
// refuses a changed digest or signature.
func TestCrossVerify(t *testing.T) {
	ims := impls(t)
	digest := sha256.Sum256([]byte("From: alice@example.org\r\n"))
	other := sha256.Sum256([]byte("From: mallory@example.org\r\n"))
	for name, k := range goKeys() {
		for _, signImpl := range ims {
			s, err := signImpl.NewSigner(k)
			if err != nil {
				t.Fatalf("%s %s: %v", signImpl.Name(), name, err)
			}
			sig, err := s.Sign(digest[:])
			if err != nil {
				t.Fatalf("%s %s: sign: %v", signImpl.Name(), name, err)
			}
			for _, verImpl := range ims {
				pub, err := verImpl.NewPublicKey(s.Public())
				if err != nil {
					t.Fatalf("%s %s: public key: %v", verImpl.Name(), name, err)
				}
				if pub.Algorithm() != s.Algorithm() {
					t.Errorf("%s %s: public key algorithm %s, signer %s", verImpl.Name(), name, pub.Algorithm(), s.Algorithm())
				}
				if err := pub.Verify(digest[:], sig); err != nil {
					t.Errorf("%s does not verify the %s signature of %s: %v", verImpl.Name(), name, signImpl.Name(), err)
				}
				if err := pub.Verify(other[:], sig); !errors.Is(err, ErrVerify) {
					t.Errorf("%s verifies a %s signature by %s over another digest: %v", verImpl.Name(), name, signImpl.Name(), err)
				}
				bad := append([]byte(nil), sig...)
				bad[len(bad)/2] ^= 1
				if err := pub.Verify(digest[:], bad); !errors.Is(err, ErrVerify) {
					t.Errorf("%s verifies a changed %s signature by %s: %v", verImpl.Name(), name, signImpl.Name(), err)
				}
			}
			if _, err := s.Sign(digest[:20]); err == nil {
				t.Errorf("%s %s signs a 20-byte digest", signImpl.Name(), name)
			}
		}
	}
}

// TestSameSignatures: RSASSA-PKCS1-v1_5 and Ed25519 are deterministic, so
// both implementations must make the very same bytes with one key.
func TestSameSignatures(t *testing.T) {
	digest := sha256.Sum256([]byte("Subject: same bytes\r\n"))
	for name, k := range goKeys() {
		var sigs [][]byte
		for _, impl := range impls(t) {
			s, err := impl.NewSigner(k)
			if err != nil {
				t.Fatal(err)
			}
			sig, err := s.Sign(digest[:])
			if err != nil {
				t.Fatal(err)
			}
			sigs = append(sigs, sig)
		}
		for i := 1; i < len(sigs); i++ {
			if string(sigs[i]) != string(sigs[0]) {
				t.Errorf("%s: the implementations sign differently:\n%x\n%x", name, sigs[0], sigs[i])
			}
		}
	}
}

// TestConcurrentSigning: one key object signs for every session at once
// (the daemon shares it); every signature must verify.
func TestConcurrentSigning(t *testing.T) {
	for _, impl := range impls(t) {
		for name, k := range goKeys() {
			s, err := impl.NewSigner(k)
			if err != nil {
				t.Fatal(err)
			}
			pub, err := Go.NewPublicKey(s.Public())
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			errs := make(chan error, 8*20)
			for g := range 8 {
				wg.Go(func() {
					for i := range 20 {
						digest := sha256.Sum256(fmt.Appendf(nil, "%d/%d", g, i))
						sig, err := s.Sign(digest[:])
						if err == nil {
							err = pub.Verify(digest[:], sig)
						}
						if err != nil {
							errs <- err
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("%s %s, concurrent: %v", impl.Name(), name, err)
			}
		}
	}
}

func TestPublicKeyBits(t *testing.T) {
	for _, impl := range impls(t) {
		for name, want := range map[string]int{"rsa2048": 2048, "ed25519": 256} {
			pub, err := impl.NewPublicKey(goKeys()[name].Public())
			if err != nil {
				t.Fatal(err)
			}
			if pub.Bits() != want {
				t.Errorf("%s %s: %d bits", impl.Name(), name, pub.Bits())
			}
		}
		if _, err := impl.NewPublicKey(ed25519.PublicKey("short")); err == nil {
			t.Errorf("%s takes a 5-byte ed25519 key", impl.Name())
		}
		if _, err := impl.NewSigner(nil); err == nil {
			t.Errorf("%s takes a nil key", impl.Name())
		}
	}
}

func FuzzParsePrivateKey(f *testing.F) {
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIH0Cy3uZ9CEPzpjEz0n3G+WrqoLJo0ZXvmwOHyZ0mUWm\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("fQLLe5n0IQ/OmMTPSfcb5auqgsmjRle+bA4fJnSZRaY="))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, impl := range impls(t) {
			s, err := impl.ParsePrivateKey(data)
			if err != nil {
				continue
			}
			digest := sha256.Sum256(data)
			sig, err := s.Sign(digest[:])
			if err != nil {
				t.Fatalf("%s: a key that loaded does not sign: %v", impl.Name(), err)
			}
			pub, err := Go.NewPublicKey(s.Public())
			if err != nil || pub.Verify(digest[:], sig) != nil {
				t.Fatalf("%s: a key that loaded signs what Go does not verify: %v", impl.Name(), err)
			}
		}
	})
}

func BenchmarkSign(b *testing.B) {
	digest := sha256.Sum256([]byte("benchmark"))
	for _, impl := range impls(b) {
		for _, name := range []string{"rsa2048", "ed25519"} {
			s, err := impl.NewSigner(goKeys()[name])
			if err != nil {
				b.Fatal(err)
			}
			b.Run(impl.Name()+"-"+name, func(b *testing.B) {
				defer benchcpu.Report(b)()
				for b.Loop() {
					if _, err := s.Sign(digest[:]); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	digest := sha256.Sum256([]byte("benchmark"))
	for _, impl := range impls(b) {
		for _, name := range []string{"rsa2048", "ed25519"} {
			s, err := Go.NewSigner(goKeys()[name])
			if err != nil {
				b.Fatal(err)
			}
			sig, _ := s.Sign(digest[:])
			pub, err := impl.NewPublicKey(s.Public())
			if err != nil {
				b.Fatal(err)
			}
			b.Run(impl.Name()+"-"+name, func(b *testing.B) {
				for b.Loop() {
					if err := pub.Verify(digest[:], sig); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// FuzzRSAPublicKey feeds both implementations the RSA keys a DNS key record
// can carry (any modulus, any exponent: x509 parses what it is sent): they
// must not crash, and must agree on a signature.
func FuzzRSAPublicKey(f *testing.F) {
	r := goKeys()["rsa2048"].(*rsa.PrivateKey)
	digest := sha256.Sum256([]byte("fuzz"))
	sig, err := rsa.SignPKCS1v15(nil, r, crypto.SHA256, digest[:])
	if err != nil {
		f.Fatal(err)
	}
	f.Add(r.N.Bytes(), int64(r.E), sig)
	f.Add(r.N.Bytes(), int64(3), sig)
	f.Add([]byte{0xff, 0xff, 0xff, 0xfe}, int64(65537), []byte{1})
	f.Fuzz(func(t *testing.T, modulus []byte, e int64, sig []byte) {
		if len(modulus) > 1024 || e <= 1 || e > 1<<31-1 {
			return // Go's crypto/rsa and x509 take exponents up to 2^31-1 only
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(modulus), E: int(e)}
		var verdicts []error
		for _, impl := range impls(t) {
			k, err := impl.NewPublicKey(pub)
			if err != nil {
				t.Fatalf("%s: %v", impl.Name(), err)
			}
			verdicts = append(verdicts, k.Verify(digest[:], sig))
		}
		for _, v := range verdicts[1:] {
			if (v == nil) != (verdicts[0] == nil) {
				t.Fatalf("the implementations disagree on a signature: %v", verdicts)
			}
		}
	})
}
