//go:build e2e

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/arc"
	"github.com/tollgate/tollgate/internal/e2e"
)

func TestPostfixARCSeal(t *testing.T) {
	e2e.RequireProgram(t, "/usr/bin/python3", "python3")
	dir := t.TempDir()
	_, pemBytes, txt, err := arc.GenerateKey("rsa", 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "arc.key")
	os.WriteFile(keyFile, pemBytes, 0o600)
	dnsFile := filepath.Join(dir, "dns.json")
	dnsJSON, _ := json.Marshal(map[string][]string{"s2026._domainkey.example.org": {txt}})
	os.WriteFile(dnsFile, dnsJSON, 0o644)

	pf, d := startPostfixWithTollgate(t, `
authserv_id: mx.tollgate.test
arc:
  sign: [{domain: example.org, selector: s2026, key: `+keyFile+`, options: [timestamps, expire]}]
acl:
  data:
    - accept: {name: relay-sealed, control: [arc_sign]}
`)
	res := pf.Swaks(t, "--from", "alice@example.net", "--to", "bob@example.org", "--header", "Subject: sealed relay",
		"--header", "Authentication-Results: mx.tollgate.test; arc=pass (forged by the client)")
	if res.ExitCode != 0 {
		t.Fatalf("exit %d:\n%s", res.ExitCode, res.Output)
	}
	msg := pf.WaitMessages(t, 1, 30*time.Second)[0]
	for _, h := range msg.Header("Authentication-Results") {
		if strings.Contains(h, "forged") {
			t.Errorf("forged Authentication-Results survived: %q", h)
		}
	}
	if ar := msg.Header("Authentication-Results"); len(ar) != 1 || strings.Join(strings.Fields(ar[0]), " ") != "mx.tollgate.test; arc=none" {
		t.Errorf("Authentication-Results %q", ar)
	}
	names := []string{}
	for _, h := range msg.Headers[:4] {
		names = append(names, h.Name)
	}
	if strings.Join(names, " ") != "ARC-Seal ARC-Message-Signature ARC-Authentication-Results Authentication-Results" {
		t.Errorf("top headers %v", names)
	}

	// An independent implementation verifies the seal.
	cmd := exec.Command("/usr/bin/python3", "../../arc/testdata/dkimpy_arc.py", "verify", dnsFile)
	cmd.Stdin = bytes.NewReader(msg.Raw)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dkimpy: %v\n%s", err, out)
	}
	var verdict struct {
		CV     string `json:"cv"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(out, &verdict); err != nil || verdict.CV != "pass" {
		t.Errorf("dkimpy says %s (%v)\n%s", out, err, msg.Raw)
	}
	d.waitLog(t, `ARC=none/sealed`)
	if !d.waitMetric(t, `tollgate_arc_seal_total{result="sealed"} 1`) || !d.waitMetric(t, `tollgate_forged_authresults_removed_total 1`) {
		_, body := d.get(t, "/metrics")
		t.Errorf("metrics:\n%s", grepLines(body, "tollgate_arc"))
	}
}
