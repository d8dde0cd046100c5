package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/tollgate/tollgate/internal/dnstest"
)

// tollgate test, which plays the MTA over the milter wire, verifies a
// DKIM signature with the keys from the configured resolver and shows the
// result in the Authentication-Results it would add.
func TestTestCommandVerifiesDKIM(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srv := dnstest.Start(t)
	srv.Set("t2026._domainkey.example.net", &dnstest.Zone{TXT: [][]string{{"v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)}}})
	dir := t.TempDir()
	config := filepath.Join(dir, "tollgate.yaml")
	os.WriteFile(config, []byte(`authserv_id: mx.example.org
dns: {server: "`+srv.Addr+`", timeout: 2s}
dkim: {}
acl:
  data:
    - deny:   {dkim: [fail], message: "550 5.7.1 DKIM $dkim_verify_reason"}
    - accept: {}
`), 0o644)
	msg, err := os.ReadFile("../../deploy/examples/message.eml")
	if err != nil {
		t.Fatal(err)
	}
	var signed bytes.Buffer
	crlf := strings.ReplaceAll(string(msg), "\n", "\r\n")
	if err := msgdkim.Sign(&signed, strings.NewReader(crlf), &msgdkim.SignOptions{Domain: "example.net", Selector: "t2026", Signer: priv,
		HeaderCanonicalization: "simple", BodyCanonicalization: "simple"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, msg string
		want      *regexp.Regexp
	}{
		{"signed", signed.String(), regexp.MustCompile(`(?m)^Authentication-Results: mx\.example\.org;\s+dkim=pass header\.d=example\.net header\.s=t2026 header\.b="?[A-Za-z0-9+/]{8}"?\s`)},
		{"tampered", strings.Replace(signed.String(), "Hi Bob, lunch", "Hi Bob, brunch", 1), regexp.MustCompile(`550 5\.7\.1 DKIM bodyhash_mismatch`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := filepath.Join(dir, tc.name+".eml")
			os.WriteFile(in, []byte(tc.msg), 0o644)
			emitted := filepath.Join(dir, tc.name+".out")
			out, _ := exec.Command(binary, "test", "--config", config, "--client", "203.0.113.5", "--from", "alice@example.net",
				"--rcpt", "bob@example.org", "--emit", emitted, in).CombinedOutput()
			left, _ := os.ReadFile(emitted)
			if !tc.want.Match(append(out, left...)) {
				t.Errorf("want %v in the report or the message:\n%s\n%s", tc.want, out, strings.ReplaceAll(string(left), "\r", ""))
			}
		})
	}
}
