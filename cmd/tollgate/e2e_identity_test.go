//go:build e2e

package main

import (
	"bufio"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/e2e"
)

// The identity facts tollgate saw, written into the message so the tests can
// read them back from what the MTA delivered.
const identityHeader = "X-Identity: client=$sender_host_address name=$sender_host_name login=$authenticated_id " +
	"mech=$sender_host_authenticated proxied=$proxy_session proxy=$proxy_local_address listener=$received_port"

const proxyConfig = `
identity:
  xclient_hosts: [127.0.0.1]
  xclient_daemons: [proxy-in]
acl:
  connect:
    - deny:   {name: proxy-direct, hosts: [127.0.0.1], proxied: false, message: "550 5.7.1 no direct mail from the proxy host"}
    - accept: {}
  rcpt:
    - accept: {name: submitter, authenticated: "*", proxied: true}
    - accept: {name: inbound, recipient_domains: [example.org]}
    - deny:   {name: relay, message: "550 5.7.1 relay not permitted"}
  data:
    - accept: {add_header: ":at_start:` + identityHeader + `"}
`

// masterCFService reads the -o options of the first service in a master.cf
// snippet, so the documented snippet is what the test runs.
func masterCFService(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(strings.TrimPrefix(line, "-o "), "="); ok && strings.HasPrefix(line, "-o ") {
			opts[k] = v
		}
	}
	if len(opts) == 0 {
		t.Fatalf("%s: no -o options", path)
	}
	return opts
}

func identityOf(t *testing.T, m e2e.Message) map[string]string {
	t.Helper()
	v := m.Header("X-Identity")
	if len(v) != 1 {
		t.Fatalf("X-Identity headers: %q\n%s", v, m.Raw)
	}
	out := map[string]string{}
	for _, f := range strings.Fields(v[0]) {
		k, val, _ := strings.Cut(f, "=")
		out[k] = val
	}
	return out
}

func TestNginxXCLIENTProxy(t *testing.T) {
	e2e.RequireProgram(t, "/usr/sbin/postfix", "postfix")
	e2e.RequireProgram(t, e2e.NginxProgram, "nginx")
	milterAddr, d := startTollgateInet(t, proxyConfig)
	svc := masterCFService(t, "../../deploy/postfix/master.cf")
	pf := e2e.StartPostfix(t, e2e.PostfixOptions{Milter: "inet:" + milterAddr,
		Services: []e2e.PostfixService{{Name: "proxy", Options: svc}}})
	// nginx runs the documented mail block (deploy/nginx/mail-proxy.conf).
	mailBlock, err := os.ReadFile("../../deploy/nginx/mail-proxy.conf")
	if err != nil {
		t.Fatal(err)
	}
	ng := e2e.StartNginxMailProxy(t, e2e.NginxOptions{Upstream: pf.ServiceAddr["proxy"], Users: map[string]string{"carol": "secret"},
		MailBlock: string(mailBlock)})

	t.Run("authenticated client through nginx", func(t *testing.T) {
		res := ng.Swaks(t, "--from", "carol@example.org", "--to", "friend@elsewhere.test",
			"--auth", "PLAIN", "--auth-user", "carol", "--auth-password", "secret", "--header", "Subject: via proxy")
		if res.ExitCode != 0 {
			t.Fatalf("exit %d:\n%s", res.ExitCode, res.Output)
		}
		msgs := pf.WaitMessages(t, 1, 30*time.Second)
		id := identityOf(t, msgs[len(msgs)-1])
		if id["client"] != e2e.NginxClientIP || id["login"] != "carol" || id["mech"] != "XCLIENT" || id["proxied"] != "yes" || id["proxy"] != "127.0.0.1" {
			t.Errorf("identity %v", id)
		}
	})

	t.Run("anonymous client through nginx", func(t *testing.T) {
		before := len(pf.Sink.Messages(t))
		res := ng.Swaks(t, "--from", "someone@elsewhere.test", "--to", "bob@example.org", "--header", "Subject: inbound via proxy")
		if res.ExitCode != 0 {
			t.Fatalf("exit %d:\n%s", res.ExitCode, res.Output)
		}
		msgs := pf.WaitMessages(t, before+1, 30*time.Second)
		id := identityOf(t, msgs[len(msgs)-1])
		if id["client"] != e2e.NginxClientIP || id["login"] != "" || id["proxied"] != "yes" || id["name"] != "" {
			t.Errorf("identity %v", id)
		}
		// An anonymous client may not relay: the ACL saw no login.
		res = ng.Swaks(t, "--from", "someone@elsewhere.test", "--to", "friend@elsewhere.test")
		if res.ExitCode == 0 || !strings.Contains(res.Output, "relay not permitted") {
			t.Errorf("anonymous relay through the proxy: exit %d\n%s", res.ExitCode, res.Output)
		}
	})

	t.Run("direct mail from the proxy's address is refused", func(t *testing.T) {
		res := pf.Swaks(t, "--from", "a@example.org", "--to", "bob@example.org")
		// At connect Postfix answers with its own 554 banner, not the milter's text.
		if res.ExitCode == 0 || !strings.Contains(res.Output, "<** 554 ") {
			t.Errorf("exit %d:\n%s", res.ExitCode, res.Output)
		}
		d.waitLog(t, `msg="connection refused" session=`)
		if !strings.Contains(d.log.String(), `client="localhost [127.0.0.1]" decision=reject reply="550 5.7.1 no direct mail from the proxy host" rule=proxy-direct`) {
			t.Errorf("no log line for the refused connection:\n%s", d.log.String())
		}
	})

	// Every proxied SMTP session began with a handoff session that no rule judged.
	if !d.waitMetric(t, `tollgate_proxy_sessions_total{kind="handoff"} 3`) || !d.waitMetric(t, `tollgate_proxy_sessions_total{kind="proxied"} 3`) {
		_, body := d.get(t, "/metrics")
		t.Errorf("proxy sessions:\n%s", grepLines(body, "tollgate_proxy_sessions_total"))
	}
	_, body := d.get(t, "/metrics")
	if strings.Contains(body, `rule="proxy-direct",stage="connect",verb="deny"} 3`) || !strings.Contains(body, `rule="proxy-direct",stage="connect",verb="deny"} 1`) {
		t.Errorf("the proxy-direct rule fired for handoff sessions:\n%s", grepLines(body, "proxy-direct"))
	}
}

func TestSendmailIdentity(t *testing.T) {
	milterAddr, d := startTollgateInet(t, `
acl:
  data:
    - accept: {add_header: ":at_start:`+identityHeader+` queue=$queue_id"}
`)
	host, port, _ := strings.Cut(milterAddr, ":")
	flags, macros := sendmailSnippet(t, "../../deploy/sendmail/sendmail.mc")
	sm := e2e.StartSendmail(t, e2e.SendmailOptions{Milter: "inet:" + port + "@" + host, MilterFlags: flags, MilterMacros: macros})
	res := e2e.SwaksFrom(t, "127.0.0.2", "--server", sm.Addr, "--from", "alice@example.net", "--to", "bob@example.org", "--header", "Subject: sendmail")
	if res.ExitCode != 0 {
		t.Fatalf("exit %d:\n%s\n%s", res.ExitCode, res.Output, sm.Log())
	}
	msgs := sm.WaitMessages(t, 1, 30*time.Second)
	id := identityOf(t, msgs[0])
	_, smPort, _ := strings.Cut(sm.Addr, ":")
	if id["client"] != "127.0.0.2" || id["name"] != "" || id["proxied"] != "no" || id["listener"] != smPort || id["queue"] == "" {
		t.Errorf("identity %v", id)
	}
	d.waitLog(t, `client=[127.0.0.2]`)
	if !regexp.MustCompile(`msg=message queue_id=\S+ client=\[127\.0\.0\.2\] .*decision=accept`).MatchString(d.log.String()) {
		t.Errorf("summary line:\n%s", d.log.String())
	}
}

var (
	mcMacros = regexp.MustCompile("define\\(`confMILTER_MACROS_([A-Z]+)', `([^']*)'\\)")
	mcFlags  = regexp.MustCompile("(?m)^INPUT_MAIL_FILTER\\(`tollgate', `[^']*\\bF=([A-Z]+)")
)

// sendmailSnippet reads the F= flags and the macro lists of the documented
// sendmail.mc lines, so the Sendmail test runs what the snippet says.
func sendmailSnippet(t *testing.T, path string) (string, map[string]string) {
	t.Helper()
	mc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f := mcFlags.FindSubmatch(mc)
	if f == nil {
		t.Fatalf("%s: no INPUT_MAIL_FILTER with F=", path)
	}
	macros := map[string]string{}
	for _, m := range mcMacros.FindAllSubmatch(mc, -1) {
		macros[string(m[1])] = string(m[2])
	}
	if len(macros) < 5 {
		t.Fatalf("%s: only %d macro lists", path, len(macros))
	}
	return string(f[1]), macros
}

func TestPostfixIPv6Client(t *testing.T) {
	e2e.RequireProgram(t, "/usr/sbin/postfix", "postfix")
	milterAddr, _ := startTollgateInet(t, `
acl:
  connect:
    - deny:   {hosts: ["!::1"], message: "550 5.7.1 only ::1 here"}
    - accept: {}
  data:
    - accept: {add_header: ":at_start:`+identityHeader+`"}
`)
	pf := e2e.StartPostfix(t, e2e.PostfixOptions{Milter: "inet:" + milterAddr, Listen: "[::1]"})
	res := pf.Swaks(t, "--from", "alice@example.net", "--to", "bob@example.org", "-6")
	if res.ExitCode != 0 {
		t.Fatalf("exit %d:\n%s", res.ExitCode, res.Output)
	}
	id := identityOf(t, pf.WaitMessages(t, 1, 30*time.Second)[0])
	if id["client"] != "::1" {
		t.Errorf("identity %v", id)
	}
}
