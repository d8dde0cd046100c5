package spf

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/feature"
	"github.com/tollgate/tollgate/milter"
)

// Config is the spf: section.
type Config struct {
	Pos feature.Pos `yaml:"-"`
	// Timeout bounds one message's checks, DNS included.
	Timeout *feature.Duration `yaml:"timeout"`
	// Helo also checks the HELO identity (RFC 7208 §2.3) of every session
	// that sends mail, for $spf_helo_result and the spf_helo condition.
	// The null sender is always checked by its HELO, whatever this says.
	Helo *bool `yaml:"helo"`
	// ReceivedHeader adds a Received-SPF header field (RFC 7208 §9.1) at
	// the top of every message checked.
	ReceivedHeader bool `yaml:"received_header"`
}

// DefaultTimeout bounds the checks of one message when timeout is not set.
const DefaultTimeout = 20 * time.Second

// Spec is SPF as the configuration and the policy see it.
var Spec feature.Spec = spec{}

type spec struct{}

func (spec) Name() string   { return name }
func (spec) NewConfig() any { return &Config{} }

// Order: no constraint; DMARC names spf in its After.
func (spec) Order() feature.Order { return feature.Order{} }

func (spec) NewMetrics(reg prometheus.Registerer) any { return NewMetrics(reg) }

func (spec) Compile(cfg any, env *feature.CompileEnv) feature.Section {
	in := cfg.(*Config)
	env.RequireAuthServID(in.Pos.Line, name, "Received-SPF")
	s := &section{authServID: env.AuthServID, received: in.ReceivedHeader,
		timeout: feature.Timeout(env.Report, in.Pos, name, in.Timeout, DefaultTimeout)}
	if in.Helo != nil {
		s.helo = *in.Helo
	}
	return s
}

// Effective fills in the defaults for tollgate check --print.
func (spec) Effective(cfg any) any {
	c := *cfg.(*Config)
	c.Timeout = feature.EffectiveTimeout(c.Timeout, DefaultTimeout)
	if c.Helo == nil {
		f := false
		c.Helo = &f
	}
	return &c
}

type section struct {
	authServID string
	timeout    time.Duration
	helo       bool
	received   bool
}

func (s *section) ControlError(string) error { return nil }

func (s *section) Module(env *feature.ModuleEnv) (milter.Module, error) {
	if env.DNS == nil {
		return nil, errors.New("spf: no DNS resolver (the top-level dns: section)")
	}
	return NewModule(ModuleOptions{Resolver: env.DNS, Receiver: s.authServID, Timeout: s.timeout,
		Helo: s.helo, ReceivedHeader: s.received, Metrics: env.Metrics.(*Metrics), Log: env.Log}), nil
}

var fromMail = milter.StagesFrom(milter.StageMail)

func (spec) Vocabulary() feature.Vocabulary {
	v := func(f func(*Facts) string) func(e *feature.Eval) string {
		return func(e *feature.Eval) string { return f(FactsOf(e.Txn)) }
	}
	return feature.Vocabulary{
		Conditions: []feature.Condition{
			resultCond("spf", "[fail, softfail]", func(f *Facts) string { return f.Result }),
			resultCond("spf_helo", "[fail]", func(f *Facts) string { return f.HeloResult }),
		},
		Variables: []feature.Variable{
			{Name: "spf_result", Stages: fromMail, Value: v(func(f *Facts) string { return f.Result })},
			{Name: "spf_header_comment", Stages: fromMail, Value: v(func(f *Facts) string { return f.HeaderComment })},
			{Name: "spf_smtp_comment", Stages: fromMail, Value: v(func(f *Facts) string { return f.SMTPComment })},
			// The value of Received-SPF: the policy's add_header names the
			// field itself ("Received-SPF: $spf_received"), where Exim's
			// variable carries the name too.
			{Name: "spf_received", Stages: fromMail, Value: v(func(f *Facts) string { return f.Received })},
			{Name: "spf_used_domain", Stages: fromMail, Value: v(func(f *Facts) string { return f.Domain })},
			{Name: "spf_helo_result", Stages: fromMail, Value: v(func(f *Facts) string { return f.HeloResult })},
		},
	}
}

// resultCond is Exim's spf = <list>: true when the result is listed. A
// result not checked (no client address, or the proxy itself) is matched by
// no list, negated or not.
func resultCond(key, example string, result func(*Facts) string) feature.Condition {
	return feature.StateCondition{Key: key, Stages: fromMail, Example: example, Words: Results, Fold: true,
		State: func(e *feature.Eval) (string, bool) {
			r := result(FactsOf(e.Txn))
			return r, r != ""
		}}.Condition()
}
