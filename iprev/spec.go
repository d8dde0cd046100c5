package iprev

import (
	"errors"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/feature"
	"github.com/tollgate/tollgate/milter"
)

// Config is the iprev: section.
type Config struct {
	Pos feature.Pos `yaml:"-"`
	// Timeout bounds one client's check, every lookup included.
	Timeout *feature.Duration `yaml:"timeout"`
}

// Spec is iprev as the configuration and the policy see it.
var Spec feature.Spec = spec{}

type spec struct{}

func (spec) Name() string                             { return name }
func (spec) NewConfig() any                           { return &Config{} }
func (spec) Order() feature.Order                     { return feature.Order{} }
func (spec) NewMetrics(reg prometheus.Registerer) any { return NewMetrics(reg) }

func (spec) Compile(cfg any, env *feature.CompileEnv) feature.Section {
	in := cfg.(*Config)
	s := &section{timeout: DefaultTimeout}
	if env.AuthServID == "" {
		env.Report.Errorf(in.Pos.Line, "iprev needs authserv_id (top level): the name of this ADMD in Authentication-Results (e.g. authserv_id: mx.example.org)")
	}
	if in.Timeout != nil {
		if *in.Timeout == 0 {
			env.Report.Errorf(in.Pos.KeyLine("timeout"), "iprev.timeout: must be more than 0 (e.g. 10s)")
		}
		s.timeout = time.Duration(*in.Timeout)
	}
	return s
}

// Effective fills in the defaults for tollgate check --print.
func (spec) Effective(cfg any) any {
	c := *cfg.(*Config)
	if c.Timeout == nil || *c.Timeout == 0 {
		t := feature.Duration(DefaultTimeout)
		c.Timeout = &t
	}
	return &c
}

type section struct{ timeout time.Duration }

func (s *section) ControlError(string) error { return nil }

func (s *section) Module(env *feature.ModuleEnv) (milter.Module, error) {
	if env.DNS == nil {
		return nil, errors.New("iprev: no DNS resolver (the top-level dns: section)")
	}
	return NewModule(ModuleOptions{Resolver: env.DNS, Timeout: s.timeout, Metrics: env.Metrics.(*Metrics), Log: env.Log}), nil
}

func (spec) Vocabulary() feature.Vocabulary {
	return feature.Vocabulary{
		Conditions: []feature.Condition{{Key: "iprev", Stages: milter.AllStages, Example: "[fail, permerror]",
			NewValue: func() any { return new(feature.StrList) }, Compile: compileCond}},
		Variables: []feature.Variable{
			{Name: "iprev_result", Stages: milter.AllStages, Value: func(e *feature.Eval) string { return FactsOf(e.Session).Result }},
			{Name: "iprev_name", Stages: milter.AllStages, Value: func(e *feature.Eval) string { return FactsOf(e.Session).Name }},
		},
	}
}

// cond is iprev: <list>: true when the result is listed; items take "!"
// and the first item that matches decides, as in an Exim list.
type cond struct {
	items  []string
	negate []bool
}

func compileCond(value any, _ int, _ feature.Section, r feature.Reporter) feature.Test {
	var c cond
	for _, it := range *value.(*feature.StrList) {
		v, neg := strings.CutPrefix(strings.ToLower(strings.TrimSpace(it.Value)), "!")
		known := false
		for _, res := range Results {
			known = known || v == res
		}
		if !known {
			r.Errorf(it.Line, "iprev: %q is not one of %s (with ! to negate)", it.Value, strings.Join(Results, ", "))
		}
		c.items, c.negate = append(c.items, v), append(c.negate, neg)
	}
	return c
}

func (c cond) Match(e *feature.Eval) (bool, *milter.Decision) {
	got := FactsOf(e.Session).Result
	if got == "" {
		return false, nil // not checked: no item, negated or not, claims it
	}
	for i, it := range c.items {
		if it == got {
			return !c.negate[i], nil
		}
	}
	return len(c.negate) > 0 && c.negate[len(c.negate)-1], nil
}
