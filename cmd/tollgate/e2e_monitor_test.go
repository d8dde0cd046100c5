//go:build e2e

package main

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Monitor mode through a real Postfix: what the policy would refuse is
// delivered unchanged, the log says would_reject and the metric counts it;
// a reload back to enforce refuses it again.
func TestPostfixMonitorMode(t *testing.T) {
	pf, d := startPostfixWithTollgate(t, "mode: monitor\nmonitor_header: X-Tollgate-Would\n"+e2eConfig)
	d.waitLog(t, "mode=monitor")

	t.Run("content the policy refuses is delivered", func(t *testing.T) {
		before := len(pf.Sink.Messages(t))
		res := pf.Swaks(t, "--from", "alice@example.net", "--to", "bob@example.org", "--header", "Subject: please reject me",
			"--header", "X-Forged: from the client")
		if res.ExitCode != 0 {
			t.Fatalf("swaks exit %d:\n%s", res.ExitCode, res.Output)
		}
		m := queuedAs.FindStringSubmatch(res.Output)
		if m == nil {
			t.Fatalf("no queue id in:\n%s", res.Output)
		}
		msgs := pf.WaitMessages(t, before+1, 30*time.Second)
		got := msgs[len(msgs)-1]
		if v := got.Header("X-Tollgate-Would"); len(v) != 1 || v[0] != "reject at data: 554 5.7.1 content refused (rule content)" {
			t.Errorf("X-Tollgate-Would = %q", v)
		}
		if v := got.Header("X-Forged"); len(v) != 1 {
			t.Errorf("monitor mode changed the message: X-Forged = %q", v)
		}
		d.waitLog(t, "queue_id="+m[1])
		line := logLineWith(d.log.String(), "queue_id="+m[1])
		for _, part := range []string{"mode=monitor", "decision=would_reject", `reply="554 5.7.1 content refused"`, "rule=content", "to=<bob@example.org>"} {
			if !strings.Contains(line, part) {
				t.Errorf("summary line lacks %s: %s", part, line)
			}
		}
		if !d.waitMetric(t, `tollgate_monitor_decisions_total{decision="reject",stage="data"} 1`) {
			_, body := d.get(t, "/metrics")
			t.Errorf("would-be rejection not counted:\n%s", grepLines(body, "tollgate_monitor"))
		}
	})

	t.Run("a recipient the policy refuses is delivered, the accepted message unchanged", func(t *testing.T) {
		before := len(pf.Sink.Messages(t))
		res := pf.Swaks(t, "--from", "alice@example.net", "--to", "bob@example.org,mallory@elsewhere.test,later@example.org",
			"--header", "Subject: hello", "--header", "X-Forged: from the client")
		if res.ExitCode != 0 || strings.Contains(res.Output, "<** ") {
			t.Fatalf("swaks exit %d:\n%s", res.ExitCode, res.Output)
		}
		msgs := pf.WaitMessages(t, before+1, 30*time.Second)
		got := msgs[len(msgs)-1]
		if to := got.Envelope.To(); len(to) != 3 {
			t.Errorf("delivered to %v, want all three", to)
		}
		if v := got.Header("X-Tollgate-Client"); len(v) != 0 {
			t.Errorf("the policy's header was added in monitor mode: %q", v)
		}
		if v := got.Header("X-Forged"); len(v) != 1 {
			t.Errorf("the policy's header removal happened in monitor mode: %q", v)
		}
		want := []string{"reject at rcpt <mallory@elsewhere.test>: 550 5.7.1 relay not permitted (rule relay)",
			"tempfail at rcpt <later@example.org>: 451 4.7.1 come back later (rule later)"}
		if v := got.Header("X-Tollgate-Would"); strings.Join(v, "|") != strings.Join(want, "|") {
			t.Errorf("X-Tollgate-Would = %q, want %q", v, want)
		}
		// Postfix names the queue id from the first accepted recipient on.
		m := queuedAs.FindStringSubmatch(res.Output)
		if m == nil {
			t.Fatalf("no queue id in:\n%s", res.Output)
		}
		refused := logLineWith(d.log.String(), "recipient=<mallory@elsewhere.test>")
		if !strings.Contains(refused, "decision=would_reject") || !strings.Contains(refused, `msg="recipient refused"`) ||
			!strings.Contains(refused, "queue_id="+m[1]) {
			t.Errorf("refusal line: %s", refused)
		}
		summary := logLineWith(d.log.String(), "rejected_to=<mallory@elsewhere.test>,<later@example.org>")
		if !strings.Contains(summary, "decision=accept") || !strings.Contains(summary, "suppressed=add_header:2,remove_header:1") {
			t.Errorf("summary line: %s", summary)
		}
		if !d.waitMetric(t, `tollgate_monitor_decisions_total{decision="reject",stage="rcpt"} 1`) ||
			!d.waitMetric(t, `tollgate_monitor_decisions_total{decision="tempfail",stage="rcpt"} 1`) {
			_, body := d.get(t, "/metrics")
			t.Errorf("would-be refusals not counted:\n%s", grepLines(body, "tollgate_monitor"))
		}
	})

	t.Run("reload to enforce refuses again", func(t *testing.T) {
		if err := os.WriteFile(d.config, []byte(e2eConfig), 0o644); err != nil {
			t.Fatal(err)
		}
		d.cmd.Process.Signal(syscall.SIGHUP)
		d.waitLog(t, "mode=enforce")
		if !d.waitMetric(t, "tollgate_monitor_mode 0") {
			t.Error("tollgate_monitor_mode did not go to 0")
		}
		res := pf.Swaks(t, "--from", "alice@example.net", "--to", "bob@example.org", "--header", "Subject: please reject me")
		if res.ExitCode == 0 || !strings.Contains(res.Output, "554 5.7.1 content refused") {
			t.Errorf("exit %d:\n%s", res.ExitCode, res.Output)
		}
		// Refused for good: each refusal line names the recipient; with
		// nothing accepted Postfix has no queue id, and the lines say none.
		res = pf.Swaks(t, "--from", "alice@example.net", "--to", "mallory@elsewhere.test")
		if !strings.Contains(res.Output, "<** 550 5.7.1 relay not permitted") {
			t.Errorf("exit %d:\n%s", res.ExitCode, res.Output)
		}
		d.waitLog(t, "rejected_to=<mallory@elsewhere.test> decision=reject")
		summary := logLineWith(d.log.String(), "rejected_to=<mallory@elsewhere.test> decision=reject")
		refused := logLineWith(d.log.String(), `msg="recipient refused"`)
		if strings.Contains(summary, "queue_id") || strings.Contains(refused, "queue_id") || strings.Contains(summary, "mode=") ||
			!strings.Contains(refused, "recipient=<mallory@elsewhere.test> decision=reject") {
			t.Errorf("refusal lines:\n%s\n%s", refused, summary)
		}
	})
}

// logLineWith is the last log line containing s.
func logLineWith(logs, s string) string {
	var found string
	for line := range strings.Lines(logs) {
		if strings.Contains(line, s) {
			found = strings.TrimSpace(line)
		}
	}
	return found
}
