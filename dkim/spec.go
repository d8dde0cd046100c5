package dkim

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/feature"
	"github.com/tollgate/tollgate/milter"
)

// Config is the dkim: section: verification of every incoming signature.
// Signing, when it comes, is its own key (sign:) beside these.
type Config struct {
	Pos           feature.Pos       `yaml:"-"`
	MaxSignatures *int              `yaml:"max_signatures"`
	Timeout       *feature.Duration `yaml:"timeout"`
	MinRSABits    *int              `yaml:"min_rsa_bits"`
}

// Spec is DKIM verification as the configuration and the policy see it.
var Spec feature.Spec = spec{}

type spec struct{}

func (spec) Name() string   { return name }
func (spec) NewConfig() any { return &Config{} }

// Order: no constraint; DMARC names dkim in its After to read the results.
func (spec) Order() feature.Order { return feature.Order{} }

func (spec) NewMetrics(reg prometheus.Registerer) any { return NewMetrics(reg) }

func (spec) Compile(cfg any, env *feature.CompileEnv) feature.Section {
	return compile(env, cfg.(*Config))
}

// section is the compiled dkim: section.
type section struct {
	o       ModuleOptions
	domains func(feature.StrList) func(string) bool
}

func (s *section) ControlError(string) error { return nil }

func (s *section) Module(env *feature.ModuleEnv) (milter.Module, error) {
	o := s.o
	o.Resolver, o.Metrics, o.Log = env.DNS, env.Metrics.(*Metrics), env.Log
	return NewModule(o), nil
}

func compile(env *feature.CompileEnv, in *Config) *section {
	d := env.Report
	s := &section{o: ModuleOptions{Timeout: DefaultTimeout, MaxSignatures: DefaultMaxSignatures, MinRSABits: DefaultMinRSABits},
		domains: env.Domains}
	env.RequireAuthServID(in.Pos.Line, name)
	if in.MaxSignatures != nil {
		if n := *in.MaxSignatures; n < 1 || n > 100 {
			d.Errorf(in.Pos.KeyLine("max_signatures"), "dkim.max_signatures: %d is not between 1 and 100", n)
		}
		s.o.MaxSignatures = *in.MaxSignatures
	}
	if in.Timeout != nil {
		if *in.Timeout <= 0 {
			d.Errorf(in.Pos.KeyLine("timeout"), "dkim.timeout: must be more than 0")
		}
		s.o.Timeout = time.Duration(*in.Timeout)
	}
	if in.MinRSABits != nil {
		if n := *in.MinRSABits; n < DefaultMinRSABits || n > 16384 {
			d.Errorf(in.Pos.KeyLine("min_rsa_bits"), "dkim.min_rsa_bits: %d is not between %d (RFC 8301) and 16384", n, DefaultMinRSABits)
		}
		s.o.MinRSABits = *in.MinRSABits
	}
	return s
}

// Effective fills in the defaults.
func (spec) Effective(cfg any) any {
	c := *cfg.(*Config)
	if c.MaxSignatures == nil {
		n := DefaultMaxSignatures
		c.MaxSignatures = &n
	}
	if c.Timeout == nil {
		t := feature.Duration(DefaultTimeout)
		c.Timeout = &t
	}
	if c.MinRSABits == nil {
		n := DefaultMinRSABits
		c.MinRSABits = &n
	}
	return &c
}

var atData = milter.StageSet(milter.StageData)

func (spec) Vocabulary() feature.Vocabulary {
	return feature.Vocabulary{
		Conditions: []feature.Condition{
			// dkim: [pass, fail, invalid, none]: true when the message's
			// status (the best among its signatures) is listed.
			feature.StateCondition{Key: "dkim", Stages: atData, Example: "[pass, '!none']",
				Words:    []string{StatusPass, StatusFail, StatusInvalid, StatusNone},
				Expected: "pass, fail, invalid or none",
				State:    func(e *feature.Eval) (string, bool) { return FactsOf(e.Txn).Status, true }}.Condition(),
			{Key: "dkim_signers", Stages: atData, Example: "[example.org, '*.example.net']",
				NewValue: func() any { return new(feature.StrList) }, Compile: compileSignersCond},
		},
		Variables: []feature.Variable{
			{Name: "dkim_verify_status", Stages: atData, Value: func(e *feature.Eval) string { return FactsOf(e.Txn).Status }},
			{Name: "dkim_verify_reason", Stages: atData, Value: func(e *feature.Eval) string { return FactsOf(e.Txn).Reason }},
			{Name: "dkim_signers", Stages: atData, Value: func(e *feature.Eval) string { return strings.Join(FactsOf(e.Txn).Signers, ":") }},
			{Name: "dkim_domain", Stages: atData, Value: func(e *feature.Eval) string { return FactsOf(e.Txn).Domain }},
			{Name: "dkim_selector", Stages: atData, Value: func(e *feature.Eval) string { return FactsOf(e.Txn).Selector }},
		},
	}
}

// signersCond is dkim_signers: [domain list]: true when the d= domain of a
// passing signature is in the list (lists as the policy writes them:
// !negation, +named_list, *.wildcards).
type signersCond struct{ match func(string) bool }

func compileSignersCond(value any, line int, sec feature.Section, r feature.Reporter) feature.Test {
	items := *value.(*feature.StrList)
	if len(items) == 0 {
		r.Errorf(line, "dkim_signers: an empty list never matches; list signing domains")
	}
	s, ok := sec.(*section)
	if !ok || s.domains == nil {
		return signersCond{match: func(string) bool { return false }}
	}
	return signersCond{match: s.domains(items)}
}

func (c signersCond) Match(e *feature.Eval) (bool, *milter.Decision) {
	for _, s := range FactsOf(e.Txn).Signatures {
		if s.Status == StatusPass && c.match(strings.ToLower(s.Domain)) {
			return true, nil
		}
	}
	return false, nil
}
