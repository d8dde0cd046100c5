//go:build e2e

package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/e2e"
)

// Sendmail names the queue id from MAIL on: a recipient refused at RCPT is
// logged with it, and with the same id as the message's summary line.
func TestSendmailRefusalLineHasQueueID(t *testing.T) {
	milterAddr, d := startTollgateInet(t, `
acl:
  rcpt:
    - deny:   {name: relay, recipient_domains: ["!example.org"], message: "550 5.7.1 relay not permitted"}
    - accept: {}
`)
	host, port, _ := strings.Cut(milterAddr, ":")
	flags, macros := sendmailSnippet(t, "../../deploy/sendmail/sendmail.mc")
	sm := e2e.StartSendmail(t, e2e.SendmailOptions{Milter: "inet:" + port + "@" + host, MilterFlags: flags, MilterMacros: macros})
	res := e2e.SwaksFrom(t, "127.0.0.2", "--server", sm.Addr, "--from", "alice@example.net", "--to", "bob@example.org,mallory@elsewhere.test")
	if !regexp.MustCompile(`<\*\* 550 5\.7\.1 .*relay not permitted`).MatchString(res.Output) {
		t.Fatalf("exit %d:\n%s\n%s", res.ExitCode, res.Output, sm.Log())
	}
	sm.WaitMessages(t, 1, 30*time.Second)
	d.waitLog(t, "msg=message")
	refused := logLineWith(d.log.String(), `msg="recipient refused"`)
	m := regexp.MustCompile(`queue_id=(\S+) `).FindStringSubmatch(refused)
	if m == nil || !strings.Contains(refused, "recipient=<mallory@elsewhere.test> decision=reject") {
		t.Fatalf("refusal line without queue id or recipient: %s", refused)
	}
	summary := logLineWith(d.log.String(), "msg=message")
	if !strings.Contains(summary, "queue_id="+m[1]+" ") || !strings.Contains(summary, "to=<bob@example.org> rejected_to=<mallory@elsewhere.test>") {
		t.Errorf("summary line: %s\nrefusal line: %s", summary, refused)
	}
}
