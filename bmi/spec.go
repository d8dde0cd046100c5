package bmi

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/feature"
	"github.com/tollgate/tollgate/milter"
)

// Config is the bmi: section: per-recipient verdicts from a real scanner.
type Config struct {
	Pos            feature.Pos            `yaml:"-"`
	Backend        BackendConfig          `yaml:"backend"`
	Spool          SpoolConfig            `yaml:"spool"`
	OptinFile      feature.Str            `yaml:"optin_file"`
	Profiles       map[string]feature.Str `yaml:"profiles"`
	DefaultProfile feature.Str            `yaml:"default_profile"`
	Rules          []RuleConfig           `yaml:"rules"`
	OnError        feature.Str            `yaml:"on_error"`
	SpamHeaders    bool                   `yaml:"spam_headers"`
}

// BackendConfig names one scanner.
type BackendConfig struct {
	Spamd  *ScannerConfig `yaml:"spamd"`
	Rspamd *ScannerConfig `yaml:"rspamd"`
}

// ScannerConfig is a scanner's address and limits.
type ScannerConfig struct {
	Pos     feature.Pos       `yaml:"-"`
	Address feature.Str       `yaml:"address"`
	Timeout *feature.Duration `yaml:"timeout"`
	MaxSize *feature.ByteSize `yaml:"max_size"`
}

// SpoolConfig bounds what a message may take in memory before a temp file.
type SpoolConfig struct {
	Memory *feature.ByteSize `yaml:"memory"`
	Dir    feature.Str       `yaml:"dir"`
}

// RuleConfig is one numbered rule.
type RuleConfig struct {
	Pos         feature.Pos `yaml:"-"`
	ID          int         `yaml:"id"`
	When        WhenConfig  `yaml:"when"`
	Outcome     feature.Str `yaml:"outcome"`
	AltLocation feature.Str `yaml:"alt_location"`
}

// WhenConfig holds a rule's conditions; all must hold.
type WhenConfig struct {
	ScoreAbove     *float64        `yaml:"score_above"`
	ScoreBelow     *float64        `yaml:"score_below"`
	ThresholdAbove *float64        `yaml:"threshold_above"`
	ThresholdBelow *float64        `yaml:"threshold_below"`
	MarginAbove    *float64        `yaml:"margin_above"`
	MarginBelow    *float64        `yaml:"margin_below"`
	IsSpam         *bool           `yaml:"is_spam"`
	Actions        feature.StrList `yaml:"actions"`
	SymbolsAny     feature.StrList `yaml:"symbols_any"`
	SymbolsAll     feature.StrList `yaml:"symbols_all"`
	Profiles       feature.StrList `yaml:"profiles"`
	Recipients     feature.StrList `yaml:"recipients"`
	RecipientRegex feature.Str     `yaml:"recipient_regex"`
	OptinAny       feature.StrList `yaml:"optin_any"`
	OptinNone      feature.StrList `yaml:"optin_none"`
}

// Spec is BMI as the configuration and the policy see it.
var Spec feature.Spec = spec{}

type spec struct{}

func (spec) Name() string   { return name }
func (spec) NewConfig() any { return &Config{} }

// Order: a reversed SRS bounce is judged as the address it goes to, and the
// scan runs after the other checks, on the headers as they left them.
func (spec) Order() feature.Order { return feature.Order{After: []string{"srs", "dcc"}} }

func (spec) NewMetrics(reg prometheus.Registerer) any { return NewMetrics(reg) }

// section is the compiled bmi: section.
type section struct{ o ModuleOptions }

func (s *section) ControlError(string) error { return nil }

func (s *section) Module(env *feature.ModuleEnv) (milter.Module, error) {
	o := s.o
	o.Metrics, o.Log = env.Metrics.(*Metrics), env.Log
	return NewModule(o), nil
}

func (spec) Compile(cfg any, env *feature.CompileEnv) feature.Section {
	in := cfg.(*Config)
	d := env.Report
	o := ModuleOptions{SpamHeaders: in.SpamHeaders, SpoolDir: in.Spool.Dir.Value,
		Profiles: ProfileMap{ByOptin: map[string]string{}, Default: in.DefaultProfile.Value}}
	scanner := func(c *ScannerConfig) (string, time.Duration, int64) {
		var t time.Duration
		var max int64
		if c.Timeout != nil {
			t = time.Duration(*c.Timeout)
		}
		if c.MaxSize != nil {
			max = int64(*c.MaxSize)
		}
		if c.Address.Value == "" {
			d.Errorf(c.Pos.Line, "bmi.backend: address is required (host:port or a unix socket path)")
		}
		return c.Address.Value, t, max
	}
	switch b := in.Backend; {
	case b.Spamd != nil && b.Rspamd != nil:
		d.Errorf(in.Pos.KeyLine("backend"), "bmi.backend: give spamd or rspamd, not both")
	case b.Spamd != nil:
		addr, t, max := scanner(b.Spamd)
		s := NewSpamd(SpamdOptions{Address: addr, Timeout: t, MaxSize: max})
		if err := s.Check(); err != nil {
			d.Errorf(b.Spamd.Pos.Line, "bmi.backend.spamd: %v", err)
		}
		o.Backend = s
	case b.Rspamd != nil:
		addr, t, max := scanner(b.Rspamd)
		r := NewRspamd(RspamdOptions{Address: addr, Timeout: t, MaxSize: max})
		if err := r.Check(); err != nil {
			d.Errorf(b.Rspamd.Pos.Line, "bmi.backend.rspamd: %v", err)
		}
		o.Backend = r
	default:
		d.Errorf(in.Pos.Line, "bmi.backend needs spamd: {address: ...} or rspamd: {address: ...}")
	}
	if in.Spool.Memory != nil {
		o.SpoolMemory = int64(*in.Spool.Memory)
	}
	switch in.OnError.Value {
	case "", "deliver":
	case "defer":
		o.DeferOnError = true
	default:
		d.Errorf(in.OnError.Line, "bmi.on_error: %q is not deliver or defer", in.OnError.Value)
	}
	if in.OptinFile.Value != "" {
		m, err := LoadOptinFile(in.OptinFile.Value)
		if err != nil {
			d.Errorf(in.OptinFile.Line, "bmi.optin_file: %v", err)
		}
		o.Optins = m
	}
	for optin, profile := range in.Profiles {
		if err := ValidProfile(profile.Value); err != nil {
			d.Errorf(profile.Line, "bmi.profiles: %v", err)
		}
		o.Profiles.ByOptin[optin] = profile.Value
	}
	if in.DefaultProfile.Value != "" {
		if err := ValidProfile(in.DefaultProfile.Value); err != nil {
			d.Errorf(in.DefaultProfile.Line, "bmi.default_profile: %v", err)
		}
	}
	ids := map[int]int{} // rule id -> line of the rule that has it
	for _, rc := range in.Rules {
		if first, dup := ids[rc.ID]; dup && rc.ID > 0 {
			d.Errorf(rc.Pos.KeyLine("id"), "bmi.rules: id %d is already used by the rule at line %d", rc.ID, first)
		} else {
			ids[rc.ID] = rc.Pos.KeyLine("id")
		}
		w := rc.When
		r := Rule{ID: rc.ID, Outcome: Outcome(rc.Outcome.Value), AltLocation: rc.AltLocation.Value,
			When: Conditions{ScoreAbove: w.ScoreAbove, ScoreBelow: w.ScoreBelow, ThresholdAbove: w.ThresholdAbove,
				ThresholdBelow: w.ThresholdBelow, MarginAbove: w.MarginAbove, MarginBelow: w.MarginBelow, IsSpam: w.IsSpam,
				Actions: w.Actions.Values(), SymbolsAny: w.SymbolsAny.Values(), SymbolsAll: w.SymbolsAll.Values(), Profiles: w.Profiles.Values(),
				Recipients: w.Recipients.Values(), OptinAny: w.OptinAny.Values(), OptinNone: w.OptinNone.Values()}}
		if rc.Outcome.Value == "" {
			r.Outcome = OutcomeDeliver
		}
		if w.RecipientRegex.Value != "" {
			re, err := CompileRecipientRegex(w.RecipientRegex.Value)
			if err != nil {
				d.Errorf(w.RecipientRegex.Line, "bmi.rules: recipient_regex: %v", err)
			}
			r.When.RecipientRegex = re
		}
		// One rule at a time, so that each problem is reported at its rule's
		// line; duplicate ids are found above, with the other problems.
		feature.ReportAll(d, Validate([]Rule{r}), rc.Pos, "bmi.rules: ")
		o.Rules = append(o.Rules, r)
	}
	return &section{o: o}
}

var (
	atRcpt   = milter.StageSet(milter.StageRcpt)
	fromRcpt = milter.StagesFrom(milter.StageRcpt)
)

func (spec) Vocabulary() feature.Vocabulary {
	flag := func(key string, test func(f *RcptFacts) bool) feature.Condition {
		return feature.Condition{Key: key, Stages: fromRcpt, Example: "true", NewValue: func() any { return new(bool) },
			Compile: func(v any, _ int, _ feature.Section, _ feature.Reporter) feature.Test {
				want := *v.(*bool)
				return rcptCond(func(f *RcptFacts) bool { return test(f) == want })
			}}
	}
	return feature.Vocabulary{
		Conditions: []feature.Condition{
			flag("bmi_deliver_default", func(f *RcptFacts) bool { return f.Deliver && f.Outcome == string(OutcomeDeliver) }),
			flag("bmi_deliver_alternate", func(f *RcptFacts) bool { return f.Outcome == string(OutcomeAlternate) }),
			flag("bmi_dont_deliver", func(f *RcptFacts) bool { return f.Outcome == string(OutcomeDrop) }),
			{Key: "bmi_rule", Stages: fromRcpt, Example: "[1]", NewValue: func() any { return new([]int) },
				Compile: func(v any, _ int, _ feature.Section, _ feature.Reporter) feature.Test {
					ids := *v.(*[]int)
					return rcptCond(func(f *RcptFacts) bool {
						return f.Scanned && Fired(Verdict{Scanned: true, Fired: f.Fired}, ids)
					})
				}},
		},
		Modifiers: []feature.Modifier{{Key: "bmi_optin", Stages: atRcpt, Example: `"strict"`,
			Apply: func(e *feature.Eval, value string) {
				if f := RcptFactsOf(e.Rcpt); f != nil {
					f.Optins = append(f.Optins, SplitOptins(value)...)
				}
			}}},
		// Scan the message (for every recipient) once the body is in; the
		// scan starts with the body, so too late at data.
		Controls: []feature.Control{{Name: ControlRun, Stages: milter.StageSet(milter.StageMail, milter.StageRcpt)}},
	}
}

// rcptCond is one of the seed's per-recipient conditions. At rcpt it asks
// about the current recipient; at data (there is no current recipient) it
// holds when any accepted recipient satisfies it.
type rcptCond func(f *RcptFacts) bool

func (c rcptCond) Match(e *feature.Eval) (bool, *milter.Decision) {
	if e.Rcpt != nil {
		f := RcptFactsOf(e.Rcpt)
		return f != nil && c(f), nil
	}
	if e.Txn == nil {
		return false, nil
	}
	for _, r := range e.Txn.AcceptedRcpts() {
		if f := RcptFactsOf(r); f != nil && c(f) {
			return true, nil
		}
	}
	return false, nil
}

// Effective fills in the backend's timeout and size limit, the spool's
// memory, on_error and each rule's outcome as Compile and the module
// default them.
func (spec) Effective(cfg any) any {
	c := *cfg.(*Config)
	scanner := func(s *ScannerConfig, maxSize int64) *ScannerConfig {
		if s == nil {
			return nil
		}
		out := *s
		if out.Timeout == nil || *out.Timeout == 0 {
			t := feature.Duration(DefaultTimeout)
			out.Timeout = &t
		}
		if out.MaxSize == nil || *out.MaxSize == 0 {
			m := feature.ByteSize(maxSize)
			out.MaxSize = &m
		}
		return &out
	}
	c.Backend.Spamd = scanner(c.Backend.Spamd, DefaultSpamdMaxSize)
	c.Backend.Rspamd = scanner(c.Backend.Rspamd, DefaultRspamdMax)
	if c.Spool.Memory == nil || *c.Spool.Memory <= 0 {
		m := feature.ByteSize(DefaultSpoolMemory)
		c.Spool.Memory = &m
	}
	if c.OnError.Value == "" {
		c.OnError.Value = "deliver"
	}
	rules := make([]RuleConfig, len(c.Rules))
	for i, r := range c.Rules {
		if r.Outcome.Value == "" {
			r.Outcome.Value = string(OutcomeDeliver)
		}
		rules[i] = r
	}
	if c.Rules != nil {
		c.Rules = rules
	}
	return &c
}
