package policy

import (
	"go.yaml.in/yaml/v3"
)

// Config is the YAML file as written. Every key is documented in README.md
// ("Configuration reference"); a test loads every example there.
type Config struct {
	Listen        Str          `yaml:"listen"`
	Socket        SocketConfig `yaml:"socket"`
	MetricsListen Str          `yaml:"metrics_listen"`
	Log           LogConfig    `yaml:"log"`
	OnError       Str          `yaml:"on_error"`
	Mode          Str          `yaml:"mode"`
	MonitorHeader Str          `yaml:"monitor_header"`
	DrainTimeout  *Duration    `yaml:"drain_timeout"`
	// ListsCheckInterval is how often the files of file:, cdb: and lmdb:
	// items and of lookups are checked for a change (0: only on SIGHUP).
	// A Str, parsed in compile, so that its errors name its line.
	ListsCheckInterval Str            `yaml:"lists_check_interval"`
	Limits             LimitsConfig   `yaml:"limits"`
	Identity           IdentityConfig `yaml:"identity"`

	AuthServID              Str        `yaml:"authserv_id"`
	AddAuthResults          *bool      `yaml:"add_authresults"`
	RemoveForgedAuthResults *bool      `yaml:"remove_forged_authresults"`
	DNS                     DNSConfig  `yaml:"dns"`
	Lists                   namedLists `yaml:"lists"`
	ACL                     ACLConfig  `yaml:"acl"`
}

// SocketConfig sets who may connect to a unix milter socket.
type SocketConfig struct {
	Mode  Str `yaml:"mode"`
	User  Str `yaml:"user"`
	Group Str `yaml:"group"`
}

// LimitsConfig bounds what one MTA peer can make the daemon hold (README
// "Limits"). Values are strings so that each error names its own line.
type LimitsConfig struct {
	MaxConnections Str `yaml:"max_connections"`
	IdleTimeout    Str `yaml:"idle_timeout"`
	MaxPacket      Str `yaml:"max_packet"`
	MaxHeaders     Str `yaml:"max_headers"`
	MaxHeaderBytes Str `yaml:"max_header_bytes"`
}

// LogConfig chooses the log format and level.
type LogConfig struct {
	Format        Str `yaml:"format"`
	Level         Str `yaml:"level"`
	Syslog        Str `yaml:"syslog"`         // a facility: the log goes to syslog too
	SyslogAddress Str `yaml:"syslog_address"` // the syslog socket, default /dev/log
}

// IdentityConfig names the XCLIENT proxies and the MTA listeners they use.
type IdentityConfig struct {
	XClientHosts        StrList `yaml:"xclient_hosts"`
	XClientDaemons      StrList `yaml:"xclient_daemons"`
	ProxyWithoutXClient Str     `yaml:"proxy_without_xclient"`
}

// ACLConfig holds one ACL per stage, each a list of rules tried in order.
type ACLConfig struct {
	Connect []Rule `yaml:"connect"`
	Helo    []Rule `yaml:"helo"`
	Mail    []Rule `yaml:"mail"`
	Rcpt    []Rule `yaml:"rcpt"`
	Data    []Rule `yaml:"data"`
}

// Rule is one ACL entry: a verb with its conditions and modifiers, written as a
// one-key mapping ("- deny: {hosts: [...], message: ...}").
type Rule struct {
	Verb    Str
	Body    RuleBody
	Line    int
	defined bool
}

// RuleBody holds the conditions (all must be true) and the modifiers.
type RuleBody struct {
	Pos  Pos `yaml:"-"`
	Name Str `yaml:"name"`

	Hosts            StrList     `yaml:"hosts"`
	Senders          StrList     `yaml:"senders"`
	SenderDomains    StrList     `yaml:"sender_domains"`
	Recipients       StrList     `yaml:"recipients"`
	RecipientDomains StrList     `yaml:"recipient_domains"`
	Authenticated    StrList     `yaml:"authenticated"`
	Proxied          *bool       `yaml:"proxied"`
	ProxyHosts       StrList     `yaml:"proxy_hosts"`
	Header           HeaderConds `yaml:"header"`
	MessageSize      Str         `yaml:"message_size"`
	DNSLists         StrList     `yaml:"dnslists"`

	Message      Str         `yaml:"message"`
	LogMessage   Str         `yaml:"log_message"`
	AddHeader    StrList     `yaml:"add_header"`
	RemoveHeader StrList     `yaml:"remove_header"`
	Set          Assignments `yaml:"set"`
	Control      StrList     `yaml:"control"`

	features []featureUse // the features' conditions and modifiers
}

// HeaderCond matches a header by name against a regular expression.
type HeaderCond struct {
	Pos      Pos `yaml:"-"`
	Name     Str `yaml:"name"`
	Regex    Str `yaml:"regex"`
	NotRegex Str `yaml:"not_regex"`
}

// HeaderConds accepts one header condition or a list of them (all must hold).
type HeaderConds []HeaderCond

func (h *HeaderConds) decodeYAML(d *decoder, n *yaml.Node) {
	if n.Kind == yaml.SequenceNode {
		var list []HeaderCond
		d.decode(n, &list)
		*h = list
		return
	}
	var one HeaderCond
	d.decode(n, &one)
	*h = HeaderConds{one}
}

// Assignment is one "set" modifier entry.
type Assignment struct {
	Name  Str
	Value Str
}

// Assignments keeps the order of a "set" mapping: later values may use earlier ones.
type Assignments []Assignment

func (a *Assignments) decodeYAML(d *decoder, n *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n.Line, "set: expected a mapping of variable names to values")
		return
	}
	d.pairs(n, func(key string, k, v *yaml.Node) {
		var val Str
		d.decode(v, &val)
		*a = append(*a, Assignment{Name: Str{Value: key, Line: k.Line}, Value: val})
	})
}

var verbs = []string{"accept", "deny", "defer", "discard", "drop", "require", "warn"}

func (r *Rule) decodeYAML(d *decoder, n *yaml.Node) {
	r.Line = n.Line
	if n.Kind != yaml.MappingNode || len(n.Content) != 2 {
		d.errorf(n.Line, "an ACL rule is a mapping with one verb (%s), e.g. \"- deny: {hosts: [192.0.2.0/24]}\"", joinOr(verbs))
		return
	}
	key, body := n.Content[0], n.Content[1]
	r.Verb = Str{Value: key.Value, Line: key.Line}
	known := false
	for _, v := range verbs {
		if v == key.Value {
			known = true
		}
	}
	if !known {
		d.errorf(key.Line, "unknown verb %q (use %s)", key.Value, joinOr(verbs))
		return
	}
	r.defined = true
	r.Body.Pos = Pos{Line: key.Line}
	if body.Kind == yaml.ScalarNode && (body.Tag == "!!null" || body.Value == "") {
		return
	}
	d.decode(body, &r.Body)
	if r.Body.Pos.Line == 0 {
		r.Body.Pos.Line = key.Line
	}
}

func joinOr(words []string) string {
	out := ""
	for i, w := range words {
		switch {
		case i == 0:
		case i == len(words)-1:
			out += " or "
		default:
			out += ", "
		}
		out += w
	}
	return out
}
