package iprev

import (
	"errors"
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
	env.RequireAuthServID(in.Pos.Line, name)
	return &section{timeout: feature.Timeout(env.Report, in.Pos, name, in.Timeout, DefaultTimeout)}
}

// Effective fills in the defaults for tollgate check --print.
func (spec) Effective(cfg any) any {
	c := *cfg.(*Config)
	c.Timeout = feature.EffectiveTimeout(c.Timeout, DefaultTimeout)
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
		// iprev: <list>: true when the result is listed; a client not
		// checked is matched by no list, negated or not.
		Conditions: []feature.Condition{feature.StateCondition{Key: "iprev", Stages: milter.AllStages,
			Example: "[fail, permerror]", Words: Results, Fold: true,
			State: func(e *feature.Eval) (string, bool) {
				r := FactsOf(e.Session).Result
				return r, r != ""
			}}.Condition()},
		Variables: []feature.Variable{
			{Name: "iprev_result", Stages: milter.AllStages, Value: func(e *feature.Eval) string { return FactsOf(e.Session).Result }},
			{Name: "iprev_name", Stages: milter.AllStages, Value: func(e *feature.Eval) string { return FactsOf(e.Session).Name }},
		},
	}
}
