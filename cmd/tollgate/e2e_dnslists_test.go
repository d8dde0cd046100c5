//go:build e2e

package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/dnstest"
	"github.com/tollgate/tollgate/internal/e2e"
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

// Behind an XCLIENT proxy (nginx, the documented Postfix and nginx
// snippets), dnslists looks up the real client, 127.0.0.2, never the
// proxy's own address 127.0.0.1, which the list also names.
func TestNginxXCLIENTDNSLists(t *testing.T) {
	e2e.RequireProgram(t, "/usr/sbin/postfix", "postfix")
	e2e.RequireProgram(t, e2e.NginxProgram, "nginx")
	srv := dnstest.Start(t)
	srv.Set("1.0.0.127.zen.tollgate.test", &dnstest.Zone{RRs: []string{"A 127.0.0.2", `TXT "the proxy itself"`}})
	milterAddr, d := startTollgateInet(t, `
dns: {server: "`+srv.Addr+`", cache_size: 0}
identity:
  xclient_hosts: [127.0.0.1]
  xclient_daemons: [proxy-in]
acl:
  rcpt:
    - deny:   {dnslists: [zen.tollgate.test], message: "550 5.7.1 $dnslist_matched listed at $dnslist_domain: $dnslist_text"}
    - accept: {}
`)
	svc := masterCFService(t, "../../deploy/postfix/master.cf")
	pf := e2e.StartPostfix(t, e2e.PostfixOptions{Milter: "inet:" + milterAddr,
		Services: []e2e.PostfixService{{Name: "proxy", Options: svc}}})
	mailBlock, err := os.ReadFile("../../deploy/nginx/mail-proxy.conf")
	if err != nil {
		t.Fatal(err)
	}
	ng := e2e.StartNginxMailProxy(t, e2e.NginxOptions{Upstream: pf.ServiceAddr["proxy"], MailBlock: string(mailBlock)})

	res := ng.Swaks(t, "--from", "someone@elsewhere.test", "--to", "bob@example.org", "--header", "Subject: via proxy")
	if res.ExitCode != 0 {
		t.Fatalf("the proxy's address was looked up, not the client's: exit %d\n%s", res.ExitCode, res.Output)
	}
	pf.WaitMessages(t, 1, 30*time.Second)

	srv.Set("2.0.0.127.zen.tollgate.test", &dnstest.Zone{RRs: []string{"A 127.0.0.2", `TXT "the real client"`}})
	res = ng.Swaks(t, "--from", "someone@elsewhere.test", "--to", "bob@example.org", "--header", "Subject: listed via proxy")
	if want := "550 5.7.1 " + e2e.NginxClientIP + " listed at zen.tollgate.test: the real client"; !strings.Contains(res.Output, want) {
		t.Errorf("swaks did not see %q:\n%s", want, res.Output)
	}
	if !d.waitMetric(t, `tollgate_dnslist_lookups_total{result="listed"} 1`) || !d.metric(t, `tollgate_dnslist_lookups_total{result="not_listed"} 1`) {
		_, body := d.get(t, "/metrics")
		t.Errorf("metrics:\n%s", grepLines(body, "tollgate_dnslist"))
	}
}
