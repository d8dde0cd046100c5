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
	Result  string // accept, fail or defer
	Overall string // dccifd's letter: A, R, G, T, S; empty when it did not answer
	Rcpts   string // one letter per recipient checked, in RCPT order
	Header  string // the X-DCC header field, "X-DCC-...: value", unfolded
	Reason  string // why the result is defer without an answer (an error kind)
}

// FactsOf returns the DCC facts of a message: empty when DCC did not run.
func FactsOf(t *milter.Txn) *Facts {
	if t != nil {
		if f, ok := t.Fact(name).(*Facts); ok {
			return f
		}
	}
	return &Facts{}
}

func factsFor(t *milter.Txn) *Facts {
	f, ok := t.Fact(name).(*Facts)
	if !ok {
		f = &Facts{}
		t.SetFact(name, f)
	}
	return f
}

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
	return s
}

func (s *section) ControlError(string) error { return nil }

func (s *section) Module(env *feature.ModuleEnv) (milter.Module, error) {
	return NewModule(ModuleOptions{Options: s.options, HeloMap: s.heloMap, AddHeader: s.addHeader,
		Metrics: env.Metrics.(*Metrics), Log: env.Log}), nil
}

var (
	atData     = milter.StageSet(milter.StageData)
	mailOrRcpt = milter.StageSet(milter.StageMail, milter.StageRcpt)
)

func (spec) Vocabulary() feature.Vocabulary {
	v := feature.Vocabulary{
		Conditions: []feature.Condition{{Key: "dcc", Stages: atData, Example: `"accept/defer_ok"`,
			NewValue: func() any { return new(feature.Str) }, Compile: compileCond}},
		Variables: []feature.Variable{
			{Name: "dcc_result", Stages: atData, Value: func(e *feature.Eval) string { return FactsOf(e.Txn).Result }},
			{Name: "dcc_header", Stages: atData, Value: func(e *feature.Eval) string { return FactsOf(e.Txn).Header }},
		},
	}
	// One message's dccifd request starts with the headers, so its
	// controls are set at mail or rcpt.
	for _, c := range controlNames {
		v.Controls = append(v.Controls, feature.Control{Name: c, Stages: mailOrRcpt})
	}
	return v
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
		return false, &milter.Decision{Verdict: milter.TempFail, Reason: "dcc: " + f.Reason,
			Reply: milter.Reply{Code: 451, Enhanced: "4.3.0", Text: "temporary failure of a content check, try again later"}}
	}
	return (result == c.want) != c.negate, nil
}
