package spf

import (
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tollgate/tollgate/feature"
	"github.com/tollgate/tollgate/internal/authres"
	"github.com/tollgate/tollgate/internal/dnstest"
	"github.com/tollgate/tollgate/internal/resolver"
	"github.com/tollgate/tollgate/milter"
	"github.com/tollgate/tollgate/policy"
)

var specs = []feature.Spec{Spec}

// testDNS serves the records the module tests use.
func testDNS(t *testing.T) *dnstest.Server {
	srv := dnstest.Start(t)
	srv.Set("example.org", &dnstest.Zone{RRs: []string{`TXT "v=spf1 ip4:192.0.2.0/24 -all"`}})
	srv.Set("soft.example", &dnstest.Zone{RRs: []string{`TXT "v=spf1 ~all"`}})
	srv.Set("neutral.example", &dnstest.Zone{RRs: []string{`TXT "v=spf1 ?all"`}})
	srv.Set("broken.example", &dnstest.Zone{RRs: []string{`TXT "v=spf1 ip4:192.0.2.300 -all"`}})
	srv.Set("dnsfail.example", &dnstest.Zone{Rcode: dns.RcodeServerFailure})
	srv.Set("nospf.example", &dnstest.Zone{RRs: []string{`TXT "hello"`}})
	srv.Set("xn--bcher-kva.example", &dnstest.Zone{RRs: []string{`TXT "v=spf1 ip4:192.0.2.33 -all"`}})
	srv.Set("mail.example.net", &dnstest.Zone{RRs: []string{`TXT "v=spf1 a -all"`, "A 198.51.100.7"}})
	return srv
}

func newTestModule(t *testing.T, srv *dnstest.Server, o ModuleOptions) (*Module, *Metrics) {
	o.Resolver = resolver.New(resolver.Options{Server: srv.Addr, Timeout: time.Second})
	o.Receiver = "mx.example.org"
	o.Metrics = NewMetrics(prometheus.NewRegistry())
	o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	return NewModule(o), o.Metrics
}

func session(ip, helo string) *milter.Session {
	s := &milter.Session{Vars: map[string]string{}}
	if ip != "" {
		s.Identity.ClientAddr = netip.MustParseAddr(ip)
	}
	s.Identity.Helo = helo
	return s
}

// A client's PTR name counts for ptr only when it leads back to the
// client (RFC 7208 §5.5): a reverse zone the client controls cannot claim
// a victim's host names.
func TestPTRNeedsForwardConfirmation(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Set("victim.example", &dnstest.Zone{RRs: []string{`TXT "v=spf1 ptr -all"`}})
	srv.Set("mail.victim.example", &dnstest.Zone{RRs: []string{"A 192.0.2.80"}})
	srv.Set("80.2.0.192.in-addr.arpa", &dnstest.Zone{RRs: []string{"PTR mail.victim.example."}})
	srv.Set("66.113.0.203.in-addr.arpa", &dnstest.Zone{RRs: []string{"PTR elsewhere.example.", "PTR mail.victim.example."}})
	res := resolver.New(resolver.Options{Server: srv.Addr, Timeout: time.Second})
	for ip, want := range map[string]string{"192.0.2.80": "pass", "203.0.113.66": "fail"} {
		o := Check(t.Context(), res, Request{IP: netip.MustParseAddr(ip), Helo: "x.example", Sender: "a@victim.example"})
		if o.Result != want {
			t.Errorf("%s: %s (%s), want %s", ip, o.Result, o.Problem, want)
		}
	}
}

func TestModuleResults(t *testing.T) {
	srv := testDNS(t)
	m, metrics := newTestModule(t, srv, ModuleOptions{})
	for _, tc := range []struct {
		ip, helo, sender string
		result, ar       string
		smtpComment      bool
	}{
		{"192.0.2.10", "client.example", "alice@example.org", "pass",
			"spf=pass (mx.example.org: domain of alice@example.org designates 192.0.2.10 as permitted sender) smtp.mailfrom=alice@example.org", false},
		{"203.0.113.5", "client.example", "alice@example.org", "fail",
			"spf=fail (mx.example.org: domain of alice@example.org does not designate 203.0.113.5 as permitted sender) smtp.mailfrom=alice@example.org", true},
		{"203.0.113.5", "client.example", "bob@soft.example", "softfail", "", true},
		{"203.0.113.5", "client.example", "bob@neutral.example", "neutral", "", false},
		{"203.0.113.5", "client.example", "bob@nospf.example", "none", "", false},
		{"203.0.113.5", "client.example", "bob@nxdomain.example", "none", "", false},
		{"203.0.113.5", "client.example", "bob@broken.example", "permerror", "", false},
		{"203.0.113.5", "client.example", "bob@dnsfail.example", "temperror", "", false},
		{"::ffff:192.0.2.10", "client.example", "alice@example.org", "pass", "", false},
		// the null sender is checked as postmaster@HELO and recorded as smtp.helo
		{"198.51.100.7", "mail.example.net", "", "pass",
			"spf=pass (mx.example.org: domain of postmaster@mail.example.net designates 198.51.100.7 as permitted sender) smtp.helo=mail.example.net", false},
		{"198.51.100.8", "mail.example.net", "", "fail", "", true},
		{"198.51.100.8", "[198.51.100.8]", "", "none", "", false},
		// an SMTPUTF8 sender's domain is looked up as A-labels
		{"192.0.2.33", "client.example", "jörg@bücher.example", "pass", "", false},
		{"192.0.2.33", "client.example", "x@a\u00a0b.example", "none", "", false},
	} {
		tx := &milter.Txn{Session: session(tc.ip, tc.helo), Sender: tc.sender}
		if err := m.Mail(t.Context(), tx); err != nil {
			t.Fatal(err)
		}
		f := FactsOf(tx)
		if f.Result != tc.result {
			t.Errorf("%s from %s: %s (%s), want %s", tc.sender, tc.ip, f.Result, f.Problem, tc.result)
			continue
		}
		rs := tx.AuthResults()
		if len(rs) != 1 || rs[0].Method != "spf" || rs[0].Result != tc.result {
			t.Errorf("%s: auth results %+v", tc.sender, rs)
			continue
		}
		if got := authres.FormatResult(rs[0]); tc.ar != "" && got != tc.ar {
			t.Errorf("%s: %q\nwant %q", tc.sender, got, tc.ar)
		}
		if (f.SMTPComment != "") != tc.smtpComment {
			t.Errorf("%s: smtp comment %q", tc.sender, f.SMTPComment)
		}
		if !strings.HasPrefix(f.Received, tc.result+" (mx.example.org: ") || !strings.Contains(f.Received, " receiver=mx.example.org;") {
			t.Errorf("%s: Received-SPF %q", tc.sender, f.Received)
		}
		if (tc.result == "temperror" || tc.result == "permerror") && !strings.Contains(f.Received, " problem=") {
			t.Errorf("%s: Received-SPF without problem=: %q", tc.sender, f.Received)
		}
	}
	if got := testutil.ToFloat64(metrics.Results.WithLabelValues("pass")); got != 4 {
		t.Errorf("pass counted %v times", got)
	}
}

// The check is of the client the MTA names in the identity (behind XCLIENT,
// the real one), never of the proxy's own session or a local submission.
func TestModuleSkipsProxyAndLocal(t *testing.T) {
	srv := testDNS(t)
	m, _ := newTestModule(t, srv, ModuleOptions{})
	handoff := session("192.0.2.10", "proxy.example")
	handoff.Identity.ProxyHandoff = true
	for _, s := range []*milter.Session{handoff, session("", "localhost")} {
		tx := &milter.Txn{Session: s, Sender: "alice@example.org"}
		if err := m.Mail(t.Context(), tx); err != nil {
			t.Fatal(err)
		}
		if FactsOf(tx).Checked || len(tx.AuthResults()) != 0 {
			t.Errorf("%+v: checked %+v", s.Identity, FactsOf(tx))
		}
	}
}

func TestModuleHeloOnceAndReceived(t *testing.T) {
	srv := testDNS(t)
	zone := srv.Set("helo.example", &dnstest.Zone{RRs: []string{`TXT "v=spf1 ip4:192.0.2.10 -all"`}})
	m, metrics := newTestModule(t, srv, ModuleOptions{Helo: true, ReceivedHeader: true})
	m.o.Resolver = resolver.New(resolver.Options{Server: srv.Addr, Timeout: time.Second, CacheSize: -1})
	s := session("192.0.2.10", "helo.example")
	for range 3 {
		tx := &milter.Txn{Session: s, Sender: "alice@example.org"}
		if err := m.Mail(t.Context(), tx); err != nil {
			t.Fatal(err)
		}
		f := FactsOf(tx)
		if f.Result != "pass" || f.HeloResult != "pass" || f.Identity != IdentityMailFrom {
			t.Errorf("%+v", f)
		}
		if len(tx.Mutations.Prepend) != 1 || tx.Mutations.Prepend[0].Name != "Received-SPF" ||
			tx.Mutations.Prepend[0].Value != `pass (mx.example.org: domain of alice@example.org designates 192.0.2.10 as permitted sender) client-ip=192.0.2.10; envelope-from="alice@example.org"; helo=helo.example; receiver=mx.example.org; identity=mailfrom;` {
			t.Errorf("prepend %+v", tx.Mutations.Prepend)
		}
		if len(tx.AuthResults()) != 1 {
			t.Errorf("one spf result per message: %+v", tx.AuthResults())
		}
	}
	if zone.Queries() != 1 {
		t.Errorf("HELO policy asked %d times in one session, want once", zone.Queries())
	}
	if got := testutil.ToFloat64(metrics.Helo.WithLabelValues("pass")); got != 1 {
		t.Errorf("helo pass counted %v times", got)
	}
	if n := m.Needs(); n.Actions&milter.ActAddHeader == 0 {
		t.Errorf("needs %+v", n)
	}
}

// Client bytes in the sender and HELO cannot end the comment or add
// fields.
func TestReceivedSPFEscapes(t *testing.T) {
	req := Request{IP: netip.MustParseAddr("192.0.2.1"), Helo: "x\r\nX-Evil: 1", Sender: `a")(\@example.org`, Receiver: "mx.example.org"}
	o := Outcome{Result: "fail", Identity: IdentityMailFrom, Address: req.Sender, Domain: "example.org"}
	got := o.ReceivedSPF(req)
	if strings.ContainsAny(got, "\r\n") || !strings.Contains(got, `envelope-from="a\")(\\@example.org";`) || !strings.Contains(got, `domain of a"\)\(\\@example.org`) {
		t.Errorf("%q", got)
	}
}

func TestPolicyConditionsAndVariables(t *testing.T) {
	srv := testDNS(t)
	p, err := policy.Parse("t.yaml", []byte(`
authserv_id: mx.example.org
dns: {server: "`+srv.Addr+`", timeout: 2s}
spf: {helo: true, timeout: 5s}
acl:
  mail:
    - deny: {name: spf-fail, spf: [fail], message: "550 5.7.23 $spf_smtp_comment"}
    - warn: {name: unsure, spf: ["!pass", "!none"], set: {acl_m_spf: "$spf_result $spf_used_domain"}}
    - accept: {name: rest, set: {acl_m_rest: "$spf_result/$spf_helo_result"}}
  rcpt:
    - accept: {spf: [pass], add_header: "Received-SPF: $spf_received"}
`), specs...)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := policy.NewEnv(nil, prometheus.NewRegistry()).Runtime(p)
	if err != nil {
		t.Fatal(err)
	}
	mods := rt.Modules()
	if len(mods) != 1 || mods[0].Name() != "spf" {
		t.Fatalf("modules %v", mods)
	}
	m := mods[0].(*Module)
	for _, tc := range []struct {
		ip, sender, rule, var_ string
	}{
		{"203.0.113.5", "alice@example.org", "spf-fail", ""},
		{"203.0.113.5", "bob@soft.example", "rest", "softfail soft.example|softfail/none"},
		{"192.0.2.10", "alice@example.org", "rest", "|pass/none"},
		{"192.0.2.10", "bob@nospf.example", "rest", "|none/none"},
	} {
		s := session(tc.ip, "client.example")
		tx := &milter.Txn{Session: s, Sender: tc.sender, Vars: map[string]string{}}
		if err := m.Mail(t.Context(), tx); err != nil {
			t.Fatal(err)
		}
		d, err := rt.Evaluate(t.Context(), milter.StageMail, s, tx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := tx.Vars["acl_m_spf"] + "|" + tx.Vars["acl_m_rest"]; d.Rule != tc.rule || (tc.var_ != "" && got != tc.var_) {
			t.Errorf("%s from %s: rule %s vars %v, want %s %q", tc.sender, tc.ip, d.Rule, tx.Vars, tc.rule, tc.var_)
		}
		if tc.rule == "spf-fail" && !strings.Contains(d.Reply.String(), DefaultSMTPComment) {
			t.Errorf("reply %q", d.Reply.String())
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ yml, want string }{
		{"spf: {}\n", "t.yaml:1: spf needs authserv_id (top level)"},
		{"authserv_id: mx.example.org\nspf: {timeout: 0s}\n", "t.yaml:2: spf.timeout: must be more than 0"},
		{"authserv_id: mx.example.org\nspf: {}\nacl:\n  mail:\n    - deny: {spf: [failed]}\n", `t.yaml:5: spf: "failed" is not one of pass, fail`},
		{"authserv_id: mx.example.org\nspf: {}\nacl:\n  connect:\n    - deny: {spf: [fail]}\n", "spf is not available at connect"},
		{"authserv_id: mx.example.org\nspf: {sender_id: true}\n", "sender_id"},
	} {
		if _, err := policy.Parse("t.yaml", []byte(tc.yml), specs...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yml, err, tc.want)
		}
	}
}
