//go:build e2e

package main

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/e2e"
)

func TestPostfixBMIPerRecipient(t *testing.T) {
	spamd := e2e.StartSpamd(t, map[string]string{"strict": "required_score -5", "lenient": "required_score 8"})
	pf, d := startPostfixWithTollgate(t, `
bmi:
  backend: {spamd: {address: `+spamd.Addr+`, timeout: 30s}}
  profiles: {strict: strict, lenient: lenient}
  rules:
    - {id: 5, when: {is_spam: true, profiles: [strict]}, outcome: drop}
    - {id: 8, when: {is_spam: false}, outcome: deliver}
acl:
  rcpt:
    - accept: {recipients: [strict@example.org], control: [bmi_run], bmi_optin: strict}
    - accept: {control: [bmi_run], bmi_optin: lenient}
`)
	// A clean message: spam for the strict profile only.
	res := pf.Swaks(t, "--from", "alice@example.net", "--to", "strict@example.org,lenient@example.org",
		"--header", "Subject: lunch", "--header", "X-Brightmail-Verdict: forged-by-the-sender", "--body", "Shall we have lunch on Friday?")
	if res.ExitCode != 0 {
		t.Fatalf("exit %d:\n%s", res.ExitCode, res.Output)
	}
	msg := pf.WaitMessages(t, 1, 60*time.Second)[0]
	if to := msg.Envelope.To(); len(to) != 1 || !strings.Contains(to[0], "lenient@example.org") {
		t.Errorf("delivered to %v: the dropped recipient must not receive it", to)
	}
	verdicts := msg.Header("X-Brightmail-Verdict")
	if len(verdicts) != 1 || strings.Contains(verdicts[0], "forged") {
		t.Fatalf("X-Brightmail-Verdict %q", verdicts)
	}
	payload, err := base64.StdEncoding.DecodeString(verdicts[0])
	if err != nil || !strings.Contains(string(payload), "outcome=deliver") || !strings.Contains(string(payload), "profile=lenient") {
		t.Errorf("verdict payload %q %v", payload, err)
	}
	if tr := msg.Header("X-Brightmail-Tracker"); len(tr) != 1 {
		t.Errorf("X-Brightmail-Tracker %q", tr)
	}
	d.waitMetric(t, `tollgate_bmi_verdicts_total{outcome="drop"} 1`)

	// The scanner goes away: everyone is delivered normally, without verdicts.
	spamd.Stop()
	res = pf.Swaks(t, "--from", "alice@example.net", "--to", "strict@example.org,lenient@example.org", "--header", "Subject: scanner down")
	if res.ExitCode != 0 {
		t.Fatalf("exit %d:\n%s", res.ExitCode, res.Output)
	}
	msgs := pf.WaitMessages(t, 2, 60*time.Second)
	if to := msgs[1].Envelope.To(); len(to) != 2 {
		t.Errorf("scanner down: delivered to %v", to)
	}
	if v := msgs[1].Header("X-Brightmail-Verdict"); len(v) != 0 {
		t.Errorf("verdict without a scan: %q", v)
	}
	d.waitLog(t, "scan failed; their recipients are delivered normally")
	if n := strings.Count(d.log.String(), "scan failed"); n != 1 {
		t.Errorf("%d log lines for one failed message, want 1", n)
	}
	if !d.waitMetric(t, `tollgate_bmi_scans_total{backend="spamd",result="dial"} 2`) {
		_, body := d.get(t, "/metrics")
		t.Errorf("metrics:\n%s", grepLines(body, "tollgate_bmi"))
	}
}
