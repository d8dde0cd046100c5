package policy

import (
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/internal/resolver"

	"github.com/tollgate/tollgate/feature"
	"github.com/tollgate/tollgate/milter"
)

// Policy is a loaded, validated configuration.
type Policy struct {
	File          string
	Listen        milter.Address
	HasListen     bool
	Socket        milter.SocketOptions
	MetricsListen string
	LogFormat     string  // text or json
	LogLevel      string  // debug, info, warn, error
	Syslog        *Syslog // log.syslog: nil when the log goes to standard error only
	OnError       milter.Decision
	DrainTimeout  time.Duration
	// ListsCheckInterval is how often the daemon looks for changed list
	// files (Changed); 0 turns the watch off.
	ListsCheckInterval time.Duration
	Limits             milter.Limits
	// Monitor is monitor mode (mode: monitor): decisions logged, not carried out.
	Monitor milter.Monitor
	// Warnings are problems that do not stop loading (tollgate check prints them).
	Warnings ErrorList

	acls     map[milter.Stage]*acl
	needs    milter.Needs
	authRes  milter.AuthResultsConfig
	dns      resolver.Options
	identity milter.IdentityConfig
	features *featureSet
	vars     map[string]variable
	controls map[string]control

	unknownLog logLimiter // for variables that have no value where used

	source  []byte // the configuration as loaded, for Reread
	specs   []feature.Spec
	watched FileStamps  // the files lists and lookups read
	lookups []*lookupDB // the databases they opened
}

type acl struct {
	stage milter.Stage
	rules []*rule
}

type verb uint8

const (
	verbAccept verb = iota
	verbDeny
	verbDefer
	verbDiscard
	verbDrop
	verbRequire
	verbWarn
)

var verbByName = map[string]verb{"accept": verbAccept, "deny": verbDeny, "defer": verbDefer,
	"discard": verbDiscard, "drop": verbDrop, "require": verbRequire, "warn": verbWarn}

func (v verb) String() string { return verbs[v] }

type rule struct {
	name  string
	verb  verb
	line  int
	conds []condition

	reply      milter.Reply // code and enhanced code from "message"
	message    *template    // the reply text
	logMessage *template
	prepend    []headerTemplate
	append     []headerTemplate
	remove     []string
	set        []setVar
	controls   []string
	mods       []featureMod // the features' modifiers

	counter atomic.Pointer[ruleCounter] // tollgate_policy_decisions_total for this rule
}

type headerTemplate struct {
	name  string
	value *template
}

type setVar struct {
	name  string
	value *template
}

// Defaults for keys left out.
const (
	DefaultListen        = "unix:/run/tollgate/tollgate.sock"
	DefaultMetricsListen = "127.0.0.1:9795"
	DefaultDrainTimeout  = 30 * time.Second
	// DefaultListsCheckInterval: a few stat calls, so a change is in use
	// within seconds at no cost worth counting.
	DefaultListsCheckInterval = 5 * time.Second
	// minListsCheckInterval keeps a typo ("5ms" for "5s") from making the
	// daemon stat files in a busy loop.
	minListsCheckInterval = 10 * time.Millisecond
)

// knownControls are the core's control names, with the stages where setting
// one still acts; the features add theirs through their specs.
var knownControls = map[string]milter.Stages{
	"freeze": fromMail, // quarantine (hold) the message in the MTA's queue
}

// conditionStages are the stages where each condition (and modifier that
// depends on the stage) means something; check refuses it elsewhere.
var conditionStages = map[string]milter.Stages{
	"hosts": fromConnect, "proxied": fromConnect, "proxy_hosts": fromConnect, "authenticated": fromConnect, "dnslists": fromConnect,
	"senders": fromMail, "sender_domains": fromMail,
	"recipients": atRcpt, "recipient_domains": atRcpt,
	"header": atData, "message_size": atData,
	// Modifiers that change the message.
	"add_header": fromMail, "remove_header": fromMail, "discard": fromMail,
}

// LoadFile reads, decodes and validates a configuration file with the
// given features (cmd/tollgate lists those it is built with). The error, if
// any, is an ErrorList with every problem as "file:line: message".
func LoadFile(path string, features ...feature.Spec) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, ErrorList{{File: path, Msg: err.Error()}}
	}
	return Parse(path, data, features...)
}

// Parse is LoadFile on bytes; file names the source in messages.
func Parse(file string, data []byte, features ...feature.Spec) (*Policy, error) {
	root, errs := parseYAML(file, data)
	if len(errs) > 0 {
		return nil, errs
	}
	d := &decoder{file: file}
	fs := newFeatureSet(d, features)
	root = fs.takeSections(d, root)
	var cfg Config
	d.decode(root, &cfg)
	p := compile(d, &cfg, fs)
	p.File = file
	p.source, p.specs = data, features
	p.watched = d.watched
	for _, db := range d.dbs {
		p.lookups = append(p.lookups, db)
	}
	if err := d.errs.Err(); err != nil {
		return nil, err
	}
	return p, nil
}

func compile(d *decoder, cfg *Config, fs *featureSet) *Policy {
	p := &Policy{
		MetricsListen:      DefaultMetricsListen,
		LogFormat:          "text",
		LogLevel:           "info",
		DrainTimeout:       DefaultDrainTimeout,
		ListsCheckInterval: DefaultListsCheckInterval,
		OnError:            milter.Decision{Verdict: milter.TempFail, Rule: "on_error", Reply: milter.Reply{Code: 451, Enhanced: "4.3.0", Text: "temporary local problem, try again later"}},
		acls:               map[milter.Stage]*acl{},
		features:           fs,
		vars:               d.vars,
		controls:           d.controls,
	}
	p.Listen, _ = milter.ParseAddress(DefaultListen)
	if cfg.Listen.Value != "" {
		a, err := milter.ParseAddress(cfg.Listen.Value)
		if err != nil {
			d.errorf(cfg.Listen.Line, "listen: %v", err)
		}
		p.Listen, p.HasListen = a, true
	}
	if cfg.Socket.Mode.Value != "" {
		m, err := strconv.ParseUint(cfg.Socket.Mode.Value, 8, 32)
		if err != nil || m > 0o777 {
			d.errorf(cfg.Socket.Mode.Line, "socket.mode: %q is not an octal file mode such as \"0660\"", cfg.Socket.Mode.Value)
		}
		p.Socket.Mode = os.FileMode(m)
	}
	p.Socket.User, p.Socket.Group = cfg.Socket.User.Value, cfg.Socket.Group.Value
	if cfg.MetricsListen.Value != "" {
		p.MetricsListen = cfg.MetricsListen.Value
		if cfg.MetricsListen.Value != "off" {
			if _, _, err := splitHostPort(cfg.MetricsListen.Value); err != nil {
				d.errorf(cfg.MetricsListen.Line, "metrics_listen: %v (use host:port, or off)", err)
			}
		}
	}
	switch f := cfg.Log.Format.Value; f {
	case "":
	case "text", "json":
		p.LogFormat = f
	default:
		d.errorf(cfg.Log.Format.Line, "log.format: %q is not text or json", f)
	}
	switch l := cfg.Log.Level.Value; l {
	case "":
	case "debug", "info", "warn", "error":
		p.LogLevel = l
	default:
		d.errorf(cfg.Log.Level.Line, "log.level: %q is not debug, info, warn or error", l)
	}
	switch v := cfg.OnError.Value; v {
	case "", "tempfail":
	case "accept":
		p.OnError = milter.Decision{Verdict: milter.Continue, Rule: "on_error"}
	case "reject":
		p.OnError = milter.Decision{Verdict: milter.Reject, Rule: "on_error", Reply: milter.Reply{Code: 550, Enhanced: "5.3.0", Text: "message refused because of a local problem"}}
	default:
		d.errorf(cfg.OnError.Line, "on_error: %q is not tempfail, accept or reject", v)
	}
	if cfg.DrainTimeout != nil {
		p.DrainTimeout = time.Duration(*cfg.DrainTimeout)
	}
	if v := cfg.ListsCheckInterval; v.Value != "" {
		x, err := parseDuration(v.Value)
		switch {
		case err != nil:
			d.errorf(v.Line, "lists_check_interval: %v", err)
		case x > 0 && x < minListsCheckInterval:
			d.errorf(v.Line, "lists_check_interval: %s is too short (at least %s; 0s turns the check off)", v.Value, minListsCheckInterval)
		default:
			p.ListsCheckInterval = x
		}
	}
	p.Limits = compileLimits(d, &cfg.Limits, p)
	p.Monitor = compileMonitor(d, cfg, p)
	p.Syslog = compileSyslog(d, &cfg.Log)

	lc := &listCompiler{named: cfg.Lists, d: d}
	compileIdentity(d, lc, &cfg.Identity, p)
	compileAuthResults(d, cfg, p)
	fs.compile(d, lc, p.authRes.AuthServID)
	stages := []struct {
		stage milter.Stage
		rules []Rule
	}{
		{milter.StageConnect, cfg.ACL.Connect}, {milter.StageHelo, cfg.ACL.Helo}, {milter.StageMail, cfg.ACL.Mail},
		{milter.StageRcpt, cfg.ACL.Rcpt}, {milter.StageData, cfg.ACL.Data},
	}
	names := map[string]int{}
	for _, st := range stages {
		if st.rules == nil {
			continue
		}
		a := &acl{stage: st.stage}
		for i := range st.rules {
			if r := compileRule(d, lc, st.stage, i, &st.rules[i], p); r != nil {
				if first, dup := names[r.name]; dup {
					d.errorf(r.line, "rule name %q is already used at line %d", r.name, first)
				}
				names[r.name] = r.line
				a.rules = append(a.rules, r)
			}
		}
		p.acls[st.stage] = a
		p.needs.Reply[st.stage] = true
		if len(a.rules) == 0 || !unconditionalEnd(a.rules[len(a.rules)-1]) {
			line := 0
			if len(st.rules) > 0 {
				line = st.rules[len(st.rules)-1].Line
			}
			p.Warnings = append(p.Warnings, Error{File: d.file, Line: line,
				Msg: fmt.Sprintf("acl.%s does not end with an unconditional accept or deny: as in Exim, whatever reaches its end is denied", st.stage)})
		}
	}
	used := map[string]bool{}
	for k := range lc.done {
		used[k.name] = true
	}
	for name, items := range cfg.Lists {
		if !used[name] {
			line := 0
			if len(items) > 0 {
				line = items[0].Line
			}
			p.Warnings = append(p.Warnings, Error{File: d.file, Line: line, Msg: fmt.Sprintf("list %q is not used (its items are not checked)", name)})
		}
	}
	sort.SliceStable(p.Warnings, func(i, j int) bool { return p.Warnings[i].Line < p.Warnings[j].Line })
	return p
}

func compileIdentity(d *decoder, lc *listCompiler, in *IdentityConfig, p *Policy) {
	p.identity.WithoutXClient = milter.Decision{Verdict: milter.TempFail, Rule: "proxy_without_xclient",
		Reply: milter.Reply{Code: 451, Enhanced: "4.7.0", Text: "proxy did not name the client (XCLIENT)"}}
	switch v := in.ProxyWithoutXClient.Value; v {
	case "", "defer":
	case "reject":
		p.identity.WithoutXClient = milter.Decision{Verdict: milter.Reject, Rule: "proxy_without_xclient",
			Reply: milter.Reply{Code: 550, Enhanced: "5.7.0", Text: "proxy did not name the client (XCLIENT)"}}
	case "accept":
		p.identity.WithoutXClient = milter.Decision{}
	default:
		d.errorf(in.ProxyWithoutXClient.Line, "identity.proxy_without_xclient: %q is not defer, reject or accept", v)
	}
	for _, n := range in.XClientDaemons {
		p.identity.XClientDaemons = append(p.identity.XClientDaemons, n.Value)
	}
	if len(in.XClientHosts) == 0 {
		if len(in.XClientDaemons) > 0 {
			d.errorf(in.XClientDaemons[0].Line, "identity.xclient_daemons needs identity.xclient_hosts: the proxies allowed to send XCLIENT")
		}
		return
	}
	hosts := lc.hosts(in.XClientHosts)
	p.identity.XClientHost = hosts.Match
	if len(in.XClientHosts) == 1 {
		if a, err := netip.ParseAddr(in.XClientHosts[0].Value); err == nil {
			p.identity.ProxyAddr = a.Unmap()
		}
	}
	if len(in.XClientDaemons) == 0 {
		p.Warnings = append(p.Warnings, Error{File: d.file, Line: in.XClientHosts[0].Line,
			Msg: "identity.xclient_daemons is empty: every MTA listener counts as a proxy path, so direct mail from a proxy host is taken for a proxy session; name the XCLIENT listener (Postfix milter_macro_daemon_name)"})
	}
}

func unconditionalEnd(r *rule) bool {
	return len(r.conds) == 0 && r.verb != verbWarn && r.verb != verbRequire
}

func compileRule(d *decoder, lc *listCompiler, stage milter.Stage, index int, in *Rule, p *Policy) *rule {
	if !in.defined {
		return nil
	}
	b := &in.Body
	r := &rule{verb: verbByName[in.Verb.Value], line: in.Verb.Line}
	r.name = b.Name.Value
	if r.name == "" {
		r.name = fmt.Sprintf("%s/%d", stage, index+1)
	} else if !ruleNameRE.MatchString(r.name) {
		d.errorf(b.Name.Line, "name: %q: use letters, digits, '_', '-', '.' and '/' only", r.name)
	}
	where := func(key string) string { return "acl." + stage.String() + ": " + key }
	onlyAt := func(key string, line int) bool {
		allowed := conditionStages[key]
		if allowed.Has(stage) {
			return true
		}
		d.errorf(line, "%s is not available at %s (only at %s)", where(key), stage, allowed)
		return false
	}
	if r.verb == verbDiscard {
		onlyAt("discard", in.Verb.Line)
		if stage == milter.StageRcpt {
			p.needs.Actions |= milter.ActDelRcpt
		}
	}

	if len(b.Hosts) > 0 {
		r.conds = append(r.conds, hostsCond{lc.hosts(b.Hosts)})
	}
	if b.Proxied != nil {
		r.conds = append(r.conds, proxiedCond(*b.Proxied))
	}
	if len(b.ProxyHosts) > 0 {
		r.conds = append(r.conds, proxyHostsCond{lc.hosts(b.ProxyHosts)})
	}
	compileFeatureUses(d, p.features, stage, r, b.features)
	if len(b.Authenticated) > 0 {
		r.conds = append(r.conds, authCond{lc.patterns(b.Authenticated)})
	}
	if len(b.Senders) > 0 && onlyAt("senders", b.Senders[0].Line) {
		r.conds = append(r.conds, sendersCond{lc.addresses(b.Senders)})
	}
	if len(b.SenderDomains) > 0 && onlyAt("sender_domains", b.SenderDomains[0].Line) {
		r.conds = append(r.conds, senderDomainsCond{lc.domains(b.SenderDomains)})
	}
	if len(b.Recipients) > 0 && onlyAt("recipients", b.Recipients[0].Line) {
		r.conds = append(r.conds, recipientsCond{lc.addresses(b.Recipients)})
	}
	if len(b.RecipientDomains) > 0 && onlyAt("recipient_domains", b.RecipientDomains[0].Line) {
		r.conds = append(r.conds, recipientDomainsCond{lc.domains(b.RecipientDomains)})
	}
	for _, h := range b.Header {
		if !onlyAt("header", h.Pos.Line) {
			break
		}
		if c := compileHeaderCond(d, h); c != nil {
			r.conds = append(r.conds, c)
			p.needs.Headers = true
		}
	}
	if b.MessageSize.Value != "" && onlyAt("message_size", b.MessageSize.Line) {
		c, err := parseSizeCond(b.MessageSize.Value)
		if err != nil {
			d.errorf(b.MessageSize.Line, "message_size: %v", err)
		} else {
			r.conds = append(r.conds, c)
			p.needs.Headers, p.needs.Body = true, true
		}
	}
	// Last: the conditions are ANDed in this order, and a DNS lookup is the
	// dearest of them.
	if b.DNSLists != nil { // [] too: a deny that lost its lists must not deny everyone
		if c := compileDNSLists(d, stage, b.Pos.KeyLine("dnslists"), b.DNSLists); c != nil {
			r.conds = append(r.conds, c)
		}
	}

	if b.Message.Value != "" {
		switch r.verb {
		case verbDeny, verbDefer, verbDrop, verbRequire:
			rep, err := milter.ParseReply(b.Message.Value)
			if err == nil {
				v := map[verb]milter.Verdict{verbDeny: milter.Reject, verbRequire: milter.Reject, verbDefer: milter.TempFail, verbDrop: milter.Drop}[r.verb]
				err = milter.CheckReply(v, rep)
			}
			if err != nil {
				d.errorf(b.Message.Line, "message: %v", err)
			}
			r.reply = milter.Reply{Code: rep.Code, Enhanced: rep.Enhanced}
			r.message = compileTemplate(d, Str{Value: rep.Text, Line: b.Message.Line}, stage, "message")
		default:
			d.errorf(b.Message.Line, "message: only deny, defer, drop and require send a reply; use log_message to log")
		}
	}
	if b.LogMessage.Value != "" {
		r.logMessage = compileTemplate(d, b.LogMessage, stage, "log_message")
	}
	for _, h := range b.AddHeader {
		if !onlyAt("add_header", h.Line) {
			break
		}
		text, atStart := strings.CutPrefix(h.Value, ":at_start:")
		name, value, ok := strings.Cut(text, ":")
		if !ok || milter.CheckHeaderField(name, "") != nil {
			d.errorf(h.Line, "add_header: %q is not \"Name: value\"", h.Value)
			continue
		}
		ht := headerTemplate{name: name, value: compileTemplate(d, Str{Value: strings.TrimLeft(value, " \t"), Line: h.Line}, stage, "add_header")}
		if atStart {
			r.prepend = append(r.prepend, ht)
		} else {
			r.append = append(r.append, ht)
		}
		p.needs.Actions |= milter.ActAddHeader
	}
	for _, h := range b.RemoveHeader {
		if !onlyAt("remove_header", h.Line) {
			break
		}
		if milter.CheckHeaderField(h.Value, "") != nil {
			d.errorf(h.Line, "remove_header: %q is not a header name", h.Value)
			continue
		}
		r.remove = append(r.remove, h.Value)
		p.needs.Headers = true
		p.needs.Actions |= milter.ActChangeHeader
	}
	for _, s := range b.Set {
		if !aclVarName.MatchString(s.Name.Value) {
			d.errorf(s.Name.Line, "set: %q is not a variable name: use acl_c_NAME (kept for the connection) or acl_m_NAME (for the message)", s.Name.Value)
			continue
		}
		if s.Name.Value[4] == 'm' && !fromMail.Has(stage) {
			d.errorf(s.Name.Line, "set: %s is a message variable; at %s there is no message yet (use acl_c_...)", s.Name.Value, stage)
			continue
		}
		r.set = append(r.set, setVar{name: s.Name.Value, value: compileTemplate(d, s.Value, stage, "set "+s.Name.Value)})
	}
	for _, c := range b.Control {
		ctl, ok := p.controls[c.Value]
		if !ok {
			d.errorf(c.Line, "control: unknown control %q (known: %s)", c.Value, strings.Join(p.controlNames(), ", "))
			continue
		}
		if !ctl.stages.Has(stage) {
			d.errorf(c.Line, "control: %s is not available at %s (only at %s)", c.Value, stage, ctl.stages)
			continue
		}
		if ctl.feature != "" {
			lf := p.features.byName[ctl.feature]
			if lf.section == nil {
				d.errorf(c.Line, "control: %s needs a valid %s: section", c.Value, ctl.feature)
				continue
			}
			if err := lf.section.ControlError(c.Value); err != nil {
				d.errorf(c.Line, "control: %s: %v", c.Value, err)
				continue
			}
		}
		if c.Value == "freeze" {
			p.needs.Actions |= milter.ActQuarantine
		}
		r.controls = append(r.controls, c.Value)
	}
	return r
}

var ruleNameRE = regexp.MustCompile(`^[A-Za-z0-9_./-]+$`)

func (p *Policy) controlNames() []string {
	out := make([]string, 0, len(p.controls))
	for n := range p.controls {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func compileHeaderCond(d *decoder, h HeaderCond) condition {
	if h.Name.Value == "" || milter.CheckHeaderField(h.Name.Value, "") != nil {
		d.errorf(h.Pos.Line, "header: needs name: with a header name")
		return nil
	}
	pattern, negate := h.Regex, false
	if h.NotRegex.Value != "" {
		if h.Regex.Value != "" {
			d.errorf(h.NotRegex.Line, "header: give regex or not_regex, not both")
			return nil
		}
		pattern, negate = h.NotRegex, true
	}
	if pattern.Value == "" {
		d.errorf(h.Pos.Line, "header: needs regex: or not_regex:")
		return nil
	}
	re, err := regexp.Compile(pattern.Value)
	if err != nil {
		d.errorf(pattern.Line, "header: bad regular expression: %v", err)
		return nil
	}
	return headerCond{name: h.Name.Value, re: re, negate: negate}
}

func parseSizeCond(s string) (sizeCond, error) {
	s = strings.TrimSpace(s)
	var c sizeCond
	for _, op := range []string{">=", "<=", ">", "<", "="} {
		if strings.HasPrefix(s, op) {
			c.op, s = op, strings.TrimSpace(s[len(op):])
			break
		}
	}
	if c.op == "" {
		return c, fmt.Errorf("%q: start with one of > >= < <= = (e.g. \"> 10M\")", s)
	}
	n, err := parseByteSize(s)
	if err != nil {
		return c, err
	}
	c.n = n
	return c, nil
}

func splitHostPort(s string) (string, string, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", "", fmt.Errorf("%q has no port", s)
	}
	if _, err := strconv.ParseUint(s[i+1:], 10, 16); err != nil {
		return "", "", fmt.Errorf("%q: bad port", s)
	}
	return s[:i], s[i+1:], nil
}

// XClientDaemons are the MTA listeners named as XCLIENT proxy paths.
func (p *Policy) XClientDaemons() []string { return p.identity.XClientDaemons }

// Needs is what this policy asks of the MTA.
func (p *Policy) Needs() milter.Needs { return p.needs }
