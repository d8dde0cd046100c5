//go:build e2e

package e2e

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestPostfixServices(t *testing.T) {
	t.Parallel()
	deadMilter := "inet:" + closedAddr(t)
	p := StartPostfix(t, PostfixOptions{
		Milter: deadMilter, // the main smtpd tempfails everything
		Services: []PostfixService{
			// Values with spaces, braces or nothing take master.cf's
			// { name = value } form.
			{Name: "alt", Listen: "127.0.0.3", Options: map[string]string{
				"smtpd_banner":  "$myhostname ESMTP alt service",
				"smtpd_milters": "{ " + deadMilter + ", default_action=accept }",
			}},
			{Name: "six", Listen: "[::1]", Options: map[string]string{"smtpd_milters": ""}},
		},
	})
	if !strings.HasPrefix(p.ServiceAddr["alt"], "127.0.0.3:") || !strings.HasPrefix(p.ServiceAddr["six"], "[::1]:") {
		t.Fatalf("ServiceAddr %v", p.ServiceAddr)
	}
	if !strings.HasPrefix(p.Addr, "127.0.0.1:") {
		t.Fatalf("Addr %q", p.Addr)
	}
	if res := p.Swaks(t, "--from", "a@example.org", "--to", "main@example.com"); !strings.Contains(res.Output, "<** 451 4.7.1") {
		t.Errorf("main smtpd: swaks exit %d, want a 451 for the unreachable milter:\n%s", res.ExitCode, res.Output)
	}
	res := Swaks(t, "--server", p.ServiceAddr["alt"], "--from", "a@example.org", "--to", "alt@example.com")
	if res.ExitCode != 0 || !strings.Contains(res.Output, "<-  220 mx.tollgate.test ESMTP alt service") {
		t.Fatalf("swaks exit %d, want 0 and the alt banner:\n%s", res.ExitCode, res.Output)
	}
	requireFile(t, swaksIPv6Module, swaksIPv6Package)
	if res := Swaks(t, "--server", p.ServiceAddr["six"], "--from", "a@example.org", "--to", "six@example.com"); res.ExitCode != 0 {
		t.Fatalf("swaks exit %d, want 0:\n%s", res.ExitCode, res.Output)
	}
	msgs := p.WaitMessages(t, 2, 30*time.Second)
	if len(msgs) != 2 || msgs[0].Envelope.To()[0] != "alt@example.com" || msgs[1].Envelope.To()[0] != "six@example.com" {
		t.Errorf("sink has %d messages, want those to alt@ and six@", len(msgs))
	}
	log := p.WaitLog(t, "postfix/six/smtpd", 10*time.Second)
	if !strings.Contains(log, "postfix/alt/smtpd") {
		t.Errorf("log lines of the alt service are not tagged postfix/alt:\n%s", log)
	}
}

// closedAddr returns a loopback host:port nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestNginxProxyXCLIENT runs the production path of a client behind a mail
// proxy: client 127.0.0.2 -> nginx (auth_http, XCLIENT) -> Postfix service
// "proxy" -> milter. Every SMTP session opens two milter connections: a
// throw-away one for the proxy's own connection, closed when XCLIENT
// arrives, and one for the real client.
func TestNginxProxyXCLIENT(t *testing.T) {
	t.Parallel()
	rec := startRecordingMilter(t, true)
	p := StartPostfix(t, PostfixOptions{
		Milter: "inet:" + rec.Addr,
		Services: []PostfixService{{Name: "proxy", Options: map[string]string{
			"smtpd_authorized_xclient_hosts": "127.0.0.1",
			"milter_macro_daemon_name":       "proxy-in",
		}}},
	})
	n := StartNginxMailProxy(t, NginxOptions{Upstream: p.ServiceAddr["proxy"], Users: map[string]string{"u": "p w"}})
	_, proxyPort, _ := strings.Cut(p.ServiceAddr["proxy"], ":")

	sessions := []struct {
		name string
		args []string
		user string
	}{
		{"anonymous", nil, ""},
		{"authenticated", []string{"--auth", "PLAIN", "--auth-user", "u", "--auth-password", "p w"}, "u"},
	}
	for i, s := range sessions {
		to := s.name + "@example.com"
		res := n.Swaks(t, append([]string{"--helo", "client.example", "--from", "a@example.org", "--to", to,
			"--header", "Subject: " + s.name}, s.args...)...)
		if res.ExitCode != 0 {
			t.Fatalf("%s: swaks exit %d, want 0:\n%s\nnginx log:\n%s", s.name, res.ExitCode, res.Output, n.Log())
		}
		conns := rec.waitConns(t, 2*(i+1), 10*time.Second)
		if len(conns) != 2*(i+1) {
			t.Fatalf("%s: %d milter connections so far, want %d:\n%s", s.name, len(conns), 2*(i+1), rec.Trace())
		}
		proxy, client := conns[2*i], conns[2*i+1]

		// The throw-away connection: nginx's own, from 127.0.0.1.
		want := map[string]string{"{daemon_name}": "proxy-in", "{client_addr}": "127.0.0.1", "{daemon_port}": proxyPort}
		checkConn(t, s.name+" milter connection 1", proxy, "127.0.0.1", want)
		if proxy.Host != "localhost" || proxy.Helo != NginxServerName || proxy.EOM || proxy.From != "" {
			t.Errorf("%s: milter connection 1: host %q helo %q from %q eom %v, want localhost, %s, no transaction",
				s.name, proxy.Host, proxy.Helo, proxy.From, proxy.EOM, NginxServerName)
		}
		for _, m := range []string{"i", "{auth_type}", "{auth_authen}"} {
			if v, ok := proxy.Macros[m]; ok {
				t.Errorf("%s: milter connection 1 has %s=%q", s.name, m, v)
			}
		}

		// The real client, as XCLIENT described it. nginx sends no PORT,
		// DESTADDR or DESTPORT: the port stays the proxy's, and so do
		// {daemon_addr} and {daemon_port}.
		want = map[string]string{"{daemon_name}": "proxy-in", "{client_addr}": NginxClientIP,
			"{client_name}": "unknown", "{client_port}": strconv.Itoa(int(proxy.Port)), "{daemon_port}": proxyPort}
		if s.user != "" {
			want["{auth_type}"], want["{auth_authen}"] = "XCLIENT", s.user
		}
		checkConn(t, s.name+" milter connection 2", client, NginxClientIP, want)
		if client.Host != "["+NginxClientIP+"]" || client.Port != proxy.Port || client.Helo != "client.example" ||
			!client.EOM || client.From != "a@example.org" {
			t.Errorf("%s: milter connection 2: host %q port %d helo %q from %q eom %v", s.name,
				client.Host, client.Port, client.Helo, client.From, client.EOM)
		}
		if s.user == "" {
			if v, ok := client.Macros["{auth_authen}"]; ok {
				t.Errorf("%s: milter connection 2 has {auth_authen}=%q", s.name, v)
			}
		}

		msgs := p.WaitMessages(t, i+1, 30*time.Second)
		m := msgs[i]
		if got := m.Envelope.To(); len(got) != 1 || got[0] != to {
			t.Errorf("%s: sink recipients %q, want [%s]", s.name, got, to)
		}
		received := m.Header("Received")
		if len(received) == 0 || !strings.Contains(received[0], "(unknown ["+NginxClientIP+"])") ||
			!strings.Contains(received[0], "id "+client.Macros["i"]) {
			t.Errorf("%s: Postfix's Received %q should name the client [%s] and queue id %s",
				s.name, received, NginxClientIP, client.Macros["i"])
		}
	}

	// A wrong password ends at nginx: Postfix and the milter see nothing.
	res := n.Swaks(t, "--from", "a@example.org", "--to", "c@example.com",
		"--auth", "LOGIN", "--auth-user", "u", "--auth-password", "wrong")
	if res.ExitCode == 0 || !strings.Contains(res.Output, "<** 535") {
		t.Errorf("wrong password: swaks exit %d, want a 535:\n%s", res.ExitCode, res.Output)
	}

	reqs := n.AuthRequests()
	if len(reqs) != 3 {
		t.Fatalf("auth_http saw %d requests, want 3: %v", len(reqs), reqs)
	}
	// nginx calls AUTH LOGIN "plain" too: the password is in the clear.
	for i, want := range []struct{ method, user string }{{"none", ""}, {"plain", "u"}, {"plain", "u"}} {
		h := reqs[i]
		if h.Get("Auth-Method") != want.method || h.Get("Auth-User") != want.user ||
			h.Get("Auth-Protocol") != "smtp" || h.Get("Client-Ip") != NginxClientIP {
			t.Errorf("auth_http request %d: %v, want method %s, user %q, protocol smtp, Client-IP %s",
				i+1, h, want.method, want.user, NginxClientIP)
		}
	}
	if got := reqs[1].Get("Auth-Pass"); got != "p%20w" {
		t.Errorf("Auth-Pass %q, want nginx's percent-encoding p%%20w", got)
	}
	if got := reqs[0].Get("Auth-Smtp-To"); got != "RCPT TO:<anonymous@example.com>" {
		t.Errorf("Auth-SMTP-To of the anonymous session %q", got)
	}
	if conns := rec.Conns(); len(conns) != 4 {
		t.Errorf("%d milter connections after the failed login, want still 4:\n%s", len(conns), rec.Trace())
	}
	t.Logf("what the milter was sent:\n%s", rec.Trace())
}

// checkConn compares a recorded milter connection's connect address and
// macros with what is expected.
func checkConn(t *testing.T, what string, c milterConn, addr string, macros map[string]string) {
	t.Helper()
	if c.Addr != addr || c.Family != "tcp4" || c.Port == 0 {
		t.Errorf("%s: connect family %q addr %q port %d, want tcp4 %s", what, c.Family, c.Addr, c.Port, addr)
	}
	for k, v := range macros {
		if got, ok := c.Macros[k]; !ok || got != v {
			t.Errorf("%s: %s = %q (present %v), want %q; all: %v", what, k, got, ok, v, c.Macros)
		}
	}
}

// Without smtpd_authorized_xclient_hosts Postfix refuses XCLIENT: nginx
// must not pass the session on, and passes Postfix's answer to the client.
func TestNginxUpstreamRefusesXCLIENT(t *testing.T) {
	t.Parallel()
	p := StartPostfix(t, PostfixOptions{})
	n := StartNginxMailProxy(t, NginxOptions{Upstream: p.Addr})
	res := n.Swaks(t, "--from", "a@example.org", "--to", "b@example.com")
	if res.ExitCode == 0 || !strings.Contains(res.Output, "<** 550 5.7.0 Error: insufficient authorization") {
		t.Errorf("swaks exit %d, want Postfix's refusal of XCLIENT at RCPT:\n%s", res.ExitCode, res.Output)
	}
	if msgs := p.Sink.Messages(t); len(msgs) != 0 {
		t.Errorf("sink has %d messages, want none", len(msgs))
	}
	if log := n.Log(); !strings.Contains(log, "upstream sent invalid response") {
		t.Errorf("nginx log does not tell:\n%s", log)
	}
}
