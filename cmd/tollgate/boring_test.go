//go:build e2e

package main

import (
	"bytes"

	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/message"

	"github.com/tollgate/tollgate/arc"
)

// TestBoringCryptoBuild builds the BoringCrypto variant of the daemon
// (docs/performance.md, "The BoringCrypto build"):
//
//	CGO_ENABLED=1 GOEXPERIMENT=boringcrypto go build ./cmd/tollgate
//
// and checks that it is that build, that it makes keys, and that it seals
// a message with RSA-2048 through the milter pipeline (tollgate test), a
// seal this test process (Go's own crypto) then verifies. It never skips:
// the build needs a C compiler (Debian package gcc), and a failing build is
// a failure. About 45 s on a cold build cache on the 2-core machine, a few
// seconds on a warm one.
func TestBoringCryptoBuild(t *testing.T) {
	if runtime.GOOS != "linux" || (runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64") {
		t.Fatalf("GOEXPERIMENT=boringcrypto is supported on linux/amd64 and linux/arm64 only, not %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		//nolint:staticcheck // SA1019: the test binary runs where it was built, so its GOROOT is the toolchain's
		goCmd = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "tollgate-boring")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	build := exec.CommandContext(ctx, goCmd, "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=1", "GOEXPERIMENT=boringcrypto")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=1 GOEXPERIMENT=boringcrypto go build: %v (it needs a C compiler: Debian package gcc)\n%s", err, out)
	}
	t.Logf("boringcrypto build took %v", time.Since(start).Round(100*time.Millisecond))

	// The binary says what it is.
	out, err := exec.Command(goCmd, "version", "-m", bin).Output()
	if err != nil {
		t.Fatalf("go version -m: %v", err)
	}
	for _, want := range []string{"GOEXPERIMENT=boringcrypto", "CGO_ENABLED=1"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("go version -m %s lacks %s:\n%s", bin, want, out)
		}
	}
	out, err = exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "boringcrypto") {
		t.Errorf("tollgate version: %v\n%s", err, out)
	}

	// A key made by that binary.
	keyFile := filepath.Join(dir, "arc.key")
	keygen := exec.Command(bin, "arc", "keygen", "--domain", "example.org", "--selector", "boring", "--out", keyFile)
	if out, err := keygen.CombinedOutput(); err != nil {
		t.Fatalf("tollgate arc keygen: %v\n%s", err, out)
	}

	// One message through the pipeline, sealed.
	cfg := filepath.Join(dir, "tollgate.yaml")
	os.WriteFile(cfg, []byte(`authserv_id: mx.tollgate.test
arc:
  sign: [{domain: example.org, selector: boring, key: `+keyFile+`, options: [timestamps]}]
acl:
  rcpt:
    - accept: {name: relay, control: [arc_sign]}
`), 0o644)
	msgFile := filepath.Join(dir, "in.eml")
	os.WriteFile(msgFile, []byte("From: Alice <alice@example.net>\nTo: bob@example.org\nSubject: sealed by BoringSSL\n"+
		"Date: Mon, 16 Jun 2025 10:00:00 +0000\nMessage-ID: <boring@example.net>\n\nHello Bob,\nlunch on friday?\n"), 0o644)
	emitted := filepath.Join(dir, "out.eml")
	out, err = exec.Command(bin, "test", "--config", cfg, "--client", "203.0.113.5", "--from", "alice@example.net",
		"--rcpt", "bob@example.org", "--json", "--emit", emitted, msgFile).Output()
	if err != nil {
		t.Fatalf("tollgate test: %v\n%s", err, out)
	}
	var r testReport
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	seals := 0
	for _, c := range r.Changes {
		if c.Name == "ARC-Seal" {
			seals++
			if !strings.Contains(c.Value, "a=rsa-sha256") || !strings.Contains(c.Value, "cv=none") || !strings.Contains(c.Value, "b=") {
				t.Errorf("ARC-Seal %q", c.Value)
			}
		}
	}
	if r.Decision != "accept" || seals != 1 {
		t.Fatalf("decision %q, %d ARC-Seal headers in the changes:\n%s", r.Decision, seals, out)
	}

	// Go's crypto in this process verifies what BoringSSL signed.
	key, err := arc.LoadKeyFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(emitted)
	if err != nil {
		t.Fatal(err)
	}
	hs, body := splitForARC(string(raw))
	v := arc.NewVerifier(arc.VerifyOptions{Resolver: boringTXT{
		"boring._domainkey.example.org": "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der),
	}, VerifyOnly: true})
	for _, h := range hs {
		v.Header(h)
	}
	v.EndOfHeaders()
	v.Body(body)
	if res := v.Result(context.Background()); res.State != arc.StatePass {
		t.Errorf("the sealed message does not verify: %s %s\n%s", res.State, res.Reason, raw)
	}
}

type boringTXT map[string]string

func (m boringTXT) LookupTXT(_ context.Context, name string) ([]string, error) {
	if v, ok := m[strings.ToLower(strings.TrimSuffix(name, "."))]; ok {
		return []string{v}, nil
	}
	return nil, &arc.DNSError{Name: name, Cause: "NXDOMAIN"}
}

// splitForARC turns an LF message into headers as a milter receives them
// and a CRLF body.
func splitForARC(msg string) ([]arc.Header, []byte) {
	fields, body, _ := message.Split([]byte(msg))
	hs := make([]arc.Header, 0, len(fields))
	for _, f := range fields {
		hs = append(hs, arc.Header{Name: f.Name, Value: f.Value})
	}
	return hs, bytes.ReplaceAll(body, []byte("\n"), []byte("\r\n"))
}
