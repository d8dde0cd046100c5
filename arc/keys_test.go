package arc

import (
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/keyfile"
	"github.com/tollgate/tollgate/internal/sigcrypto"
)

// TestLoadKeyFile covers what LoadKeyFile adds to keyfile.Load (whose
// tests cover the file formats and the permission check): the key comes
// back as a sigcrypto signer of the right algorithm, and every failure,
// the file's or the permissions', wraps ErrKey and keeps the cause.
func TestLoadKeyFile(t *testing.T) {
	dir := t.TempDir()
	rsaKey := goRSAKey(t, "hop1")
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = 1
	edKey := ed25519.NewKeyFromSeed(seed)
	files := map[string][]byte{
		"rsa.pem":  pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}),
		"ed.seed":  []byte(base64.StdEncoding.EncodeToString(edKey.Seed()) + "\n"),
		"junk.pem": []byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	k, err := LoadKeyFile(filepath.Join(dir, "rsa.pem"))
	if err != nil || !rsaKey.PublicKey.Equal(k.Public()) || k.Algorithm() != AlgRSASHA256 {
		t.Errorf("rsa.pem: %v", err)
	}
	k, err = LoadKeyFile(filepath.Join(dir, "ed.seed"))
	if err != nil || !edKey.Public().(ed25519.PublicKey).Equal(k.Public()) || k.Algorithm() != AlgEd25519SHA256 {
		t.Errorf("ed.seed: %v", err)
	}
	for _, name := range []string{"junk.pem", "missing.pem"} {
		if _, err := LoadKeyFile(filepath.Join(dir, name)); !errors.Is(err, ErrKey) {
			t.Errorf("%s: %v", name, err)
		}
	}
	p := filepath.Join(dir, "rsa.pem")
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyFile(p); !errors.Is(err, ErrKey) || !errors.Is(err, keyfile.ErrInsecure) {
		t.Errorf("mode 0640: %v", err)
	}
}

// goRSAKey is testdata/keys/NAME.pem as Go's key, for marshalling.
func goRSAKey(t *testing.T, name string) *rsa.PrivateKey {
	data, err := os.ReadFile(filepath.Join("testdata", "keys", name+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s.pem is not PEM", name)
	}
	k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		var k8 any
		if k8, err = x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
			return k8.(*rsa.PrivateKey)
		}
		t.Fatal(err)
	}
	return k
}

func TestGenerateKey(t *testing.T) {
	for _, c := range []struct {
		kind string
		bits int
	}{{"rsa", 1024}, {"ed25519", 0}} {
		k, pemBytes, txt, err := GenerateKey(c.kind, c.bits)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParsePrivateKey(pemBytes)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := parseKeyRecord(txt)
		if err != nil || pub.isRSA() != (c.kind == "rsa") {
			t.Fatalf("%s record %q: %v", c.kind, txt, err)
		}
		if !reflect.DeepEqual(back.Public(), k.Public()) {
			t.Fatalf("%s round trip", c.kind)
		}
		z := ZoneTXT("sel._domainkey.example.org", txt)
		if !strings.HasPrefix(z, `sel._domainkey.example.org. IN TXT ( "v=DKIM1; k=`+c.kind) {
			t.Errorf("zone line %q", z)
		}
	}
	if _, _, _, err := GenerateKey("dsa", 0); err == nil {
		t.Error("dsa accepted")
	}
	if _, _, _, err := GenerateKey("rsa", 512); err == nil {
		t.Error("512 bits accepted")
	}
	// long records are split into 255-byte strings
	z := ZoneTXT("x.", strings.Repeat("a", 300))
	if !strings.Contains(z, `"`+strings.Repeat("a", 255)+`" "`+strings.Repeat("a", 45)+`"`) {
		t.Errorf("%q", z)
	}
}

// TestKeyCache: a record is parsed once and the key object reused; a bad
// record is remembered as bad; verdicts are those of parsing each time;
// the cache stays within its size.
func TestKeyCache(t *testing.T) {
	res := mapResolver{}
	hs, body := parseMessage(plainMessage)
	m := mustSealHop(t, res, hs, body, testKey(res, "hop1"), t0, nil)
	cache := NewKeyCache(2)
	for range 3 {
		_, cached := verifyMessage(VerifyOptions{Resolver: res, Keys: cache, Now: func() time.Time { return t0 }}, m, body, 0)
		_, plain := verifyMessage(VerifyOptions{Resolver: res, Now: func() time.Time { return t0 }}, m, body, 0)
		if cached.State != StatePass || !reflect.DeepEqual(cached, plain) {
			t.Fatalf("cached %+v, parsed each time %+v", cached, plain)
		}
	}
	rec := res["sel._domainkey.hop1.example"][0]
	if cache.Len() != 1 {
		t.Fatalf("%d entries, want 1", cache.Len())
	}
	k1, _ := cache.Parse(rec, parseKeyRecord)
	k2, _ := cache.Parse(rec, parseKeyRecord)
	if k1 == nil || k1 != k2 {
		t.Fatal("the same record gave different key objects")
	}
	if _, err := cache.Parse("v=DKIM1; p=@@@", parseKeyRecord); err == nil {
		t.Fatalf("bad record: %v", err)
	}
	cache.Parse("v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", parseKeyRecord)
	if cache.Len() > 2 {
		t.Fatalf("%d entries in a cache of 2", cache.Len())
	}
}

// TestLoadedRSAKeyIsALibraryKey: the signing key is parsed at load into
// the key object of the crypto in use (an OpenSSL EVP_PKEY, or Go's key
// with its CRT values computed), so signing a message parses nothing.
func TestLoadedRSAKeyIsALibraryKey(t *testing.T) {
	key := goRSAKey(t, "hop1")
	path := filepath.Join(t.TempDir(), "k.pem")
	os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
	s, err := LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	impl, _ := sigcrypto.Default()
	want := map[string]string{sigcrypto.NameOpenSSL: "*sigcrypto.openSSLRSA", sigcrypto.NameGo: "sigcrypto.goRSASigner"}[impl.Name()]
	if got := fmt.Sprintf("%T", s); got != want {
		t.Fatalf("LoadKeyFile with %s crypto made a %s, want %s", impl.Name(), got, want)
	}
}
