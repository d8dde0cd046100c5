//go:build e2e

package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/e2e"
)

// The policy the end-to-end tests put in front of a real Postfix.
const e2eConfig = `
lists:
  local_domains: [example.org]
acl:
  rcpt:
    - drop:   {name: abuse, recipients: [abuse-test@example.org], message: "421 4.7.0 go away"}
    - deny:   {name: relay, recipient_domains: ["!+local_domains"], message: "550 5.7.1 relay not permitted"}
    - defer:  {name: later, recipients: [later@example.org], message: "451 4.7.1 come back later"}
    - accept: {}
  data:
    - deny:   {name: content, header: {name: Subject, regex: "(?i)reject me"}, message: "554 5.7.1 content refused"}
    - accept:
        name: stamp
        remove_header: [X-Forged]
        add_header: [":at_start:X-Tollgate-Client: $sender_host_address", "X-Tollgate-Queue: $queue_id"]
`

// startTollgateInet runs the tollgate binary with its milter on a loopback TCP
// port: Postfix's smtpd runs as the postfix user, which cannot reach a socket
// in the test's private directory.
func startTollgateInet(t *testing.T, config string) (string, *daemonProc) {
	t.Helper()
	milterAddr := freePort(t)
	return milterAddr, launchDaemon(t, config, "inet:"+milterAddr)
}

// startPostfixWithTollgate is tollgate behind a private Postfix on loopback.
func startPostfixWithTollgate(t *testing.T, config string) (*e2e.Postfix, *daemonProc) {
	t.Helper()
	e2e.RequireProgram(t, "/usr/sbin/postfix", "postfix")
	e2e.RequireProgram(t, "/usr/bin/swaks", "swaks")
	milterAddr, d := startTollgateInet(t, config)
	return e2e.StartPostfix(t, e2e.PostfixOptions{Milter: "inet:" + milterAddr}), d
}

var queuedAs = regexp.MustCompile(`queued as ([0-9A-Za-z]+)`)

func TestPostfixEndToEnd(t *testing.T) {
	pf, d := startPostfixWithTollgate(t, e2eConfig)

	t.Run("accepted message carries the policy's headers", func(t *testing.T) {
		res := pf.Swaks(t, "--from", "alice@example.net", "--to", "bob@example.org",
			"--header", "Subject: hello", "--header", "X-Forged: from the client", "--body", "hi bob")
		if res.ExitCode != 0 {
			t.Fatalf("swaks exit %d:\n%s", res.ExitCode, res.Output)
		}
		m := queuedAs.FindStringSubmatch(res.Output)
		if m == nil {
			t.Fatalf("no queue id in:\n%s", res.Output)
		}
		msgs := pf.WaitMessages(t, 1, 30*time.Second)
		got := msgs[0]
		if v := got.Header("X-Tollgate-Client"); len(v) != 1 || v[0] != "127.0.0.1" {
			t.Errorf("X-Tollgate-Client = %q", v)
		}
		if v := got.Header("X-Tollgate-Queue"); len(v) != 1 || v[0] != m[1] {
			t.Errorf("X-Tollgate-Queue = %q, Postfix queued as %s", v, m[1])
		}
		if v := got.Header("X-Forged"); len(v) != 0 {
			t.Errorf("X-Forged survived: %q", v)
		}
		// Header values as delivered: exactly one space after the colon,
		// whichever way the leading-space option was negotiated.
		if !strings.HasPrefix(string(got.Raw), "X-Tollgate-Client: 127.0.0.1\n") || !strings.Contains(string(got.Raw), "\nX-Tollgate-Queue: "+m[1]+"\n") {
			t.Errorf("raw message:\n%s", got.Raw)
		}
		if got.Headers[0].Name != "X-Tollgate-Client" {
			t.Errorf("the :at_start: header is not on top: %v", got.Headers[0])
		}
		if last := got.Headers[len(got.Headers)-1]; last.Name != "X-Tollgate-Queue" {
			t.Errorf("the appended header is not last: %v", last)
		}
		if !strings.Contains(string(got.Body), "hi bob") {
			t.Errorf("body %q", got.Body)
		}
		d.waitLog(t, "queue_id="+m[1])
	})

	t.Run("one recipient refused, the other delivered", func(t *testing.T) {
		before := len(pf.Sink.Messages(t))
		res := pf.Swaks(t, "--from", "alice@example.net", "--to", "bob@example.org,mallory@elsewhere.test,later@example.org",
			"--header", "Subject: partial")
		for _, want := range []string{"550 5.7.1 relay not permitted", "451 4.7.1 come back later"} {
			if !strings.Contains(res.Output, want) {
				t.Errorf("swaks did not see %q:\n%s", want, res.Output)
			}
		}
		msgs := pf.WaitMessages(t, before+1, 30*time.Second)
		env := msgs[len(msgs)-1].Envelope
		if to := env.To(); len(to) != 1 || !strings.Contains(to[0], "bob@example.org") {
			t.Errorf("delivered to %v", to)
		}
	})

	t.Run("relay refused", func(t *testing.T) {
		res := pf.Swaks(t, "--from", "alice@example.net", "--to", "mallory@elsewhere.test")
		if res.ExitCode == 0 || !strings.Contains(res.Output, "<** 550 5.7.1 relay not permitted") {
			t.Errorf("exit %d:\n%s", res.ExitCode, res.Output)
		}
	})

	t.Run("drop closes the SMTP connection", func(t *testing.T) {
		res := pf.Swaks(t, "--from", "alice@example.net", "--to", "abuse-test@example.org")
		if res.ExitCode == 0 || !strings.Contains(res.Output, "<** 421 4.7.0 go away") {
			t.Errorf("exit %d:\n%s", res.ExitCode, res.Output)
		}
		if !strings.Contains(res.Output, "Remote host closed connection") {
			t.Errorf("the connection was not closed by the server:\n%s", res.Output)
		}
	})

	t.Run("content refused at end of data", func(t *testing.T) {
		before := len(pf.Sink.Messages(t))
		res := pf.Swaks(t, "--from", "alice@example.net", "--to", "bob@example.org", "--header", "Subject: please reject me")
		if res.ExitCode == 0 || !strings.Contains(res.Output, "554 5.7.1 content refused") {
			t.Errorf("exit %d:\n%s", res.ExitCode, res.Output)
		}
		time.Sleep(500 * time.Millisecond)
		if n := len(pf.Sink.Messages(t)); n != before {
			t.Errorf("refused message was delivered (%d -> %d)", before, n)
		}
	})

	if !d.waitMetric(t, `tollgate_messages_total{decision="reject"} 2`) || !d.waitMetric(t, `tollgate_messages_total{decision="drop"} 1`) {
		_, body := d.get(t, "/metrics")
		t.Errorf("rejections not counted:\n%s", grepLines(body, "tollgate_messages_total"))
	}
}

// With tollgate down, Postfix's milter_default_action = tempfail defers the
// mail: nothing is lost and nothing passes unchecked.
func TestPostfixTollgateDown(t *testing.T) {
	e2e.RequireProgram(t, "/usr/sbin/postfix", "postfix")
	pf := e2e.StartPostfix(t, e2e.PostfixOptions{Milter: "inet:" + freePort(t)})
	res := pf.Swaks(t, "--from", "alice@example.net", "--to", "bob@example.org")
	if res.ExitCode == 0 || !regexp.MustCompile(`<\*\* 4\d\d`).MatchString(res.Output) {
		t.Errorf("exit %d:\n%s", res.ExitCode, res.Output)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
