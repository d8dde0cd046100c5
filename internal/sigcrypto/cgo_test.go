//go:build cgo

package sigcrypto

import (
	"crypto/ed25519"
	"crypto/sha256"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/golang-fips/openssl/v2"
)

// impls are both implementations: a cgo build must load libcrypto.so.3
// (Debian package libssl3, which scripts/install-test-deps.sh installs).
func impls(t testing.TB) []*Impl {
	o, err := OpenSSL()
	if err != nil {
		t.Fatalf("%v (install libssl3)", err)
	}
	return []*Impl{o, Go}
}

func TestDefaultIsOpenSSL(t *testing.T) {
	if os.Getenv("SIGCRYPTO_TEST_LIBCRYPTO") != "" {
		t.Skip("run by TestFallback")
	}
	impl, why := Default()
	if impl.Name() != NameOpenSSL || why != nil {
		t.Fatalf("Default() = %s, %v; want openssl", impl.Name(), why)
	}
	if !strings.HasPrefix(impl.Library(), "OpenSSL 3") {
		t.Errorf("library %q", impl.Library())
	}
}

// TestFallback starts this test binary again with a libcrypto that cannot
// be loaded: Default must then be Go's crypto, saying why.
func TestFallback(t *testing.T) {
	if os.Getenv("SIGCRYPTO_TEST_LIBCRYPTO") != "" {
		impl, why := Default()
		if impl != Go || why == nil || !strings.Contains(why.Error(), "libcrypto-absent.so.3") {
			t.Fatalf("Default() = %s, %v; want go and why", impl.Name(), why)
		}
		s, err := ParsePrivateKey([]byte("fQLLe5n0IQ/OmMTPSfcb5auqgsmjRle+bA4fJnSZRaY="))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := s.(goEdSigner); !ok {
			t.Fatalf("fallback key is %T", s)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFallback$", "-test.v")
	cmd.Env = append(os.Environ(), "SIGCRYPTO_TEST_LIBCRYPTO=libcrypto-absent.so.3")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestFallback") {
		t.Fatalf("%v\n%s", err, out)
	}
}

// BenchmarkLibcryptoEd25519 is libcrypto's Ed25519 through golang-fips/openssl,
// which the OpenSSL implementation does not use because Go's is faster
// (compare BenchmarkSign/go-ed25519 and BenchmarkVerify/go-ed25519).
func BenchmarkLibcryptoEd25519(b *testing.B) {
	if _, err := OpenSSL(); err != nil {
		b.Fatal(err)
	}
	k := goKeys()["ed25519"].(ed25519.PrivateKey)
	priv, err := openssl.NewPrivateKeyEd25519FromSeed(k.Seed())
	if err != nil {
		b.Fatal(err)
	}
	pub, err := openssl.NewPublicKeyEd25119(k.Public().(ed25519.PublicKey))
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("benchmark"))
	sig, err := openssl.SignEd25519(priv, digest[:])
	if err != nil {
		b.Fatal(err)
	}
	b.Run("sign", func(b *testing.B) {
		for b.Loop() {
			if _, err := openssl.SignEd25519(priv, digest[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verify", func(b *testing.B) {
		for b.Loop() {
			if err := openssl.VerifyEd25519(pub, digest[:], sig); err != nil {
				b.Fatal(err)
			}
		}
	})
}
