//go:build e2e

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/e2e"
	"github.com/tollgate/tollgate/srs"
)

// A bounce to an SRS address that BMI decides to drop, through a real
// Postfix and a real spamd: SRS reverses the recipient, BMI judges the
// address it reverses to and drops it, and the envelope owner tells Postfix
// to delete the SRS address once and add nothing. Before the envelope had
// one owner the original address was still added, so the dropped bounce
// was delivered.
func TestPostfixSRSReverseAndBMIDrop(t *testing.T) {
	spamd := e2e.StartSpamd(t, map[string]string{"strict": "required_score -5"})
	secrets := filepath.Join(t.TempDir(), "srs.secrets")
	if err := os.WriteFile(secrets, []byte("tops3cr3t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pf, d := startPostfixWithTollgate(t, `
srs:
  domain: fwd.example.org
  secrets_file: `+secrets+`
  local_domains: [example.org]
bmi:
  backend: {spamd: {address: `+spamd.Addr+`, timeout: 30s}}
  profiles: {strict: strict}
  default_profile: strict
  rules:
    - {id: 1, when: {is_spam: true, recipients: [alice@example.net]}, outcome: drop}
acl:
  rcpt:
    - accept: {control: [bmi_run]}
`)
	s, err := srs.New(srs.Options{Domain: "fwd.example.org", Secrets: []string{"tops3cr3t"}})
	if err != nil {
		t.Fatal(err)
	}
	bounce, err := s.Forward("alice@example.net")
	if err != nil {
		t.Fatal(err)
	}
	res := pf.Swaks(t, "--from", "<>", "--to", bounce+",bob@example.org", "--header", "Subject: Undelivered Mail Returned to Sender",
		"--body", "The original message was spam.")
	if res.ExitCode != 0 {
		t.Fatalf("exit %d:\n%s", res.ExitCode, res.Output)
	}
	msg := pf.WaitMessages(t, 1, 60*time.Second)[0]
	to := msg.Envelope.To()
	if len(to) != 1 || !strings.Contains(to[0], "bob@example.org") {
		t.Errorf("delivered to %v, want bob@example.org only: the bounce BMI dropped must not reach alice", to)
	}
	for _, line := range []string{`tollgate_bmi_verdicts_total{outcome="drop"} 1`, `tollgate_srs_reverse_total{result="valid"} 1`} {
		if !d.waitMetric(t, line) {
			_, body := d.get(t, "/metrics")
			t.Errorf("no %s in:\n%s", line, grepLines(body, "tollgate_"))
		}
	}
	// Postfix logs no milter error: nothing was deleted twice.
	for _, line := range strings.Split(pf.Log(), "\n") {
		if strings.Contains(line, "milter") && (strings.Contains(line, "error") || strings.Contains(line, "warning")) {
			t.Errorf("Postfix reports a milter problem: %s", line)
		}
	}
}
