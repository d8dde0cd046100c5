package iprev

import (
	"fmt"
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

func ptr(t *testing.T, srv *dnstest.Server, ip string, z *dnstest.Zone) *dnstest.Zone {
	rev, err := dns.ReverseAddr(ip)
	if err != nil {
		t.Fatal(err)
	}
	return srv.Set(rev, z)
}

func testDNS(t *testing.T) *dnstest.Server {
	srv := dnstest.Start(t)
	ptr(t, srv, "192.0.2.10", &dnstest.Zone{RRs: []string{"PTR mail.example.org."}})
	srv.Set("mail.example.org", &dnstest.Zone{RRs: []string{"A 192.0.2.10", "AAAA 2001:db8::10"}})
	ptr(t, srv, "2001:db8::10", &dnstest.Zone{RRs: []string{"PTR mail.example.org."}})
	// a PTR name that points elsewhere, one that does not exist, then the right one
	ptr(t, srv, "192.0.2.11", &dnstest.Zone{RRs: []string{"PTR liar.example.", "PTR gone.example.", "PTR second.example.org."}})
	srv.Set("liar.example", &dnstest.Zone{RRs: []string{"A 198.51.100.1"}})
	srv.Set("second.example.org", &dnstest.Zone{RRs: []string{"A 192.0.2.11"}})
	ptr(t, srv, "192.0.2.12", &dnstest.Zone{RRs: []string{"PTR liar.example."}})
	ptr(t, srv, "192.0.2.13", &dnstest.Zone{RRs: []string{"PTR gone.example."}})
	ptr(t, srv, "192.0.2.14", &dnstest.Zone{Rcode: dns.RcodeServerFailure})
	ptr(t, srv, "192.0.2.15", &dnstest.Zone{RRs: []string{"PTR broken.example.", "PTR liar.example."}})
	srv.Set("broken.example", &dnstest.Zone{Rcode: dns.RcodeServerFailure})
	ptr(t, srv, "192.0.2.16", &dnstest.Zone{NoData: true})
	// an IPv4 name for an IPv6 client does not confirm it
	ptr(t, srv, "2001:db8::11", &dnstest.Zone{RRs: []string{"PTR v4only.example."}})
	srv.Set("v4only.example", &dnstest.Zone{RRs: []string{"A 192.0.2.10"}})
	// eleven names, the matching one last: past the cap
	var many []string
	for i := range 11 {
		many = append(many, fmt.Sprintf("PTR n%d.example.", i))
		srv.Set(fmt.Sprintf("n%d.example", i), &dnstest.Zone{RRs: []string{"A 198.51.100.2"}})
	}
	srv.Set("n10.example", &dnstest.Zone{RRs: []string{"A 192.0.2.17"}})
	ptr(t, srv, "192.0.2.17", &dnstest.Zone{RRs: many})
	return srv
}

func TestCheck(t *testing.T) {
	srv := testDNS(t)
	res := resolver.New(resolver.Options{Server: srv.Addr, Timeout: time.Second})
	for _, tc := range []struct{ ip, result, name string }{
		{"192.0.2.10", "pass", "mail.example.org"},
		{"::ffff:192.0.2.10", "pass", "mail.example.org"},
		{"2001:db8::10", "pass", "mail.example.org"},
		{"192.0.2.11", "pass", "second.example.org"},
		{"192.0.2.12", "fail", ""},
		{"192.0.2.13", "fail", ""},
		{"192.0.2.14", "temperror", ""},
		{"192.0.2.15", "temperror", ""},
		{"192.0.2.16", "permerror", ""},
		{"192.0.2.99", "permerror", ""},
		{"2001:db8::11", "fail", ""},
		{"192.0.2.17", "fail", ""},
	} {
		o := Check(t.Context(), res, netip.MustParseAddr(tc.ip))
		if o.Result != tc.result || o.Name != tc.name {
			t.Errorf("%s: %+v, want %s %q", tc.ip, o, tc.result, tc.name)
		}
		if len(o.Names) > MaxNames || (o.Result != "pass" && o.Problem == "") {
			t.Errorf("%s: %+v", tc.ip, o)
		}
	}
}

func newModule(t *testing.T, srv *dnstest.Server) (*Module, *Metrics) {
	metrics := NewMetrics(prometheus.NewRegistry())
	return NewModule(ModuleOptions{Resolver: resolver.New(resolver.Options{Server: srv.Addr, Timeout: time.Second, CacheSize: -1}),
		Metrics: metrics, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}), metrics
}

// Checked once per session, recorded in every message.
func TestModuleOncePerSession(t *testing.T) {
	srv := testDNS(t)
	zone := ptr(t, srv, "192.0.2.10", &dnstest.Zone{RRs: []string{"PTR mail.example.org."}})
	m, metrics := newModule(t, srv)
	s := &milter.Session{Identity: milter.Identity{ClientAddr: netip.MustParseAddr("192.0.2.10")}}
	if err := m.Connect(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		tx := &milter.Txn{Session: s}
		if err := m.Mail(t.Context(), tx); err != nil {
			t.Fatal(err)
		}
		rs := tx.AuthResults()
		if len(rs) != 1 || authres.FormatResult(rs[0]) != "iprev=pass (mail.example.org) policy.iprev=192.0.2.10" {
			t.Errorf("%+v", rs)
		}
	}
	if zone.Queries() != 1 {
		t.Errorf("PTR asked %d times in one session", zone.Queries())
	}
	if got := testutil.ToFloat64(metrics.Results.WithLabelValues("pass")); got != 1 {
		t.Errorf("counted %v", got)
	}
}

// A temporary failure is asked again with the next message.
func TestModuleRetriesTempError(t *testing.T) {
	srv := testDNS(t)
	zone := ptr(t, srv, "192.0.2.14", &dnstest.Zone{Rcode: dns.RcodeServerFailure})
	m, _ := newModule(t, srv)
	s := &milter.Session{Identity: milter.Identity{ClientAddr: netip.MustParseAddr("192.0.2.14")}}
	m.Connect(t.Context(), s)
	tx := &milter.Txn{Session: s}
	m.Mail(t.Context(), tx)
	if FactsOf(s).Result != "temperror" || zone.Queries() != 2 {
		t.Errorf("%+v after %d queries", FactsOf(s), zone.Queries())
	}
}

// Never the proxy's own session, never a session without an address.
func TestModuleSkipsProxyAndLocal(t *testing.T) {
	srv := testDNS(t)
	m, _ := newModule(t, srv)
	for _, id := range []milter.Identity{{ClientAddr: netip.MustParseAddr("192.0.2.10"), ProxyHandoff: true}, {}} {
		s := &milter.Session{Identity: id}
		m.Connect(t.Context(), s)
		tx := &milter.Txn{Session: s}
		m.Mail(t.Context(), tx)
		if FactsOf(s).Checked || len(tx.AuthResults()) != 0 {
			t.Errorf("%+v: %+v", id, FactsOf(s))
		}
	}
}

func TestPolicy(t *testing.T) {
	srv := testDNS(t)
	p, err := policy.Parse("t.yaml", []byte(`
authserv_id: mx.example.org
dns: {server: "`+srv.Addr+`", timeout: 2s}
iprev: {timeout: 5s}
acl:
  connect:
    - defer: {name: dns-trouble, iprev: [temperror], message: "451 4.4.3 reverse DNS failed for now"}
    - warn: {iprev: [pass], set: {acl_c_name: "$iprev_name"}}
    - accept: {name: rest, iprev: ["!permerror"], set: {acl_c_iprev: "$iprev_result"}}
    - deny: {name: no-ptr, message: "550 5.7.25 no reverse DNS for $sender_host_address"}
`), []feature.Spec{Spec}...)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := policy.NewEnv(nil, prometheus.NewRegistry()).Runtime(p)
	if err != nil {
		t.Fatal(err)
	}
	m := rt.Modules()[0].(*Module)
	for _, tc := range []struct{ ip, rule, vars string }{
		{"192.0.2.10", "rest", "pass mail.example.org"},
		{"192.0.2.12", "rest", "fail "},
		{"192.0.2.14", "dns-trouble", " "},
		{"192.0.2.99", "no-ptr", " "},
	} {
		s := &milter.Session{Identity: milter.Identity{ClientAddr: netip.MustParseAddr(tc.ip)}, Vars: map[string]string{}}
		m.Connect(t.Context(), s)
		d, err := rt.Evaluate(t.Context(), milter.StageConnect, s, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Vars["acl_c_iprev"] + " " + s.Vars["acl_c_name"]; d.Rule != tc.rule || got != tc.vars {
			t.Errorf("%s: rule %s vars %q, want %s %q", tc.ip, d.Rule, got, tc.rule, tc.vars)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ yml, want string }{
		{"iprev: {}\n", "t.yaml:1: iprev needs authserv_id (top level)"},
		{"authserv_id: mx.example.org\niprev: {timeout: 0s}\n", "t.yaml:2: iprev.timeout: must be more than 0"},
		{"authserv_id: mx.example.org\niprev: {}\nacl:\n  connect:\n    - deny: {iprev: [none]}\n", `t.yaml:5: iprev: "none" is not one of pass, fail, temperror, permerror`},
	} {
		if _, err := policy.Parse("t.yaml", []byte(tc.yml), Spec); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yml, err, tc.want)
		}
	}
}
