package arc

import (
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/tollgate/tollgate/internal/sigcrypto"
)

// TestSealSameWithEitherCrypto: a seal made through OpenSSL and one made
// through Go's crypto, same key, message and time, are the same headers
// (both signature schemes are deterministic), and each verifies. A build
// without cgo has Go only and checks that its seal verifies.
func TestSealSameWithEitherCrypto(t *testing.T) {
	impls := []*sigcrypto.Impl{sigcrypto.Go}
	if o, err := sigcrypto.OpenSSL(); err == nil {
		impls = append(impls, o)
	} else if cgoBuild {
		t.Fatalf("a cgo build without OpenSSL: %v (install libssl3)", err)
	}
	data, err := os.ReadFile(filepath.Join("testdata", "keys", "hop1.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	rsaKey, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = 7
	for name, goKey := range map[string]crypto.Signer{"rsa2048": rsaKey, "ed25519": ed25519.NewKeyFromSeed(seed)} {
		var seals [][]Header
		for _, impl := range impls {
			s, err := impl.NewSigner(goKey)
			if err != nil {
				t.Fatal(err)
			}
			res := mapResolver{}
			res["sel._domainkey.either.example"] = []string{dnsRecord(s)}
			hs, body := parseMessage(plainMessage)
			m := mustSealHop(t, res, hs, body, Key{Domain: "either.example", Selector: "sel", Signer: s}, t0, nil)
			if r := verifyAt(res, m, body, t0); r.State != StatePass {
				t.Errorf("%s sealed with %s does not verify: %s %s", name, impl.Name(), r.State, r.Reason)
			}
			seals = append(seals, m[:3])
		}
		for i := 1; i < len(seals); i++ {
			for j := range seals[0] {
				if seals[i][j] != seals[0][j] {
					t.Errorf("%s: %s differs between %s and %s:\n%q\n%q", name, seals[0][j].Name,
						impls[0].Name(), impls[i].Name(), seals[0][j].Value, seals[i][j].Value)
				}
			}
		}
	}
}
