//go:build e2e

package e2e

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sendmailMilterSpec turns 127.0.0.1:port into Sendmail's inet:port@host.
func sendmailMilterSpec(t *testing.T, addr string) string {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return "inet:" + port + "@" + host
}

func TestSendmailMilter(t *testing.T) {
	t.Parallel()
	// No macro requests: what arrives is SendmailDefaultMilterMacros.
	rec := startRecordingMilter(t, false)
	s := StartSendmail(t, SendmailOptions{Milter: sendmailMilterSpec(t, rec.Addr)})
	_, port, _ := net.SplitHostPort(s.Addr)

	res := SwaksFrom(t, "127.0.0.2", "--server", s.Addr, "--helo", "client.example",
		"--from", "a@example.org", "--to", "b@example.com", "--header", "Subject: via sendmail")
	if res.ExitCode != 0 {
		t.Fatalf("swaks exit %d, want 0:\n%s\n%s", res.ExitCode, res.Output, s.Log())
	}
	// Interactive delivery: the message is in the sink already.
	msgs := s.Sink.Messages(t)
	if len(msgs) != 1 {
		t.Fatalf("sink has %d messages right after the 250, want 1\n%s", len(msgs), s.Log())
	}
	conns := rec.waitConns(t, 1, 10*time.Second)
	if len(conns) != 1 {
		t.Fatalf("%d milter connections, want 1:\n%s", len(conns), rec.Trace())
	}
	c := conns[0]
	checkConn(t, "sendmail milter connection", c, "127.0.0.2", map[string]string{
		"j":             SendmailHostname,
		"{daemon_name}": SendmailDaemonName,
		"{daemon_addr}": "127.0.0.1",
		"{daemon_port}": port,
		"{client_addr}": "127.0.0.2",
		"{client_port}": strconv.Itoa(int(c.Port)),
		"{client_name}": "[127.0.0.2]",
	})
	if c.Host != "[127.0.0.2]" || c.Helo != "client.example" || c.From != "a@example.org" || !c.EOM || c.Macros["i"] == "" {
		t.Errorf("connection: host %q helo %q from %q eom %v i %q", c.Host, c.Helo, c.From, c.EOM, c.Macros["i"])
	}
	m := msgs[0]
	if got := m.Header("Subject"); len(got) != 1 || got[0] != "via sendmail" {
		t.Errorf("Subject %q", got)
	}
	if got := m.Envelope.To(); len(got) != 1 || got[0] != "b@example.com" {
		t.Errorf("recipients %q", got)
	}
	if rcvd := m.Header("Received"); len(rcvd) == 0 || !strings.Contains(rcvd[0], "id "+c.Macros["i"]) ||
		!strings.Contains(rcvd[0], "[127.0.0.2]") {
		t.Errorf("Sendmail's Received %q should name [127.0.0.2] and queue id %s", rcvd, c.Macros["i"])
	}
	t.Logf("what the milter was sent:\n%s", rec.Trace())
}

func TestSendmailMilterMacrosOverride(t *testing.T) {
	t.Parallel()
	rec := startRecordingMilter(t, false)
	s := StartSendmail(t, SendmailOptions{
		Milter:       sendmailMilterSpec(t, rec.Addr),
		MilterMacros: map[string]string{"connect": "j {daemon_name}", "ENVFROM": ""},
	})
	if res := s.Swaks(t, "--from", "a@example.org", "--to", "b@example.com"); res.ExitCode != 0 {
		t.Fatalf("swaks exit %d, want 0:\n%s", res.ExitCode, res.Output)
	}
	conns := rec.waitConns(t, 1, 10*time.Second)
	trace := rec.Trace()
	if !strings.Contains(trace, `D macros for C: j="sendmail.test" {daemon_name}="MTA"`+"\n") {
		t.Errorf("connect macros are not just j and {daemon_name}:\n%s", trace)
	}
	if strings.Contains(trace, "D macros for M") {
		t.Errorf("MAIL macros sent although the list is empty:\n%s", trace)
	}
	if c := conns[0]; c.Addr != "127.0.0.1" || !c.EOM {
		t.Errorf("connection %+v", c)
	}
	s.WaitMessages(t, 1, 10*time.Second)
}

func TestSendmailMilterUnavailable(t *testing.T) {
	t.Parallel()
	s := StartSendmail(t, SendmailOptions{Milter: sendmailMilterSpec(t, closedAddr(t))})
	res := s.Swaks(t, "--from", "a@example.org", "--to", "b@example.com")
	if res.ExitCode == 0 || !strings.Contains(res.Output, "<** 451 4.3.2") {
		t.Errorf("swaks exit %d, want 451 4.3.2 (F=T):\n%s", res.ExitCode, res.Output)
	}
	if msgs := s.Sink.Messages(t); len(msgs) != 0 {
		t.Errorf("sink has %d messages, want none", len(msgs))
	}
}
