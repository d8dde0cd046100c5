package milter

import (
	"net/netip"
	"strings"
	"sync"
	"testing"

	gomilter "github.com/d--j/go-milter"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// proxyConfig is a Postfix with an smtpd listener named "proxy-in" that
// accepts XCLIENT from 127.0.0.1 (nginx).
func proxyConfig() *IdentityConfig {
	proxy := netip.MustParseAddr("127.0.0.1")
	return &IdentityConfig{
		XClientHost:    func(a netip.Addr) bool { return a == proxy },
		XClientDaemons: []string{"proxy-in"},
		ProxyAddr:      proxy,
		WithoutXClient: Decision{Verdict: TempFail, Reply: Reply{Code: 451, Enhanced: "4.7.0", Text: "proxy did not name the client (XCLIENT)"}},
	}
}

func TestIdentityDialects(t *testing.T) {
	type conn struct {
		host, family string
		port         uint16
		addr         string
	}
	for _, tc := range []struct {
		name   string
		conn   conn
		macros []mapMacros // per stage, in order: connect, helo, mail
		config *IdentityConfig
		check  func(t *testing.T, id *Identity)
	}{
		{
			name: "postfix ipv4 direct",
			conn: conn{"mail.example.net", "tcp4", 0, "203.0.113.5"},
			macros: []mapMacros{
				{"j": "mx.example.org", "{daemon_name}": "smtpd", "{daemon_addr}": "192.0.2.25", "{daemon_port}": "25", "v": "Postfix 3.7.11",
					"{client_addr}": "203.0.113.5", "{client_port}": "40123", "{client_name}": "mail.example.net", "{client_ptr}": "mail.example.net"},
				{"{tls_version}": "TLSv1.3", "{cipher}": "TLS_AES_256_GCM_SHA384", "{cipher_bits}": "256"},
				{"i": "4XkT2c", "{auth_type}": "PLAIN", "{auth_authen}": "alice", "{mail_addr}": "alice@example.net"},
			},
			check: func(t *testing.T, id *Identity) {
				if id.ClientAddr.String() != "203.0.113.5" || id.ClientPort != 40123 || id.ClientName != "mail.example.net" ||
					id.DaemonName != "smtpd" || id.DaemonAddr.String() != "192.0.2.25" || id.DaemonPort != 25 || id.MTAName != "mx.example.org" ||
					id.TLSVersion != "TLSv1.3" || id.AuthLogin != "alice" || id.AuthMechanism != "PLAIN" || id.ProxySession || id.ProxyHandoff {
					t.Errorf("%+v", id)
				}
			},
		},
		{
			name: "postfix ipv6 without verified name",
			conn: conn{"unknown", "tcp6", 0, "2001:db8::5"},
			macros: []mapMacros{{"{client_addr}": "IPv6:2001:db8::5", "{client_port}": "5000", "{client_name}": "unknown",
				"{client_ptr}": "host.example.net", "{daemon_addr}": "IPv6:2001:db8::25"}},
			check: func(t *testing.T, id *Identity) {
				if id.ClientAddr.String() != "2001:db8::5" || id.ClientName != "" || id.ClientPTR != "host.example.net" ||
					id.DaemonAddr.String() != "2001:db8::25" || id.Client() != "[2001:db8::5]" {
					t.Errorf("%+v", id)
				}
			},
		},
		{
			name:   "postfix temporary lookup failure",
			conn:   conn{"[TEMPUNAVAIL]", "tcp4", 1, "192.0.2.7"},
			macros: []mapMacros{{"{client_name}": "[TEMPUNAVAIL]", "{client_ptr}": "[TEMPUNAVAIL]"}},
			check: func(t *testing.T, id *Identity) {
				if id.ClientName != "" || id.ClientPTR != "" {
					t.Errorf("%+v", id)
				}
			},
		},
		{
			name: "sendmail default macros",
			conn: conn{"localhost", "tcp4", 41000, "127.0.0.1"},
			macros: []mapMacros{
				{"j": "sendmail.test", "_": "localhost [127.0.0.1]", "{daemon_name}": "MTA", "{if_name}": "localhost"},
				{},
				{"i": "5AL9x1", "{mail_mailer}": "esmtp", "{mail_host}": "example.net", "{mail_addr}": "a@example.net",
					"{auth_type}": "LOGIN", "{auth_authen}": "bob", "{auth_ssf}": "0"},
			},
			check: func(t *testing.T, id *Identity) {
				if id.ClientAddr.String() != "127.0.0.1" || id.ClientPort != 41000 || id.ClientName != "localhost" ||
					id.DaemonName != "MTA" || id.MTAName != "sendmail.test" || id.AuthLogin != "bob" {
					t.Errorf("%+v", id)
				}
			},
		},
		{
			name: "sendmail unverified name",
			conn: conn{"forged.example.com", "tcp4", 41000, "198.51.100.9"},
			macros: []mapMacros{{"{client_addr}": "198.51.100.9", "{client_name}": "forged.example.com", "{client_resolve}": "FORGED",
				"{client_port}": "41000", "{daemon_addr}": "127.0.0.1", "{daemon_port}": "2526"}},
			check: func(t *testing.T, id *Identity) {
				if id.ClientName != "" || id.ClientPTR != "forged.example.com" || id.DaemonPort != 2526 {
					t.Errorf("%+v", id)
				}
			},
		},
		{
			name: "sendmail address literal host",
			conn: conn{"[198.51.100.9]", "tcp4", 1, "198.51.100.9"},
			check: func(t *testing.T, id *Identity) {
				if id.ClientName != "" || id.ClientAddr.String() != "198.51.100.9" {
					t.Errorf("%+v", id)
				}
			},
		},
		{
			name: "missing macros: the connect packet is enough",
			conn: conn{"mail.example.net", "tcp4", 2525, "192.0.2.1"},
			check: func(t *testing.T, id *Identity) {
				if id.ClientAddr.String() != "192.0.2.1" || id.ClientPort != 2525 || id.ClientName != "mail.example.net" || id.DaemonName != "" {
					t.Errorf("%+v", id)
				}
			},
		},
		{
			name: "unix socket client",
			conn: conn{"localhost", "unix", 0, "/var/run/sock"},
			check: func(t *testing.T, id *Identity) {
				if id.ClientAddr.IsValid() || id.ClientPort != 0 || id.Family != "unix" {
					t.Errorf("%+v", id)
				}
			},
		},
		{
			name:   "postfix proxy handoff: the proxy before XCLIENT",
			conn:   conn{"localhost", "tcp4", 0, "127.0.0.1"},
			macros: []mapMacros{{"{daemon_name}": "proxy-in", "{client_addr}": "127.0.0.1", "{client_port}": "51000", "{daemon_port}": "10025"}},
			config: proxyConfig(),
			check: func(t *testing.T, id *Identity) {
				if !id.ProxyHandoff || id.ProxySession || id.ProxyLocalAddr.String() != "127.0.0.1" || id.ProxyLocalPort != 51000 {
					t.Errorf("%+v", id)
				}
			},
		},
		{
			name: "postfix proxied session after XCLIENT with LOGIN",
			conn: conn{"client.example.net", "tcp4", 0, "203.0.113.8"},
			macros: []mapMacros{
				{"{daemon_name}": "proxy-in", "{client_addr}": "203.0.113.8", "{client_port}": "0", "{client_name}": "client.example.net",
					"{daemon_addr}": "127.0.0.1", "{daemon_port}": "10025"},
				{},
				{"{auth_type}": "XCLIENT", "{auth_authen}": "carol"},
			},
			config: proxyConfig(),
			check: func(t *testing.T, id *Identity) {
				if !id.ProxySession || id.ProxyHandoff || id.ClientAddr.String() != "203.0.113.8" || id.AuthLogin != "carol" ||
					id.ProxyLocalAddr.String() != "127.0.0.1" || id.ProxyExternalPort != 10025 || id.UntrustedLogin != "" {
					t.Errorf("%+v", id)
				}
			},
		},
		{
			// As seen behind nginx: NAME=[UNAVAILABLE], no PORT; Postfix keeps
			// the proxy's PTR and source port.
			name: "postfix proxied session without NAME keeps no proxy PTR",
			conn: conn{"[127.0.0.2]", "tcp4", 51000, "127.0.0.2"},
			macros: []mapMacros{{"{daemon_name}": "proxy-in", "{client_addr}": "127.0.0.2", "{client_port}": "51000",
				"{client_name}": "unknown", "{client_ptr}": "localhost", "{client_resolve}": "FAIL", "_": "localhost [127.0.0.2] (may be forged)"}},
			config: proxyConfig(),
			check: func(t *testing.T, id *Identity) {
				if !id.ProxySession || id.ClientName != "" || id.ClientPTR != "" || id.ClientAddr.String() != "127.0.0.2" {
					t.Errorf("%+v", id)
				}
			},
		},
		{
			name: "XCLIENT login off the proxy path is not an authentication",
			conn: conn{"h", "tcp4", 0, "203.0.113.8"},
			macros: []mapMacros{
				{"{daemon_name}": "smtpd"}, {},
				{"{auth_type}": "XCLIENT", "{auth_authen}": "carol"},
			},
			config: proxyConfig(),
			check: func(t *testing.T, id *Identity) {
				if id.ProxySession || id.AuthLogin != "" || id.UntrustedLogin != "carol" || id.Authenticated() {
					t.Errorf("%+v", id)
				}
			},
		},
		{
			name:   "the proxy host on another listener is a plain client",
			conn:   conn{"localhost", "tcp4", 0, "127.0.0.1"},
			macros: []mapMacros{{"{daemon_name}": "smtpd"}},
			config: proxyConfig(),
			check: func(t *testing.T, id *Identity) {
				if id.ProxyHandoff || id.ProxySession {
					t.Errorf("%+v", id)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var id Identity
			cfg := tc.config
			if cfg == nil {
				cfg = &IdentityConfig{}
			}
			id.fromConnect(tc.conn.host, tc.conn.family, tc.conn.port, tc.conn.addr)
			for i, m := range tc.macros {
				id.fromMacros(m)
				if i == 0 {
					id.classify(cfg)
				}
			}
			if len(tc.macros) == 0 {
				id.classify(cfg)
			}
			id.checkLogin()
			tc.check(t, &id)
		})
	}
}

func TestProxyHandoffIsNeverJudged(t *testing.T) {
	var mu sync.Mutex
	judged := map[Stage]int{}
	rejectAll := func(stage Stage, s *Session, _ *Txn, _ *Recipient) Decision {
		mu.Lock()
		judged[stage]++
		mu.Unlock()
		return Decision{Verdict: Reject, Rule: "everything"}
	}
	rt := &fakeRuntime{decide: rejectAll, identity: proxyConfig(),
		needs: Needs{Reply: [stageCount]bool{StageConnect: true, StageHelo: true, StageMail: true, StageRcpt: true}}}
	ts := startServer(t, rt)

	s := ts.session(t, map[string]string{"{daemon_name}": "proxy-in"})
	if act := must(t)(s.Conn("localhost", gomilter.FamilyInet, 51000, "127.0.0.1")); act.Type != gomilter.ActionContinue {
		t.Errorf("handoff connect %+v", act)
	}
	if act := must(t)(s.Helo("proxy.example.org")); act.Type != gomilter.ActionContinue {
		t.Errorf("handoff helo %+v", act)
	}
	// The proxy sends mail without XCLIENT: proxy_without_xclient decides.
	if act := must(t)(s.Mail("a@example.net", "")); act.SMTPCode != 451 || !strings.Contains(act.SMTPReply, "XCLIENT") {
		t.Errorf("mail without XCLIENT %+v", act)
	}
	if got := testutil.ToFloat64(ts.metrics.ProxySessions.WithLabelValues("handoff")); got != 1 {
		t.Errorf("handoff sessions %v", got)
	}
	mu.Lock()
	if len(judged) != 0 {
		t.Errorf("the handoff session was judged: %v", judged)
	}
	mu.Unlock()
	// The same address on another listener is judged like anyone.
	direct := ts.session(t, map[string]string{"{daemon_name}": "smtpd"})
	if act := must(t)(direct.Conn("localhost", gomilter.FamilyInet, 51000, "127.0.0.1")); !act.StopProcessing() {
		t.Errorf("direct connect from the proxy address %+v", act)
	}
	mu.Lock()
	if judged[StageConnect] != 1 {
		t.Errorf("direct session judged %v", judged)
	}
	mu.Unlock()
}
