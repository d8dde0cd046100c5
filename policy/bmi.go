package policy

import (
	"time"

	"github.com/tollgate/tollgate/bmi"
	"github.com/tollgate/tollgate/milter"
)

type bmiPolicy struct {
	backend      bmi.Backend
	rules        []bmi.Rule
	profiles     bmi.ProfileMap
	optins       map[string][]string
	spoolMemory  int64
	spoolDir     string
	deferOnError bool
	spamHeaders  bool
}

func strs(l StrList) []string {
	var out []string
	for _, s := range l {
		out = append(out, s.Value)
	}
	return out
}

func compileBMI(d *decoder, in *BMIConfig) *bmiPolicy {
	if in == nil {
		return nil
	}
	p := &bmiPolicy{spamHeaders: in.SpamHeaders, spoolDir: in.Spool.Dir.Value, profiles: bmi.ProfileMap{ByOptin: map[string]string{}, Default: in.DefaultProfile.Value}}
	scanner := func(c *BMIScannerConfig) (string, time.Duration, int64) {
		var t time.Duration
		var max int64
		if c.Timeout != nil {
			t = time.Duration(*c.Timeout)
		}
		if c.MaxSize != nil {
			max = int64(*c.MaxSize)
		}
		if c.Address.Value == "" {
			d.errorf(c.Pos.Line, "bmi.backend: address is required (host:port or a unix socket path)")
		}
		return c.Address.Value, t, max
	}
	switch b := in.Backend; {
	case b.Spamd != nil && b.Rspamd != nil:
		d.errorf(in.Pos.Line, "bmi.backend: give spamd or rspamd, not both")
	case b.Spamd != nil:
		addr, t, max := scanner(b.Spamd)
		s := bmi.NewSpamd(bmi.SpamdOptions{Address: addr, Timeout: t, MaxSize: max})
		if err := s.Check(); err != nil {
			d.errorf(b.Spamd.Pos.Line, "bmi.backend.spamd: %v", err)
		}
		p.backend = s
	case b.Rspamd != nil:
		addr, t, max := scanner(b.Rspamd)
		r := bmi.NewRspamd(bmi.RspamdOptions{Address: addr, Timeout: t, MaxSize: max})
		if err := r.Check(); err != nil {
			d.errorf(b.Rspamd.Pos.Line, "bmi.backend.rspamd: %v", err)
		}
		p.backend = r
	default:
		d.errorf(in.Pos.Line, "bmi.backend needs spamd: {address: ...} or rspamd: {address: ...}")
	}
	if in.Spool.Memory != nil {
		p.spoolMemory = int64(*in.Spool.Memory)
	}
	switch in.OnError.Value {
	case "", "deliver":
	case "defer":
		p.deferOnError = true
	default:
		d.errorf(in.OnError.Line, "bmi.on_error: %q is not deliver or defer", in.OnError.Value)
	}
	if in.OptinFile.Value != "" {
		m, err := bmi.LoadOptinFile(in.OptinFile.Value)
		if err != nil {
			d.errorf(in.OptinFile.Line, "bmi.optin_file: %v", err)
		}
		p.optins = m
	}
	for optin, profile := range in.Profiles {
		if err := bmi.ValidProfile(profile.Value); err != nil {
			d.errorf(profile.Line, "bmi.profiles: %v", err)
		}
		p.profiles.ByOptin[optin] = profile.Value
	}
	if in.DefaultProfile.Value != "" {
		if err := bmi.ValidProfile(in.DefaultProfile.Value); err != nil {
			d.errorf(in.DefaultProfile.Line, "bmi.default_profile: %v", err)
		}
	}
	ids := map[int]int{} // rule id -> line of the rule that has it
	for _, rc := range in.Rules {
		if first, dup := ids[rc.ID]; dup && rc.ID > 0 {
			d.errorf(rc.Pos.KeyLine("id"), "bmi.rules: id %d is already used by the rule at line %d", rc.ID, first)
		} else {
			ids[rc.ID] = rc.Pos.KeyLine("id")
		}
		w := rc.When
		r := bmi.Rule{ID: rc.ID, Outcome: bmi.Outcome(rc.Outcome.Value), AltLocation: rc.AltLocation.Value,
			When: bmi.Conditions{ScoreAbove: w.ScoreAbove, ScoreBelow: w.ScoreBelow, ThresholdAbove: w.ThresholdAbove,
				ThresholdBelow: w.ThresholdBelow, MarginAbove: w.MarginAbove, MarginBelow: w.MarginBelow, IsSpam: w.IsSpam,
				Actions: strs(w.Actions), SymbolsAny: strs(w.SymbolsAny), SymbolsAll: strs(w.SymbolsAll), Profiles: strs(w.Profiles),
				Recipients: strs(w.Recipients), OptinAny: strs(w.OptinAny), OptinNone: strs(w.OptinNone)}}
		if rc.Outcome.Value == "" {
			r.Outcome = bmi.OutcomeDeliver
		}
		if w.RecipientRegex.Value != "" {
			re, err := bmi.CompileRecipientRegex(w.RecipientRegex.Value)
			if err != nil {
				d.errorf(w.RecipientRegex.Line, "bmi.rules: recipient_regex: %v", err)
			}
			r.When.RecipientRegex = re
		}
		// One rule at a time, so that each problem is reported at its rule's
		// line; duplicate ids are found above, with the other problems.
		d.reportAll(bmi.Validate([]bmi.Rule{r}), rc.Pos, "bmi.rules: ")
		p.rules = append(p.rules, r)
	}
	return p
}

// bmiCond is one of the seed's per-recipient conditions. At rcpt it asks
// about the current recipient; at data (there is no current recipient) it
// holds when any accepted recipient satisfies it.
type bmiCond struct {
	test func(f *milter.BMIRcpt) bool
}

func (c bmiCond) match(e *evalCtx) bool {
	if e.r != nil {
		return e.r.BMI != nil && c.test(e.r.BMI)
	}
	for _, r := range e.t.AcceptedRcpts() {
		if r.BMI != nil && c.test(r.BMI) {
			return true
		}
	}
	return false
}

func compileBMIConds(b *RuleBody) []condition {
	var out []condition
	flag := func(v *bool, test func(f *milter.BMIRcpt) bool) {
		if v != nil {
			want := *v
			out = append(out, bmiCond{test: func(f *milter.BMIRcpt) bool { return test(f) == want }})
		}
	}
	flag(b.BMIDeliverDefault, func(f *milter.BMIRcpt) bool { return f.Deliver && f.Outcome == string(bmi.OutcomeDeliver) })
	flag(b.BMIDeliverAlternate, func(f *milter.BMIRcpt) bool { return f.Outcome == string(bmi.OutcomeAlternate) })
	flag(b.BMIDontDeliver, func(f *milter.BMIRcpt) bool { return f.Outcome == string(bmi.OutcomeDrop) })
	if b.BMIRule != nil {
		ids := b.BMIRule
		out = append(out, bmiCond{test: func(f *milter.BMIRcpt) bool {
			return f.Scanned && bmi.Fired(bmi.Verdict{Scanned: true, Fired: f.Fired}, ids)
		}})
	}
	return out
}
