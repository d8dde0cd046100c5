//go:build e2e

package main

import (
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/dnstest"
)

// A client on a DNS list is refused through the real daemon and a real
// Postfix, with the list's TXT text in the reply: at rcpt for one
// recipient (the other delivered), then at connect. The client is
// 127.0.0.1, so its name in a list is 1.0.0.127.<zone>.
func TestPostfixDNSLists(t *testing.T) {
	srv := dnstest.Start(t)
	pf, d := startPostfixWithTollgate(t, `
dns: {server: "`+srv.Addr+`", timeout: 2s, cache_size: 0}
acl:
  connect:
    - deny: {dnslists: [block.tollgate.test], message: "550 5.7.1 connection from $dnslist_matched refused: $dnslist_text"}
    - accept: {}
  rcpt:
    - deny:   {recipients: [bob@example.org], dnslists: [zen.tollgate.test, "bl.tollgate.test=127.0.0.2"], message: "550 5.7.1 listed at $dnslist_domain: $dnslist_text"}
    - accept: {}
`)

	// Not listed anywhere: delivered.
	res := pf.Swaks(t, "--from", "alice@example.net", "--to", "bob@example.org", "--header", "Subject: not listed")
	if res.ExitCode != 0 {
		t.Fatalf("not listed: swaks exit %d:\n%s", res.ExitCode, res.Output)
	}
	pf.WaitMessages(t, 1, 30*time.Second)

	// Listed in the second list with the matching value: bob is refused
	// with the list's text, carol gets the message.
	srv.Set("1.0.0.127.bl.tollgate.test", &dnstest.Zone{RRs: []string{"A 127.0.0.2", `TXT "127.0.0.1 is on the e2e list"`}})
	res = pf.Swaks(t, "--from", "alice@example.net", "--to", "carol@example.org,bob@example.org", "--header", "Subject: listed")
	if want := "550 5.7.1 listed at bl.tollgate.test: 127.0.0.1 is on the e2e list"; !strings.Contains(res.Output, want) {
		t.Errorf("swaks did not see %q:\n%s", want, res.Output)
	}
	msgs := pf.WaitMessages(t, 2, 30*time.Second)
	if got := msgs[1].Header("To"); len(got) != 1 || !strings.Contains(got[0], "carol@example.org") {
		t.Errorf("second message To %q", got)
	}
	if !d.waitMetric(t, `tollgate_dnslist_lookups_total{result="listed"} 1`) {
		_, body := d.get(t, "/metrics")
		t.Errorf("metrics:\n%s", grepLines(body, "tollgate_dnslist"))
	}

	// Listed in the connect ACL's list: the connection is refused, nothing
	// more is delivered. Postfix answers a connect-stage reject with its
	// own 554 banner; the list's text is in tollgate's log line.
	srv.Set("1.0.0.127.block.tollgate.test", &dnstest.Zone{RRs: []string{"A 127.0.0.4", `TXT "see https://block.tollgate.test/127.0.0.1"`}})
	res = pf.Swaks(t, "--from", "alice@example.net", "--to", "carol@example.org", "--header", "Subject: blocked")
	if res.ExitCode == 0 {
		t.Errorf("a blocked client's mail was accepted:\n%s", res.Output)
	}
	if want := "554 mx.tollgate.test ESMTP not accepting connections"; !strings.Contains(res.Output, want) {
		t.Errorf("swaks did not see %q:\n%s", want, res.Output)
	}
	d.waitLog(t, `msg="connection refused" session=3 client="localhost [127.0.0.1]" decision=reject reply="550 5.7.1 connection from 127.0.0.1 refused: see https://block.tollgate.test/127.0.0.1" rule=connect/1`)
	if !d.waitMetric(t, `tollgate_dnslist_lookups_total{result="listed"} 2`) {
		_, body := d.get(t, "/metrics")
		t.Errorf("metrics:\n%s", grepLines(body, "tollgate_dnslist"))
	}
	if n := len(pf.Sink.Messages(t)); n != 2 {
		t.Errorf("%d messages delivered, want 2", n)
	}
}
