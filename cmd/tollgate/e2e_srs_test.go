//go:build e2e

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func srsConfig(t *testing.T) string {
	t.Helper()
	secrets := filepath.Join(t.TempDir(), "srs.secrets")
	if err := os.WriteFile(secrets, []byte("tops3cr3t\nolds3cr3t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return `
srs:
  domain: fwd.example.org
  secrets_file: ` + secrets + `
  local_domains: [example.org]
acl:
  rcpt:
    - accept: {name: forward, control: [srs_forward]}
`
}

func TestPostfixSRS(t *testing.T) {
	config := srsConfig(t)
	pf, d := startPostfixWithTollgate(t, config)

	// A message relayed onward leaves with the SRS sender.
	res := pf.Swaks(t, "--from", "alice@example.net", "--to", "friend@elsewhere.test", "--header", "Subject: forwarded")
	if res.ExitCode != 0 {
		t.Fatalf("exit %d:\n%s", res.ExitCode, res.Output)
	}
	msgs := pf.WaitMessages(t, 1, 30*time.Second)
	srsSender := strings.Trim(msgs[0].Envelope.From(), "<>")
	if !strings.HasPrefix(srsSender, "SRS0=") || !strings.HasSuffix(srsSender, "=example.net=alice@fwd.example.org") {
		t.Fatalf("envelope sender %q", msgs[0].Envelope.From())
	}
	d.waitLog(t, `SRS="`+srsSender+`"`)

	// The CLI agrees with the daemon.
	out, err := exec.Command(binary, "srs", "reverse", "--config", d.config, srsSender).Output()
	if err != nil || strings.TrimSpace(string(out)) != "alice@example.net" {
		t.Errorf("tollgate srs reverse: %q %v", out, err)
	}
	out, err = exec.Command(binary, "srs", "forward", "--config", d.config, "alice@example.net").Output()
	if err != nil || strings.TrimSpace(string(out)) != srsSender {
		t.Errorf("tollgate srs forward: %q %v (daemon wrote %s)", out, err, srsSender)
	}

	// Mail from our own domain is not rewritten.
	pf.Swaks(t, "--from", "bob@example.org", "--to", "friend@elsewhere.test")
	msgs = pf.WaitMessages(t, 2, 30*time.Second)
	if from := msgs[1].Envelope.From(); !strings.Contains(from, "bob@example.org") {
		t.Errorf("local sender rewritten: %s", from)
	}

	// A bounce to the SRS address reaches the original sender.
	res = pf.Swaks(t, "--from", "<>", "--to", srsSender, "--header", "Subject: Undelivered Mail Returned to Sender")
	if res.ExitCode != 0 {
		t.Fatalf("bounce: exit %d:\n%s", res.ExitCode, res.Output)
	}
	msgs = pf.WaitMessages(t, 3, 30*time.Second)
	if to := msgs[2].Envelope.To(); len(to) != 1 || !strings.Contains(to[0], "alice@example.net") {
		t.Errorf("bounce delivered to %v", to)
	}

	// A forged SRS address is refused at RCPT, for that recipient only.
	forged := "SRS0=AAAAAA=" + srsSender[12:]
	res = pf.Swaks(t, "--from", "<>", "--to", forged+",bob@example.org")
	if !strings.Contains(res.Output, "550 5.1.1") || !strings.Contains(res.Output, "invalid SRS address") {
		t.Errorf("forged SRS address:\n%s", res.Output)
	}
	msgs = pf.WaitMessages(t, 4, 30*time.Second)
	if to := msgs[3].Envelope.To(); len(to) != 1 || !strings.Contains(to[0], "bob@example.org") {
		t.Errorf("delivered to %v", to)
	}
	if !d.waitMetric(t, `tollgate_srs_reverse_total{result="bad_hash"} 1`) || !d.waitMetric(t, `tollgate_srs_forward_total{result="rewritten"} 1`) {
		_, body := d.get(t, "/metrics")
		t.Errorf("metrics:\n%s", grepLines(body, "tollgate_srs"))
	}
}
