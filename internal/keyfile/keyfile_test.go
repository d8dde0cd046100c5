package keyfile

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	rk, _, _, err := Generate("rsa", 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey := rk.(*rsa.PrivateKey)
	ek, _, _, err := Generate("ed25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	edKey := ek.(ed25519.PrivateKey)
	pkcs8RSA, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	pkcs8Ed, _ := x509.MarshalPKCS8PrivateKey(edKey)
	files := map[string][]byte{
		"pkcs1.pem":  pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}),
		"pkcs8.pem":  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8RSA}),
		"ed8.pem":    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8Ed}),
		"ed.seed":    []byte(base64.StdEncoding.EncodeToString(edKey.Seed()) + "\n"),
		"junk.pem":   []byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"),
		"empty.pem":  nil,
		"broken.pem": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte("nope")}),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"pkcs1.pem", "pkcs8.pem"} {
		k, err := Load(filepath.Join(dir, name))
		if err != nil || !k.(*rsa.PrivateKey).Equal(rsaKey) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, name := range []string{"ed8.pem", "ed.seed"} {
		k, err := Load(filepath.Join(dir, name))
		if err != nil || !k.(ed25519.PrivateKey).Equal(edKey) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, name := range []string{"junk.pem", "empty.pem", "broken.pem", "missing.pem"} {
		if _, err := Load(filepath.Join(dir, name)); err == nil {
			t.Errorf("%s: loaded", name)
		} else if name != "missing.pem" && !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %q does not name the file", name, err)
		}
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660, 0o644} {
		p := filepath.Join(dir, "pkcs1.pem")
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		_, err := Load(p)
		if !errors.Is(err, ErrInsecure) || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %o: %v", mode, err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "pkcs1.pem"), 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(filepath.Join(dir, "pkcs1.pem")); err != nil {
		t.Errorf("0400: %v", err)
	}
}

// a 512-bit RSA key, made with openssl genrsa 512
const rsa512PEM = `-----BEGIN RSA PRIVATE KEY-----
MIIBOgIBAAJBALS+iXZ/rAMPgCUtxKg35gAQA6hjV0lYB4ey8ZsB8v7ciiNIZQLt
/VgUsOfMgGLh51euGouJAvGEAWIsNO556akCAwEAAQJBAJXgCYzBgZloGRK7SP9U
mtwia2YOOisPW+8ia0Xl7+F1CTEfJaZR7LfNSdAv66bGPSuWFMXIVpi//OGDa/HQ
YIECIQDoGJ06lQVYmir+DHbDNFE4fYXNQLnLTRKUN0ggq5yfnQIhAMdb/jssfPXy
XLVReM5yut9iCYxvfcuXhgOaNqkrx8J9AiBPIyVpNiqufVKvcPyFrq8K/fHDfJBd
O5hcJUVYrmsnGQIgZOBt0m9+g80xkCY7pOt1F9e50TARTVXM4EHGau/WUtkCIG0G
aeDI6+6M96pqphTY0cXn3KzkxN4wowuJHqbkEFJo
-----END RSA PRIVATE KEY-----
`

func TestSmallRSAKeyRefused(t *testing.T) {
	if _, err := Parse([]byte(rsa512PEM)); err == nil || !strings.Contains(err.Error(), "too small") {
		t.Fatalf("512-bit key: %v", err)
	}
}

func TestGenerate(t *testing.T) {
	for _, c := range []struct {
		kind string
		bits int
		k    string
	}{{"rsa", 1024, "k=rsa"}, {"", 0, "k=rsa"}, {"ed25519", 0, "k=ed25519"}} {
		k, pemBytes, txt, err := Generate(c.kind, c.bits)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(pemBytes)
		if err != nil {
			t.Fatalf("%s: own PEM does not parse: %v", c.kind, err)
		}
		if !back.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public()) {
			t.Errorf("%s: PEM holds another key", c.kind)
		}
		if !strings.HasPrefix(txt, "v=DKIM1; "+c.k+"; p=") {
			t.Errorf("%s: record %q", c.kind, txt)
		}
	}
	for _, bad := range []struct {
		kind string
		bits int
	}{{"dsa", 0}, {"rsa", 512}, {"rsa", 9000}} {
		if _, _, _, err := Generate(bad.kind, bad.bits); err == nil {
			t.Errorf("%s/%d accepted", bad.kind, bad.bits)
		}
	}
	z := ZoneTXT("x.", strings.Repeat("a", 300))
	if z != `x. IN TXT ( "`+strings.Repeat("a", 255)+`" "`+strings.Repeat("a", 45)+`" )` {
		t.Errorf("ZoneTXT: %s", z)
	}
}

// FuzzParse: a key file is read from disk at every load; whatever it holds,
// Parse returns a key that signs or an error, and never panics.
func FuzzParse(f *testing.F) {
	_, rsaPEM, _, _ := Generate("rsa", 1024)
	_, edPEM, _, _ := Generate("ed25519", 0)
	f.Add(rsaPEM)
	f.Add(edPEM)
	f.Add([]byte(rsa512PEM))
	f.Add([]byte("MC4CAQAwBQYDK2VwBCIEIJ+mTO3ySCxkyFZb0jQm1m7Pn8zhT8rVnEfDzz+sYZ4h\n"))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := Parse(data)
		if err != nil {
			return
		}
		digest := sha256.Sum256(data)
		opts := crypto.SignerOpts(crypto.SHA256)
		if _, ok := k.(ed25519.PrivateKey); ok {
			opts = crypto.Hash(0)
		}
		if _, err := k.Sign(nil, digest[:], opts); err != nil {
			t.Fatalf("parsed key does not sign: %v", err)
		}
	})
}
