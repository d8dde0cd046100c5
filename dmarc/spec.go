package dmarc

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/feature"
	"github.com/tollgate/tollgate/milter"
)

// Config is the dmarc: section.
type Config struct {
	Pos feature.Pos `yaml:"-"`
	// TrustedARCSealers are the ARC sealers (ARC-Seal d=, a domain list as
	// the policy writes them) whose word is taken when DMARC fails: RFC
	// 8617 §7.2.1 local policy.
	TrustedARCSealers feature.StrList   `yaml:"trusted_arc_sealers"`
	Timeout           *feature.Duration `yaml:"timeout"`
}

// Spec is DMARC as the configuration and the policy see it.
var Spec feature.Spec = spec{}

type spec struct{}

func (spec) Name() string   { return name }
func (spec) NewConfig() any { return &Config{} }

// Order: after SPF and DKIM, whose results DMARC judges, and after ARC,
// whose chain verdict the override needs (ARC's seal, in its finalizer,
// then carries the dmarc= result in its AAR).
func (spec) Order() feature.Order { return feature.Order{After: []string{"spf", "dkim", "arc"}} }

func (spec) NewMetrics(reg prometheus.Registerer) any { return NewMetrics(reg) }

// section is the compiled dmarc: section.
type section struct {
	trusted func(string) bool
	timeout time.Duration
}

func (s *section) ControlError(string) error { return nil }

func (s *section) Module(env *feature.ModuleEnv) (milter.Module, error) {
	o := ModuleOptions{TrustedSealer: s.trusted, Timeout: s.timeout, Metrics: env.Metrics.(*Metrics), Log: env.Log}
	if env.DNS != nil {
		o.LookupTXT = env.DNS.LookupTXT
	}
	return NewModule(o), nil
}

func (spec) Compile(cfg any, env *feature.CompileEnv) feature.Section {
	in := cfg.(*Config)
	s := &section{timeout: DefaultTimeout}
	env.RequireAuthServID(in.Pos.Line, name)
	if in.Timeout != nil {
		if *in.Timeout <= 0 {
			env.Report.Errorf(in.Pos.KeyLine("timeout"), "dmarc.timeout: must be more than 0")
		} else {
			s.timeout = time.Duration(*in.Timeout)
		}
	}
	if len(in.TrustedARCSealers) > 0 {
		for _, d := range in.TrustedARCSealers {
			if v := strings.TrimPrefix(d.Value, "!"); v == "" || strings.ContainsAny(v, " \t@") {
				env.Report.Errorf(d.Line, "dmarc.trusted_arc_sealers: %q is not a domain", d.Value)
			}
		}
		if env.Domains != nil {
			s.trusted = env.Domains(in.TrustedARCSealers)
		} else {
			list := in.TrustedARCSealers.Values()
			s.trusted = func(d string) bool {
				for _, v := range list {
					if strings.EqualFold(v, d) {
						return true
					}
				}
				return false
			}
		}
	}
	return s
}

// Effective fills in the timeout the module defaults to.
func (spec) Effective(cfg any) any {
	c := *cfg.(*Config)
	if c.Timeout == nil {
		t := feature.Duration(DefaultTimeout)
		c.Timeout = &t
	}
	return &c
}

var atData = milter.StageSet(milter.StageData)

func (spec) Vocabulary() feature.Vocabulary {
	return feature.Vocabulary{
		// Exim's dmarc_status = <list>: true when the status is listed; a
		// message not checked is matched by no list, negated or not.
		Conditions: []feature.Condition{feature.StateCondition{Key: "dmarc", Stages: atData,
			Example: "[reject, quarantine]", Words: statusWords(),
			State: func(e *feature.Eval) (string, bool) {
				f := FactsOf(e.Txn)
				return f.Status, f.Checked
			}}.Condition()},
		Variables: []feature.Variable{
			{Name: "dmarc_status", Stages: atData, Value: func(e *feature.Eval) string { return FactsOf(e.Txn).Status }},
			{Name: "dmarc_status_text", Stages: atData, Value: func(e *feature.Eval) string { return FactsOf(e.Txn).StatusText }},
			{Name: "dmarc_used_domain", Stages: atData, Value: func(e *feature.Eval) string { return FactsOf(e.Txn).UsedDomain }},
			{Name: "dmarc_domain_policy", Stages: atData, Value: func(e *feature.Eval) string { return FactsOf(e.Txn).DomainPolicy }},
			{Name: "dmarc_override", Stages: atData, Value: func(e *feature.Eval) string { return FactsOf(e.Txn).Override }},
		},
	}
}

// statusWords are the Statuses, the words of the dmarc condition.
func statusWords() []string {
	words := make([]string, len(Statuses))
	for i, s := range Statuses {
		words[i] = string(s)
	}
	return words
}
