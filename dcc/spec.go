package dcc

import (
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/feature"
	"github.com/tollgate/tollgate/milter"
)

// Facts is what dccifd said about a message (the seed's dcc_result and
// dcc_header). Read it with FactsOf.
type Facts struct {
	Checked bool   // a request was made
	Result  string // Exim's tri-state: accept, fail or defer
	// Overall is dccifd's letter (the seed's $dcc_result): A, R, G, T, S;
	// T also when dccifd gave no usable answer (Reason says why).
	Overall string
	Rcpts   string // one letter per recipient checked, in RCPT order
	Header  string // the X-DCC header field, "X-DCC-...: value", unfolded
	Reason  string // why the result is defer: an error kind, or dccifd's own T
	// checked are the recipients dccifd was told about, in request order:
	// Rcpts[i] is the letter of checked[i], which went to dccifd as sent[i]
	// (the address the message would go to: a reversed SRS bounce's).
	checked []*milter.Recipient
	sent    []string
}

// Letter is dccifd's letter for recipient r (A, R or G), "" when dccifd
// gave none for it (not checked, no answer, or T with no letters).
func (f *Facts) Letter(r *milter.Recipient) string {
	for i, c := range f.checked {
		if c == r && i < len(f.Rcpts) {
			return f.Rcpts[i : i+1]
		}
	}
	return ""
}

// FactsOf returns the DCC facts of a message: empty when DCC did not run.
func FactsOf(t *milter.Txn) *Facts { return milter.TxnFacts[Facts](t, name) }

func factsFor(t *milter.Txn) *Facts { return milter.KeepTxnFacts[Facts](t, name) }

const name = "dcc"

// Config is the dcc: section (the seed's dccifd_address, dccifd_options,
// dcc_direct_add_header).
type Config struct {
	Pos             feature.Pos       `yaml:"-"`
	Address         feature.Str       `yaml:"address"`
	Options         feature.StrList   `yaml:"options"`
	Timeout         *feature.Duration `yaml:"timeout"`
	DirectAddHeader bool              `yaml:"direct_add_header"`
	ClientIPMap     feature.Str       `yaml:"client_ip_map"`
	// LocalUser is what goes after CR on a recipient line for dccifd's
	// per-user whitelists and logs: local_part (default) or none.
	LocalUser feature.Str `yaml:"local_user"`
	// LocalUsers maps recipient addresses to local users; they win over
	// LocalUser.
	LocalUsers map[string]feature.Str `yaml:"local_users"`
	// LocalUserDomains limits LocalUser to recipients of these domains
	// (default: every recipient).
	LocalUserDomains feature.StrList `yaml:"local_user_domains"`
	// Brand is the DCC server brand whose X-DCC-<brand>-Metrics headers
	// are removed from incoming messages even when dccifd gives no header.
	Brand feature.Str `yaml:"brand"`
}

// Spec is DCC as the configuration and the policy see it.
var Spec feature.Spec = spec{}

type spec struct{}

func (spec) Name() string   { return name }
func (spec) NewConfig() any { return &Config{} }

// Order: the recipients dccifd is told about are the addresses the message
// would go to, so SRS reverses a bounce first.
func (spec) Order() feature.Order { return feature.Order{After: []string{"srs"}} }

func (spec) NewMetrics(reg prometheus.Registerer) any { return NewMetrics(reg) }

// section is a compiled dcc: section.
type section struct {
	options   Options
	heloMap   map[string]netip.Addr
	addHeader bool
	users     LocalUsers
	brand     string
}

func (spec) Compile(cfg any, env *feature.CompileEnv) feature.Section {
	in := cfg.(*Config)
	s := &section{addHeader: in.DirectAddHeader}
	s.options.Address = in.Address.Value
	if s.options.Address == "" {
		s.options.Address = DefaultAddress
	}
	s.options.Options = in.Options.Values()
	if in.Timeout != nil {
		s.options.Timeout = time.Duration(*in.Timeout)
	}
	feature.ReportAll(env.Report, s.options.Validate(), in.Pos, "")
	if in.ClientIPMap.Value != "" {
		m, err := LoadHeloMap(in.ClientIPMap.Value)
		if err != nil {
			env.Report.Errorf(in.ClientIPMap.Line, "dcc.client_ip_map: %v", err)
		}
		s.heloMap = m
	}
	switch in.LocalUser.Value {
	case "", LocalPart:
		s.users.Mode = LocalPart
	case "none":
		s.users.Mode = "none"
	default:
		env.Report.Errorf(in.LocalUser.Line, "dcc.local_user: %q: use local_part or none", in.LocalUser.Value)
	}
	for addr, user := range in.LocalUsers {
		if err := ValidLocalUser(user.Value); err != nil || !strings.Contains(addr, "@") {
			env.Report.Errorf(user.Line, "dcc.local_users: %s: %q: an address and a user name without line breaks, \"/\" or a leading dot", addr, user.Value)
			continue
		}
		if s.users.Map == nil {
			s.users.Map = map[string]string{}
		}
		s.users.Map[strings.ToLower(addr)] = user.Value
	}
	if len(in.LocalUserDomains) > 0 {
		s.users.Domains = env.Domains(in.LocalUserDomains)
	}
	if b := in.Brand.Value; b != "" {
		if milter.CheckHeaderField("X-DCC-"+b+"-Metrics", "x") != nil || strings.ContainsAny(b, ": ") {
			env.Report.Errorf(in.Brand.Line, "dcc.brand: %q cannot be part of a header name", b)
		}
		s.brand = b
	}
	return s
}

func (s *section) ControlError(string) error { return nil }

func (s *section) Module(env *feature.ModuleEnv) (milter.Module, error) {
	return NewModule(ModuleOptions{Options: s.options, HeloMap: s.heloMap, AddHeader: s.addHeader,
		Users: s.users, Brand: s.brand, Metrics: env.Metrics.(*Metrics), Log: env.Log}), nil
}

var (
	atData     = milter.StageSet(milter.StageData)
	mailOrRcpt = milter.StageSet(milter.StageMail, milter.StageRcpt)
	fromMail   = milter.StagesFrom(milter.StageMail)
)

func (spec) Vocabulary() feature.Vocabulary {
	letters := func(key, example string, quant quantifier) feature.Condition {
		return feature.Condition{Key: key, Stages: atData, Example: example,
			NewValue: func() any { return new(feature.StrList) },
			Compile: func(v any, line int, _ feature.Section, r feature.Reporter) feature.Test {
				return compileLetters(key, line, v.(*feature.StrList), quant, r)
			}}
	}
	v := feature.Vocabulary{
		Conditions: []feature.Condition{
			{Key: "dcc", Stages: atData, Example: `"accept/defer_ok"`,
				NewValue: func() any { return new(feature.Str) }, Compile: compileCond},
			letters("dcc_result", "[G]", overallLetter),
			letters("dcc_recipient_result", "[R]", anyRecipient),
			letters("dcc_every_recipient_result", `["!A"]`, everyRecipient),
		},
		Variables: []feature.Variable{
			{Name: "dcc_result", Stages: atData, Value: func(e *feature.Eval) string { return FactsOf(e.Txn).Overall }},
			{Name: "dcc_recipient_results", Stages: atData, Value: func(e *feature.Eval) string { return FactsOf(e.Txn).Rcpts }},
			{Name: "dcc_rejected_recipients", Stages: atData, Value: func(e *feature.Eval) string { return FactsOf(e.Txn).with('R') }},
			{Name: "dcc_header", Stages: atData, Value: func(e *feature.Eval) string { return FactsOf(e.Txn).Header }},
		},
	}
	// One message's dccifd request starts with the headers, so its
	// controls are set at mail or rcpt.
	for _, c := range controlNames {
		v.Controls = append(v.Controls, feature.Control{Name: c, Stages: mailOrRcpt})
	}
	// Dropping acts once the message is accepted: it may be set until then.
	v.Controls = append(v.Controls, feature.Control{Name: ControlDropRejected, Stages: fromMail})
	return v
}

// with lists the recipients (as dccifd was told them: the address each
// would go to) whose letter is l, comma-separated.
func (f *Facts) with(l byte) string {
	var out []string
	for i, addr := range f.sent {
		if i < len(f.Rcpts) && f.Rcpts[i] == l {
			out = append(out, addr)
		}
	}
	return strings.Join(out, ", ")
}

type quantifier int

const (
	overallLetter  quantifier = iota // dccifd's first line
	anyRecipient                     // some recipient's letter
	everyRecipient                   // every recipient's letter (at least one)
)

// letterCond tests dccifd's letters against a list of A, R, G, T, S items
// that take "!" as Exim lists do: the first item that matches decides, and a
// list ending in a negated item matches what no item named.
type letterCond struct {
	quant  quantifier
	items  []byte
	negate []bool
}

func compileLetters(key string, line int, list *feature.StrList, quant quantifier, r feature.Reporter) feature.Test {
	c := letterCond{quant: quant}
	valid := "ARGTS"
	if quant != overallLetter {
		valid = "ARG"
	}
	for _, it := range *list {
		v, neg := strings.CutPrefix(strings.TrimSpace(it.Value), "!")
		if len(v) != 1 || !strings.Contains(valid, strings.ToUpper(v)) {
			r.Errorf(it.Line, "%s: %q is not one of dccifd's letters %s (with ! to negate)", key, it.Value, strings.Join(strings.Split(valid, ""), ", "))
			continue
		}
		c.items, c.negate = append(c.items, strings.ToUpper(v)[0]), append(c.negate, neg)
	}
	if len(*list) == 0 {
		r.Errorf(line, "%s: give at least one letter", key)
	}
	return c
}

func (c letterCond) matchLetter(l byte) bool {
	for i, it := range c.items {
		if it == l {
			return !c.negate[i]
		}
	}
	return len(c.negate) > 0 && c.negate[len(c.negate)-1]
}

func (c letterCond) Match(e *feature.Eval) (bool, *milter.Decision) {
	f := FactsOf(e.Txn)
	if c.quant == overallLetter {
		return f.Overall != "" && c.matchLetter(f.Overall[0]), nil
	}
	if f.Rcpts == "" {
		return false, nil
	}
	for i := 0; i < len(f.Rcpts); i++ {
		m := c.matchLetter(f.Rcpts[i])
		if m && c.quant == anyRecipient {
			return true, nil
		}
		if !m && c.quant == everyRecipient {
			return false, nil
		}
	}
	return c.quant == everyRecipient, nil
}

// cond is the seed's dcc condition: "accept" (or "*") is true when dccifd
// accepted, "fail" when it rejected or greylisted, "defer" when it could not
// answer; "!" negates; "/defer_ok" turns a defer into an accept. As in Exim,
// a check that defers without /defer_ok defers the ACL (4xx), whatever the
// verb.
type cond struct {
	want    string
	negate  bool
	deferOK bool
}

func compileCond(value any, line int, _ feature.Section, r feature.Reporter) feature.Test {
	s := value.(*feature.Str)
	v := strings.TrimSpace(s.Value)
	c := cond{}
	if rest, ok := strings.CutSuffix(v, "/defer_ok"); ok {
		c.deferOK, v = true, rest
	}
	if rest, ok := strings.CutPrefix(v, "!"); ok {
		c.negate, v = true, rest
	}
	switch v {
	case "*", "accept":
		c.want = string(VerdictAccept)
	case "fail", "defer":
		c.want = v
	default:
		r.Errorf(line, "dcc: %q: use accept (or *), fail or defer, with ! and /defer_ok as needed", s.Value)
	}
	return c
}

func (c cond) Match(e *feature.Eval) (bool, *milter.Decision) {
	f := FactsOf(e.Txn)
	result := f.Result
	if result == string(VerdictDefer) && c.deferOK {
		result = string(VerdictAccept)
	}
	if result == string(VerdictDefer) && c.want != string(VerdictDefer) {
		reason := f.Reason
		if reason == "" {
			reason = "no dccifd check was made"
		}
		return false, &milter.Decision{Verdict: milter.TempFail, Reason: "dcc: " + reason,
			Reply: milter.Reply{Code: 451, Enhanced: "4.3.0", Text: "temporary failure of a content check, try again later"}}
	}
	return (result == c.want) != c.negate, nil
}

// Effective fills in dccifd's socket, the timeout and local_user as Compile
// and the module default them.
func (spec) Effective(cfg any) any {
	c := *cfg.(*Config)
	if c.Address.Value == "" {
		c.Address.Value = DefaultAddress
	}
	if c.Timeout == nil || *c.Timeout == 0 {
		t := feature.Duration(DefaultTimeout)
		c.Timeout = &t
	}
	if c.LocalUser.Value == "" {
		c.LocalUser.Value = LocalPart
	}
	return &c
}
