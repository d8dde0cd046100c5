//go:build e2e

package main

import (
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tollgate/tollgate/internal/dnstest"
	"github.com/tollgate/tollgate/internal/e2e"
)

func reverseZone(t *testing.T, srv *dnstest.Server, ip, name string) {
	t.Helper()
	rev, err := dns.ReverseAddr(ip)
	if err != nil {
		t.Fatal(err)
	}
	srv.Set(rev, &dnstest.Zone{RRs: []string{"PTR " + name + "."}})
	srv.Set(name, &dnstest.Zone{RRs: []string{"A " + ip}})
}

func spaced(s string) string { return strings.Join(strings.Fields(s), " ") }

// Through a real Postfix: mail leaves with one Authentication-Results that
// carries iprev and spf for the client Postfix saw; behind XCLIENT, for the
// client the proxy named (and auth for its login), never for the proxy.
func TestPostfixSPFIprevAuth(t *testing.T) {
	e2e.RequireProgram(t, "/usr/sbin/postfix", "postfix")
	e2e.RequireProgram(t, "/usr/bin/swaks", "swaks")
	srv := dnstest.Start(t)
	srv.Set("example.net", &dnstest.Zone{RRs: []string{`TXT "v=spf1 ip4:127.0.0.1 -all"`}})
	srv.Set("fail.example", &dnstest.Zone{RRs: []string{`TXT "v=spf1 -all"`}})
	srv.Set("proxied.example", &dnstest.Zone{RRs: []string{`TXT "v=spf1 ip4:192.0.2.10 -all"`}})
	reverseZone(t, srv, "127.0.0.1", "client.example.net")
	reverseZone(t, srv, "192.0.2.10", "real.example.net")

	milterAddr, d := startTollgateInet(t, `
authserv_id: mx.tollgate.test
dns: {server: "`+srv.Addr+`", timeout: 2s}
spf: {received_header: true}
iprev: {}
identity:
  xclient_hosts: [127.0.0.1]
  xclient_daemons: [proxy-in]
acl:
  mail:
    - deny:   {name: spf-fail, spf: [fail], message: "550 5.7.23 $spf_smtp_comment"}
    - accept: {}
  data:
    - accept: {add_header: "X-SPF-Seen: $spf_result/$iprev_result/$iprev_name/$sender_host_address"}
`)
	pf := e2e.StartPostfix(t, e2e.PostfixOptions{Milter: "inet:" + milterAddr,
		// the client the proxy names may relay, as the instance's own loopback does
		MainCF:   map[string]string{"mynetworks": "127.0.0.0/8 [::1]/128 192.0.2.10/32"},
		Services: []e2e.PostfixService{{Name: "proxy", Options: masterCFService(t, "../../deploy/postfix/master.cf")}}})

	t.Run("direct client", func(t *testing.T) {
		res := pf.Swaks(t, "--from", "alice@example.net", "--to", "bob@example.org", "--header", "Subject: spf direct")
		if res.ExitCode != 0 {
			t.Fatalf("exit %d:\n%s", res.ExitCode, res.Output)
		}
		msg := pf.WaitMessages(t, 1, 30*time.Second)[0]
		want := "mx.tollgate.test; iprev=pass (client.example.net) policy.iprev=127.0.0.1; " +
			"spf=pass (mx.tollgate.test: domain of alice@example.net designates 127.0.0.1 as permitted sender) smtp.mailfrom=alice@example.net"
		if ar := msg.Header("Authentication-Results"); len(ar) != 1 || spaced(ar[0]) != want {
			t.Errorf("Authentication-Results %q\nwant %q", ar, want)
		}
		if v := msg.Header("Received-SPF"); len(v) != 1 || !strings.HasPrefix(spaced(v[0]), "pass (mx.tollgate.test: ") || !strings.Contains(v[0], "client-ip=127.0.0.1;") {
			t.Errorf("Received-SPF %q", v)
		}
		if v := msg.Header("X-SPF-Seen"); len(v) != 1 || v[0] != "pass/pass/client.example.net/127.0.0.1" {
			t.Errorf("X-SPF-Seen %q", v)
		}
		if msg.Headers[0].Name != "Authentication-Results" || msg.Headers[1].Name != "Received-SPF" {
			t.Errorf("top headers %s, %s", msg.Headers[0].Name, msg.Headers[1].Name)
		}
	})

	t.Run("direct client refused by the sender's policy", func(t *testing.T) {
		res := pf.Swaks(t, "--from", "mallory@fail.example", "--to", "bob@example.org")
		if res.ExitCode == 0 || !strings.Contains(res.Output, "550 5.7.23 Please see http://www.open-spf.org/Why") {
			t.Errorf("exit %d:\n%s", res.ExitCode, res.Output)
		}
	})

	t.Run("behind XCLIENT the real client is checked", func(t *testing.T) {
		before := len(pf.Sink.Messages(t))
		res := e2e.Swaks(t, "--server", pf.ServiceAddr["proxy"], "--xclient-addr", "192.0.2.10", "--xclient-login", "carol",
			"--from", "carol@proxied.example", "--to", "bob@example.org", "--header", "Subject: spf proxied")
		if res.ExitCode != 0 {
			t.Fatalf("exit %d:\n%s", res.ExitCode, res.Output)
		}
		msgs := pf.WaitMessages(t, before+1, 30*time.Second)
		msg := msgs[len(msgs)-1]
		want := "mx.tollgate.test; auth=pass smtp.auth=carol; iprev=pass (real.example.net) policy.iprev=192.0.2.10; " +
			"spf=pass (mx.tollgate.test: domain of carol@proxied.example designates 192.0.2.10 as permitted sender) smtp.mailfrom=carol@proxied.example"
		if ar := msg.Header("Authentication-Results"); len(ar) != 1 || spaced(ar[0]) != want {
			t.Errorf("Authentication-Results %q\nwant %q", ar, want)
		}
		if v := msg.Header("Received-SPF"); len(v) != 1 || !strings.Contains(v[0], "client-ip=192.0.2.10;") {
			t.Errorf("Received-SPF %q", v)
		}
		// example.net allows the proxy's address only: checked against the
		// real client, the sender fails.
		res = e2e.Swaks(t, "--server", pf.ServiceAddr["proxy"], "--xclient-addr", "192.0.2.10",
			"--from", "alice@example.net", "--to", "bob@example.org")
		if res.ExitCode == 0 || !strings.Contains(res.Output, "550 5.7.23 ") {
			t.Errorf("the proxy's address was checked, not the client's: exit %d\n%s", res.ExitCode, res.Output)
		}
	})

	// One check per real session; the proxies' handoff sessions are never checked.
	for _, line := range []string{`tollgate_spf_results_total{result="pass"} 2`, `tollgate_spf_results_total{result="fail"} 2`,
		`tollgate_iprev_results_total{result="pass"} 4`, `tollgate_proxy_sessions_total{kind="handoff"} 2`} {
		if !d.waitMetric(t, line) {
			_, body := d.get(t, "/metrics")
			t.Errorf("no %s in:\n%s", line, grepLines(body, "tollgate_spf")+grepLines(body, "tollgate_iprev")+grepLines(body, "tollgate_proxy"))
		}
	}
}
