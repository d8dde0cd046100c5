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
	if v, ok := m.GetEx("{client_name}"); ok {
		id.ClientName = hostName(v)
	}
	if v, ok := m.GetEx("{client_ptr}"); ok {
		id.ClientPTR = hostName(v)
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
		"{client_addr}", "{client_port}", "{client_name}", "{client_ptr}", "{client_resolve}"},
	StageHelo: {"{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}", "{cert_issuer}"},
	StageMail: {"i", "{auth_type}", "{auth_authen}", "{auth_author}", "{auth_ssf}", "{mail_mailer}", "{mail_host}", "{mail_addr}"},
	StageRcpt: {"i", "{rcpt_mailer}", "{rcpt_host}", "{rcpt_addr}"},
	StageData: {"i", "{msg_id}", "{msg_size}"},
}
