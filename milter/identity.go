package milter

import (
	"net/netip"
	"strconv"
	"strings"
)

// Identity is who the SMTP client is, as the MTA told it: the connect callback
// plus the macros of each stage. Every module and the policy read the client
// from here, never from raw macros, so Postfix and Sendmail look the same.
type Identity struct {
	Family     string     // tcp4, tcp6, unix or unknown
	ClientAddr netip.Addr // zero when the MTA did not tell (unix socket, local submission)
	ClientPort uint16
	ClientName string // verified host name; empty when unknown
	ClientPTR  string // name from the address-to-name lookup, verified or not

	Helo string

	AuthLogin     string // SASL login; empty when not authenticated
	AuthMechanism string
	AuthAuthor    string

	DaemonName string
	DaemonAddr netip.Addr
	DaemonPort uint16
	MTAName    string // the j macro: the MTA's own host name
	MTAVersion string

	TLSVersion string
	TLSCipher  string
	TLSBits    string

	// Proxy facts (Exim's $proxy_*), set when the session came through an
	// XCLIENT proxy path (see IdentityConfig).
	ProxySession      bool       // the client above is the real one, named by a trusted proxy
	ProxyHandoff      bool       // this milter session is the proxy itself, before it sends XCLIENT
	ProxyLocalAddr    netip.Addr // the proxy's address as the MTA sees it
	ProxyLocalPort    uint16
	ProxyExternalAddr netip.Addr // where the client connected to on the proxy (XCLIENT DESTADDR/DESTPORT)
	ProxyExternalPort uint16
	// UntrustedLogin is an XCLIENT LOGIN that arrived off the proxy path: it
	// is not an authentication and is kept only for the log.
	UntrustedLogin string

	clientResolve string // Sendmail's {client_resolve}: OK, FAIL, FORGED, TEMP
}

// IdentityConfig says which sessions come through an XCLIENT proxy.
type IdentityConfig struct {
	// XClientHost reports whether an address is a proxy allowed to speak for
	// clients (Exim's hosts_xclient). nil: no proxies.
	XClientHost func(netip.Addr) bool
	// XClientDaemons are the MTA daemon names ({daemon_name}, Postfix's
	// milter_macro_daemon_name) of the listeners that accept XCLIENT. Empty:
	// every listener.
	XClientDaemons []string
	// ProxyAddr is the proxy's address when only one is configured: after
	// XCLIENT the MTA no longer tells it.
	ProxyAddr netip.Addr
	// WithoutXClient is the decision for mail a proxy sends for itself on the
	// proxy path, i.e. without naming the client. Continue means: judge it
	// like any client.
	WithoutXClient Decision
}

func (c *IdentityConfig) onProxyPath(id *Identity) bool {
	if c.XClientHost == nil {
		return false
	}
	if len(c.XClientDaemons) == 0 {
		return true
	}
	for _, d := range c.XClientDaemons {
		if strings.EqualFold(d, id.DaemonName) {
			return true
		}
	}
	return false
}

// classify marks the proxy facts once the connect macros are in. Behind
// Postfix, an XCLIENT proxy causes two milter sessions: one from the proxy
// itself, closed when XCLIENT arrives (the handoff), then one whose client is
// the one XCLIENT named (the proxied session).
func (id *Identity) classify(c *IdentityConfig) {
	id.ProxySession, id.ProxyHandoff = false, false
	if !c.onProxyPath(id) {
		return
	}
	if c.XClientHost(id.ClientAddr) {
		id.ProxyHandoff = true
		id.ProxyLocalAddr, id.ProxyLocalPort = id.ClientAddr, id.ClientPort
		return
	}
	id.ProxySession = true
	id.ProxyLocalAddr = c.ProxyAddr
	if id.ClientName == "" {
		// Postfix keeps the proxy's own PTR when XCLIENT names no host
		// (nginx sends NAME=[UNAVAILABLE]): it says nothing of the client.
		id.ClientPTR = ""
	}
	id.ProxyExternalAddr, id.ProxyExternalPort = id.DaemonAddr, id.DaemonPort
}

// checkLogin keeps an XCLIENT LOGIN only on the proxy path: anywhere else
// an MTA that lets some host send XCLIENT would let it claim any login.
func (id *Identity) checkLogin() bool {
	if strings.EqualFold(id.AuthMechanism, "XCLIENT") && id.AuthLogin != "" && !id.ProxySession {
		id.UntrustedLogin, id.AuthLogin, id.AuthMechanism = id.AuthLogin, "", ""
		return false
	}
	return true
}

// Authenticated reports whether the client logged in with SMTP AUTH.
func (id *Identity) Authenticated() bool { return id.AuthLogin != "" }

// Client renders the client for logs: "name [addr]" or "[addr]".
func (id *Identity) Client() string {
	addr := "unknown"
	if id.ClientAddr.IsValid() {
		addr = id.ClientAddr.String()
	}
	if id.ClientName != "" {
		return id.ClientName + " [" + addr + "]"
	}
	return "[" + addr + "]"
}

// fromConnect fills what the connect packet itself carries.
func (id *Identity) fromConnect(host, family string, port uint16, addr string) {
	id.Family = family
	if a, ok := parseMTAAddr(addr); ok {
		id.ClientAddr = a
	}
	if family == "tcp4" || family == "tcp6" {
		id.ClientPort = port
	}
	id.ClientName = hostName(host)
}

// macroSource is what identity needs from go-milter's macro bag.
type macroSource interface {
	GetEx(name string) (string, bool)
}

// fromMacros takes the macros present now; absent macros leave facts unchanged
// because MTAs send each macro only at the stages they are configured for.
func (id *Identity) fromMacros(m macroSource) {
	if v, ok := m.GetEx("{client_addr}"); ok {
		if a, ok := parseMTAAddr(v); ok {
			id.ClientAddr = a
		}
	}
	if v, ok := m.GetEx("{client_port}"); ok {
		if p, err := strconv.ParseUint(v, 10, 16); err == nil && p != 0 {
			id.ClientPort = uint16(p)
		}
	}
	if v, ok := m.GetEx("{client_resolve}"); ok {
		id.clientResolve = strings.ToUpper(strings.TrimSpace(v))
	}
	if v, ok := m.GetEx("{client_ptr}"); ok {
		id.ClientPTR = hostName(v)
	}
	if v, ok := m.GetEx("{client_name}"); ok {
		// Sendmail puts the name it looked up in {client_name} whether or not it
		// verified; {client_resolve} says. Postfix's is verified or "unknown".
		if id.clientResolve != "" && id.clientResolve != "OK" {
			if id.ClientPTR == "" {
				id.ClientPTR = hostName(v)
			}
			id.ClientName = ""
		} else {
			id.ClientName = hostName(v)
		}
	}
	if v, ok := m.GetEx("{daemon_name}"); ok {
		id.DaemonName = v
	}
	if v, ok := m.GetEx("{daemon_addr}"); ok {
		if a, ok := parseMTAAddr(v); ok {
			id.DaemonAddr = a
		}
	}
	if v, ok := m.GetEx("{daemon_port}"); ok {
		if p, err := strconv.ParseUint(v, 10, 16); err == nil {
			id.DaemonPort = uint16(p)
		}
	}
	if v, ok := m.GetEx("j"); ok {
		id.MTAName = v
	}
	if v, ok := m.GetEx("v"); ok {
		id.MTAVersion = v
	}
	if v, ok := m.GetEx("{auth_authen}"); ok {
		id.AuthLogin = v
	}
	if v, ok := m.GetEx("{auth_type}"); ok {
		id.AuthMechanism = v
	}
	if v, ok := m.GetEx("{auth_author}"); ok {
		id.AuthAuthor = v
	}
	if id.clientResolve != "" && id.clientResolve != "OK" {
		id.ClientName = ""
	}
	if v, ok := m.GetEx("{tls_version}"); ok {
		id.TLSVersion = v
	}
	if v, ok := m.GetEx("{cipher}"); ok {
		id.TLSCipher = v
	}
	if v, ok := m.GetEx("{cipher_bits}"); ok {
		id.TLSBits = v
	}
}

// parseMTAAddr accepts the address spellings MTAs use: plain, "IPv6:" prefixed
// (Postfix) and bracketed (Sendmail).
func parseMTAAddr(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"), "IPv6:")
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// hostName drops the placeholders MTAs use for "no verified name" and address
// literals, so that an empty name always means unknown.
func hostName(s string) string {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "", "unknown", "[unavailable]", "[tempunavail]":
		return ""
	}
	if strings.HasPrefix(s, "[") {
		return ""
	}
	return strings.TrimSuffix(s, ".")
}

// requestedMacros are the macros asked for per stage. Postfix sends only what a
// milter requests, so everything the identity and the summary line need is here.
var requestedMacros = map[Stage][]string{
	StageConnect: {"j", "v", "_", "{daemon_name}", "{daemon_addr}", "{daemon_port}", "{if_name}", "{if_addr}",
		"{client_addr}", "{client_port}", "{client_ptr}", "{client_resolve}", "{client_name}"},
	StageHelo: {"{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}", "{cert_issuer}"},
	StageMail: {"i", "{auth_type}", "{auth_authen}", "{auth_author}", "{auth_ssf}", "{mail_mailer}", "{mail_host}", "{mail_addr}"},
	StageRcpt: {"i", "{rcpt_mailer}", "{rcpt_host}", "{rcpt_addr}"},
	StageData: {"i", "{msg_id}", "{msg_size}"},
}
