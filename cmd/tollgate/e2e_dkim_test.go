//go:build e2e

package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/dnstest"
	"github.com/tollgate/tollgate/internal/e2e"
)

// TestPostfixDKIMVerify: mail signed by dkimpy goes through a real Postfix
// with tollgate as its milter and leaves with dkim=pass in tollgate's
// Authentication-Results; the same message with its body changed on the
// way leaves with dkim=fail; a simple/simple signature over a Subject
// without the space after its colon passes (header values exactly as
// received); a message signed with RSA and Ed25519 gets two results in
// header order, an unsigned one dkim=none. The key is in a loopback DNS server that the
// daemon's dns: section points at.
func TestPostfixDKIMVerify(t *testing.T) {
	dkimsign := e2e.RequireProgram(t, "/usr/bin/dkimsign", "python3-dkim")
	dir := t.TempDir()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "rsa.pem")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	txt := "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(pub)
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edFile := filepath.Join(dir, "ed25519.key") // dkimpy's format: the seed in base64
	os.WriteFile(edFile, []byte(base64.StdEncoding.EncodeToString(edPriv.Seed())+"\n"), 0o600)
	srv := dnstest.Start(t)
	srv.Set("s2026._domainkey.example.org", &dnstest.Zone{TXT: [][]string{{txt[:255], txt[255:]}}})
	srv.Set("ed2026._domainkey.example.org", &dnstest.Zone{TXT: [][]string{{"v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(edPub)}}})

	raw, err := os.ReadFile("../../dkim/testdata/messages/folded-mime.eml")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(dkimsign, "--hcanon", "relaxed", "--bcanon", "relaxed", "s2026", "example.org", keyFile)
	cmd.Stdin = strings.NewReader(strings.ReplaceAll(string(raw), "\n", "\r\n"))
	signedCRLF, err := cmd.Output()
	if err != nil {
		t.Fatalf("dkimsign: %v", err)
	}
	signed := strings.ReplaceAll(string(signedCRLF), "\r\n", "\n") // swaks sends CRLF
	tampered := strings.Replace(signed, "two  percent", "twenty percent", 1)
	// simple/simple signs header fields byte for byte: a Subject without
	// the space after the colon passes only if the milter hands tollgate
	// the value exactly as received (the leading-space option).
	raw, err = os.ReadFile("../../dkim/testdata/messages/blank-lines.eml")
	if err != nil {
		t.Fatal(err)
	}
	tight := strings.Replace(string(raw), "Subject: ", "Subject:", 1)
	cmd = exec.Command(dkimsign, "--hcanon", "simple", "--bcanon", "simple", "s2026", "example.org", keyFile)
	cmd.Stdin = strings.NewReader(strings.ReplaceAll(tight, "\n", "\r\n"))
	simpleCRLF, err := cmd.Output()
	if err != nil {
		t.Fatalf("dkimsign: %v", err)
	}
	simple := strings.ReplaceAll(string(simpleCRLF), "\r\n", "\n")
	// Signed twice, RSA then Ed25519 on top (dual signing): two results,
	// in header order.
	cmd = exec.Command(dkimsign, "--signalg", "ed25519-sha256", "ed2026", "example.org", edFile)
	cmd.Stdin = strings.NewReader(string(signedCRLF))
	dualCRLF, err := cmd.Output()
	if err != nil {
		t.Fatalf("dkimsign ed25519: %v", err)
	}
	dual := strings.ReplaceAll(string(dualCRLF), "\r\n", "\n")
	for name, msg := range map[string]string{"signed.eml": signed, "tampered.eml": tampered, "simple.eml": simple,
		"dual.eml": dual, "unsigned.eml": string(raw)} {
		os.WriteFile(filepath.Join(dir, name), []byte(msg), 0o644)
	}

	pf, d := startPostfixWithTollgate(t, `
authserv_id: mx.tollgate.test
dns: {server: "`+srv.Addr+`", timeout: 2s}
dkim: {}
acl:
  data:
    - warn:   {dkim: [pass], add_header: "X-DKIM-Signers: $dkim_signers"}
    - accept: {}
`)
	for i, tc := range []struct {
		file string
		want *regexp.Regexp
	}{
		{"signed.eml", regexp.MustCompile(`^mx\.tollgate\.test;\s+dkim=pass header\.d=example\.org header\.s=s2026 header\.b="?[A-Za-z0-9+/]{8}"? header\.i=@example\.org$`)},
		{"tampered.eml", regexp.MustCompile(`^mx\.tollgate\.test;\s+dkim=fail reason="body hash did not verify" header\.d=example\.org header\.s=s2026 header\.b=`)},
		{"simple.eml", regexp.MustCompile(`^mx\.tollgate\.test;\s+dkim=pass header\.d=example\.org header\.s=s2026 header\.b=`)},
		{"dual.eml", regexp.MustCompile(`^mx\.tollgate\.test;\s+dkim=pass header\.d=example\.org header\.s=ed2026 header\.b=\S+ header\.i=@example\.org;\s+dkim=pass header\.d=example\.org header\.s=s2026 header\.b=\S+ header\.i=@example\.org$`)},
		{"unsigned.eml", regexp.MustCompile(`^mx\.tollgate\.test;\s+dkim=none$`)},
	} {
		res := pf.Swaks(t, "--from", "news@example.org", "--to", "bob@example.org", "--data", filepath.Join(dir, tc.file))
		if res.ExitCode != 0 {
			t.Fatalf("%s: swaks exit %d:\n%s", tc.file, res.ExitCode, res.Output)
		}
		msg := pf.WaitMessages(t, i+1, 30*time.Second)[i]
		ar := msg.Header("Authentication-Results")
		if len(ar) != 1 || !tc.want.MatchString(ar[0]) {
			t.Errorf("%s: Authentication-Results %q, want %v\n%s", tc.file, ar, tc.want, msg.Raw)
		}
		signers := msg.Header("X-DKIM-Signers")
		if tc.file != "tampered.eml" && tc.file != "unsigned.eml" && (len(signers) != 1 || signers[0] != "example.org:@example.org") {
			t.Errorf("X-DKIM-Signers %q", signers)
		}
		if (tc.file == "tampered.eml" || tc.file == "unsigned.eml") && len(signers) != 0 {
			t.Errorf("X-DKIM-Signers %q on a failing message", signers)
		}
	}
	d.waitLog(t, "DKIM=fail")
	for _, line := range []string{`tollgate_dkim_verify_total{result="pass"} 4`, `tollgate_dkim_verify_total{result="fail"} 1`,
		`tollgate_dkim_verify_total{result="none"} 1`} {
		if !d.waitMetric(t, line) {
			_, body := d.get(t, "/metrics")
			t.Errorf("no %s in:\n%s", line, grepLines(body, "tollgate_dkim"))
		}
	}
}
