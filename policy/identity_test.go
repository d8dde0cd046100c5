package policy

import (
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/milter"
)

const proxyPolicy = `
identity:
  xclient_hosts: [127.0.0.1]
  xclient_daemons: [proxy-in]
  proxy_without_xclient: reject
acl:
  rcpt:
    - deny:   {name: proxy-direct, hosts: [127.0.0.1]}
    - accept: {name: via-proxy, proxied: true, proxy_hosts: [127.0.0.0/8], add_header: "X-Client: $sender_host_address via $proxy_local_address ($proxy_session) to $proxy_external_address:$proxy_external_port as $authenticated_id/$sender_host_authenticated"}
    - deny:   {name: not-proxied, proxied: false}
`

func TestIdentityConfig(t *testing.T) {
	p := mustParse(t, proxyPolicy)
	ic := NewRuntime(p, slog.New(slog.NewTextHandler(io.Discard, nil)), milter.NewMetrics(prometheus.NewRegistry())).Identity()
	if !ic.XClientHost(netip.MustParseAddr("127.0.0.1")) || ic.XClientHost(netip.MustParseAddr("127.0.0.2")) ||
		ic.ProxyAddr.String() != "127.0.0.1" || len(ic.XClientDaemons) != 1 || ic.WithoutXClient.Verdict != milter.Reject {
		t.Errorf("%+v", ic)
	}
	for _, w := range p.Warnings {
		if strings.Contains(w.Msg, "identity") {
			t.Errorf("warning %v", w)
		}
	}
	// Defaults: no proxies; mail from a proxy without XCLIENT is deferred.
	def := mustParse(t, "acl: {}\n")
	if def.identity.XClientHost != nil || def.identity.WithoutXClient.Verdict != milter.TempFail {
		t.Errorf("%+v", def.identity)
	}
	// A network of proxies: their address is not known after XCLIENT.
	nw := mustParse(t, "identity: {xclient_hosts: [10.0.0.0/24], xclient_daemons: [p]}\n")
	if nw.identity.ProxyAddr.IsValid() {
		t.Errorf("proxy address guessed from a network: %v", nw.identity.ProxyAddr)
	}
	warn := mustParse(t, "identity: {xclient_hosts: [127.0.0.1]}\n")
	if len(warn.Warnings) != 1 || !strings.Contains(warn.Warnings[0].Msg, "xclient_daemons is empty") {
		t.Errorf("%v", warn.Warnings)
	}
}

func TestIdentityConfigErrors(t *testing.T) {
	_, err := Parse("id.yaml", []byte("identity:\n  xclient_daemons: [proxy-in]\n  proxy_without_xclient: maybe\n  xclient_host: [127.0.0.1]\n"), testFeatures...)
	for _, want := range []string{"id.yaml:2: identity.xclient_daemons needs identity.xclient_hosts", "id.yaml:3: identity.proxy_without_xclient",
		`id.yaml:4: unknown key "xclient_host" (did you mean "xclient_hosts"?)`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}

func TestProxyConditionsAndVariables(t *testing.T) {
	p := mustParse(t, proxyPolicy)
	rt := NewRuntime(p, slog.New(slog.NewTextHandler(io.Discard, nil)), milter.NewMetrics(prometheus.NewRegistry()))
	run := func(id milter.Identity) (milter.Decision, *milter.Txn) {
		s := &milter.Session{Vars: map[string]string{}, Identity: id}
		tx := &milter.Txn{Session: s, Sender: "a@example.net"}
		r := &milter.Recipient{Addr: "b@example.org"}
		tx.Rcpts = []*milter.Recipient{r}
		d, _ := rt.Evaluate(t.Context(), milter.StageRcpt, s, tx, r)
		return d, tx
	}
	proxied := milter.Identity{ClientAddr: netip.MustParseAddr("203.0.113.8"), ProxySession: true,
		ProxyLocalAddr: netip.MustParseAddr("127.0.0.1"), ProxyExternalAddr: netip.MustParseAddr("192.0.2.25"), ProxyExternalPort: 25,
		AuthLogin: "carol", AuthMechanism: "XCLIENT"}
	d, tx := run(proxied)
	if d.Rule != "via-proxy" || len(tx.Mutations.Append) != 1 ||
		tx.Mutations.Append[0].Value != "203.0.113.8 via 127.0.0.1 (yes) to 192.0.2.25:25 as carol/XCLIENT" {
		t.Errorf("%+v %+v", d, tx.Mutations.Append)
	}
	if d, _ := run(milter.Identity{ClientAddr: netip.MustParseAddr("127.0.0.1")}); d.Rule != "proxy-direct" {
		t.Errorf("direct from the proxy address: %+v", d)
	}
	if d, _ := run(milter.Identity{ClientAddr: netip.MustParseAddr("203.0.113.8")}); d.Rule != "not-proxied" {
		t.Errorf("direct client: %+v", d)
	}
	// proxy_hosts cannot match when the proxy's address is unknown.
	unknownProxy := proxied
	unknownProxy.ProxyLocalAddr = netip.Addr{}
	if d, _ := run(unknownProxy); d.Rule != "rcpt/end" {
		t.Errorf("unknown proxy: %+v", d)
	}
}
