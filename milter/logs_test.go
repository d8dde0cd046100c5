package milter

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// srsLike reverses SRS recipients as the srs module does: a replacement
// proposed to the envelope owner at RCPT.
type srsLike struct{}

func (srsLike) Name() string { return "srs" }
func (srsLike) Rcpt(_ context.Context, t *Txn, r *Recipient) error {
	if strings.HasPrefix(r.Addr, "SRS0=") {
		t.Mutations.Envelope.Replace(r, "alice@example.com", "srs")
	}
	return nil
}

func relayDenied(stage Stage, _ *Session, _ *Txn, r *Recipient) Decision {
	if stage == StageRcpt && strings.HasSuffix(r.Addr, "@elsewhere.test") {
		return Decision{Verdict: Reject, Rule: "relay", Reply: Reply{550, "5.7.1", "relay not permitted"}}
	}
	if stage == StageRcpt && strings.HasPrefix(r.Addr, "trash@") {
		return Decision{Verdict: Discard, Rule: "trash"}
	}
	return Decision{}
}

// logLine is the first line of logs whose msg is msg, or "".
func logLine(logs, msg string) string {
	want := "msg=" + msg
	if strings.Contains(msg, " ") {
		want = fmt.Sprintf("msg=%q", msg)
	}
	for line := range strings.Lines(logs) {
		if strings.Contains(line, want+" ") {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

func TestRefusalLinesNameRecipientsAndQueueID(t *testing.T) {
	ts := startServer(t, &fakeRuntime{decide: relayDenied, needs: Needs{Actions: ActDelRcpt, Reply: [stageCount]bool{StageRcpt: true}}})
	s := ts.session(t, map[string]string{"i": "4XkT2c0Zz3z9t"})
	envelope(t, s, "alice@example.net", "bob@example.org", "carol@elsewhere.test", "trash@example.org")
	sendMessage(t, s, nil, "x\r\n")
	s.Close()
	waitFor(t, func() bool { return logLine(ts.logs.String(), "message") != "" })
	logs := ts.logs.String()

	refused := logLine(logs, "recipient refused")
	for _, part := range []string{"queue_id=4XkT2c0Zz3z9t", "sender=<alice@example.net>", "recipient=<carol@elsewhere.test>",
		"decision=reject", `reply="550 5.7.1 relay not permitted"`, "rule=relay"} {
		if !strings.Contains(refused, part) {
			t.Errorf("refusal line lacks %s: %s", part, refused)
		}
	}
	if d := logLine(logs, "recipient discarded"); !strings.Contains(d, "recipient=<trash@example.org>") || !strings.Contains(d, "rule=trash") {
		t.Errorf("discard line: %q", d)
	}
	summary := logLine(logs, "message")
	for _, part := range []string{"queue_id=4XkT2c0Zz3z9t", "rcpts=2", "rcpts_rejected=1", "to=<bob@example.org>",
		"discarded_to=<trash@example.org>", "rejected_to=<carol@elsewhere.test>", "decision=accept"} {
		if !strings.Contains(summary, part) {
			t.Errorf("summary line lacks %s: %s", part, summary)
		}
	}
}

// Postfix names no queue id until a recipient is accepted: a message whose
// every recipient is refused has none, and its line says so by leaving the
// key out rather than writing an empty one.
func TestEveryRecipientRefusedWithoutQueueID(t *testing.T) {
	ts := startServer(t, &fakeRuntime{decide: relayDenied, needs: Needs{Reply: [stageCount]bool{StageRcpt: true}}})
	s := ts.session(t, nil)
	envelope(t, s, "alice@example.net", "carol@elsewhere.test", "dave@elsewhere.test")
	if err := s.Abort(nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	waitFor(t, func() bool { return logLine(ts.logs.String(), "message") != "" })
	summary := logLine(ts.logs.String(), "message")
	if strings.Contains(summary, "queue_id") {
		t.Errorf("empty queue id written: %s", summary)
	}
	for _, part := range []string{"rcpts=0", "rcpts_rejected=2", "rejected_to=<carol@elsewhere.test>,<dave@elsewhere.test>",
		"decision=reject", `reply="550 5.7.1 relay not permitted"`} {
		if !strings.Contains(summary, part) {
			t.Errorf("summary line lacks %s: %s", part, summary)
		}
	}
	if n := strings.Count(ts.logs.String(), `msg="recipient refused"`); n != 2 {
		t.Errorf("%d refusal lines, want one per recipient:\n%s", n, ts.logs.String())
	}
}

func TestRecipientListIsBounded(t *testing.T) {
	var addrs []string
	for i := range maxLoggedRcpts + 5 {
		addrs = append(addrs, fmt.Sprintf("r%d@example.org", i))
	}
	got := rcptList(addrs)
	if !strings.HasSuffix(got, fmt.Sprintf("<r%d@example.org>,+5 more", maxLoggedRcpts-1)) || strings.Count(got, "<") != maxLoggedRcpts {
		t.Errorf("rcptList = %q", got)
	}
	if got := rcptList(addrs[:2]); got != "<r0@example.org>,<r1@example.org>" {
		t.Errorf("rcptList = %q", got)
	}
}
