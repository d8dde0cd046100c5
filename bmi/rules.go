package bmi

import (
	"errors"
	"fmt"
	"math"
	"regexp"
)

// Outcome is what a verdict does with a recipient.
type Outcome string

const (
	OutcomeDeliver   Outcome = "deliver"   // normal delivery (also: no verdict)
	OutcomeAlternate Outcome = "alternate" // deliver to AltLocation instead
	OutcomeDrop      Outcome = "drop"      // do not deliver to this recipient
)

// Rule is one numbered rule. All rules whose conditions hold fire; the first
// of them in list order decides the outcome.
type Rule struct {
	ID          int // > 0, unique; what bmi_rule conditions and the tracker name
	When        Conditions
	Outcome     Outcome
	AltLocation string // required for OutcomeAlternate, see ParseAltLocation
}

// Conditions all have to hold (empty Conditions always hold, for a
// catch-all rule). Nil pointers and empty lists are not checked.
type Conditions struct {
	ScoreAbove, ScoreBelow         *float64 // Score > x, Score < x
	ThresholdAbove, ThresholdBelow *float64 // Threshold > x, Threshold < x
	MarginAbove, MarginBelow       *float64 // Score - Threshold > x, < x
	IsSpam                         *bool
	Actions                        []string // rspamd's action is one of these (case-insensitive, "_" = " ")
	SymbolsAny                     []string // at least one of these symbols (ASCII case-insensitive)
	SymbolsAll                     []string // every one of these symbols
	Profiles                       []string // scanned with one of these profiles ("" = the default)
	Recipients                     []string // the RCPT address is one of these (ASCII case-insensitive)
	RecipientRegex                 *regexp.Regexp
	OptinAny                       []string // the recipient has one of these opt-in strings (exact)
	OptinNone                      []string // the recipient has none of these
}

// RcptInput is one recipient as the rules see it.
type RcptInput struct {
	Addr   string   // the original RCPT address, as given
	Optins []string // its opt-in strings, split (SplitOptins); those of one byte or less are ignored
}

// Verdict is a recipient's result.
type Verdict struct {
	// Scanned: a scan result was there to judge. Without it (not scanned,
	// scan error, undecodable verdict) the recipient is delivered normally,
	// Deliver is true and verdict, tracker and alternate location are empty.
	Scanned     bool
	Deliver     bool // bmi_deliver: false only for OutcomeDrop
	Outcome     Outcome
	AltLocation string // bmi_alt_location, for OutcomeAlternate only
	Fired       []int  // every rule that fired, in list order (Fired[0] == Rule when any fired)
	Rule        int    // the deciding rule, 0 = none (delivered normally)
}

// NoVerdict is the verdict of a recipient that was not scanned.
func NoVerdict() Verdict { return Verdict{Deliver: true, Outcome: OutcomeDeliver} }

// DeliverDefault is the bmi_deliver_default condition.
func (v Verdict) DeliverDefault() bool {
	return v.Outcome != OutcomeAlternate && v.Outcome != OutcomeDrop
}

// DeliverAlternate is the bmi_deliver_alternate condition.
func (v Verdict) DeliverAlternate() bool { return v.Outcome == OutcomeAlternate }

// DontDeliver is the bmi_dont_deliver condition.
func (v Verdict) DontDeliver() bool { return v.Outcome == OutcomeDrop }

// Fired is the bmi_rule condition: whether any of ids fired. False without
// a verdict; ids <= 0 are ignored.
func Fired(v Verdict, ids []int) bool {
	if !v.Scanned {
		return false
	}
	for _, id := range ids {
		if id <= 0 {
			continue
		}
		for _, f := range v.Fired {
			if f == id {
				return true
			}
		}
	}
	return false
}

// Evaluate judges one recipient. res nil (not scanned, or the scan failed)
// gives NoVerdict: no rule is looked at.
func Evaluate(rules []Rule, res *ScanResult, rcpt RcptInput) Verdict {
	if res == nil {
		return NoVerdict()
	}
	v := Verdict{Scanned: true, Deliver: true, Outcome: OutcomeDeliver}
	for i := range rules {
		r := &rules[i]
		if r.ID <= 0 || !r.When.match(res, rcpt) {
			continue
		}
		v.Fired = append(v.Fired, r.ID)
		if v.Rule != 0 {
			continue
		}
		v.Rule = r.ID
		switch r.Outcome {
		case OutcomeDrop:
			v.Outcome, v.Deliver = OutcomeDrop, false
		case OutcomeAlternate:
			v.Outcome, v.AltLocation = OutcomeAlternate, r.AltLocation
		}
	}
	return v
}

func (c *Conditions) match(res *ScanResult, rcpt RcptInput) bool {
	if !above(c.ScoreAbove, res.Score) || !below(c.ScoreBelow, res.Score) ||
		!above(c.ThresholdAbove, res.Threshold) || !below(c.ThresholdBelow, res.Threshold) ||
		!above(c.MarginAbove, res.Score-res.Threshold) || !below(c.MarginBelow, res.Score-res.Threshold) {
		return false
	}
	if c.IsSpam != nil && *c.IsSpam != res.IsSpam {
		return false
	}
	if len(c.Actions) > 0 && !anyAction(c.Actions, res.Action) {
		return false
	}
	if len(c.SymbolsAny) > 0 {
		found := false
		for _, s := range c.SymbolsAny {
			if hasSymbol(res.Symbols, s) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	for _, s := range c.SymbolsAll {
		if !hasSymbol(res.Symbols, s) {
			return false
		}
	}
	if len(c.Profiles) > 0 && !contains(c.Profiles, res.Profile) {
		return false
	}
	if len(c.Recipients) > 0 {
		found := false
		for _, a := range c.Recipients {
			if asciiEqualFold(a, rcpt.Addr) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if c.RecipientRegex != nil && !c.RecipientRegex.MatchString(rcpt.Addr) {
		return false
	}
	if len(c.OptinAny) > 0 && !hasOptin(rcpt.Optins, c.OptinAny) {
		return false
	}
	if len(c.OptinNone) > 0 && hasOptin(rcpt.Optins, c.OptinNone) {
		return false
	}
	return true
}

func above(x *float64, v float64) bool { return x == nil || v > *x }
func below(x *float64, v float64) bool { return x == nil || v < *x }

func anyAction(want []string, got string) bool {
	got = normalizeAction(got)
	for _, a := range want {
		if normalizeAction(a) == got {
			return true
		}
	}
	return false
}

func hasSymbol(syms []string, s string) bool {
	for _, x := range syms {
		if asciiEqualFold(x, s) {
			return true
		}
	}
	return false
}

// hasOptin: one of the recipient's usable opt-ins (longer than one byte) is in want.
func hasOptin(optins, want []string) bool {
	for _, o := range optins {
		if len(o) <= 1 {
			continue
		}
		if contains(want, o) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// asciiEqualFold compares as Exim's strcmpic does: ASCII letters only.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x >= 'A' && x <= 'Z' {
			x += 'a' - 'A'
		}
		if y >= 'A' && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Validate checks a rule list and reports every problem at once
// (errors.Join), each starting with "bmi: rule".
func Validate(rules []Rule) error {
	var errs []error
	seen := make(map[int]int)
	for i, r := range rules {
		at := fmt.Sprintf("bmi: rule %d (#%d in the list)", r.ID, i+1)
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s: %s", at, fmt.Sprintf(format, args...)))
		}
		if r.ID <= 0 {
			bad("id must be a number above 0")
		} else if j, dup := seen[r.ID]; dup {
			bad("id already used by #%d", j+1)
		} else {
			seen[r.ID] = i
		}
		switch r.Outcome {
		case OutcomeDeliver, OutcomeDrop:
			if r.AltLocation != "" {
				bad("alt_location is only for outcome alternate")
			}
		case OutcomeAlternate:
			if r.AltLocation == "" {
				bad("outcome alternate needs an alt_location")
			} else if _, err := ParseAltLocation(r.AltLocation); err != nil {
				bad("%v", err)
			}
		default:
			bad("outcome %q: want deliver, alternate or drop", r.Outcome)
		}
		c := r.When
		for _, p := range []struct {
			name string
			v    *float64
		}{{"score_above", c.ScoreAbove}, {"score_below", c.ScoreBelow}, {"threshold_above", c.ThresholdAbove},
			{"threshold_below", c.ThresholdBelow}, {"margin_above", c.MarginAbove}, {"margin_below", c.MarginBelow}} {
			if p.v != nil && (math.IsNaN(*p.v) || math.IsInf(*p.v, 0)) {
				bad("%s: not a finite number", p.name)
			}
		}
		for _, p := range []struct {
			name   string
			lo, hi *float64
		}{{"score", c.ScoreAbove, c.ScoreBelow}, {"threshold", c.ThresholdAbove, c.ThresholdBelow}, {"margin", c.MarginAbove, c.MarginBelow}} {
			if p.lo != nil && p.hi != nil && *p.lo >= *p.hi {
				bad("%s_above %v and %s_below %v: never both true", p.name, *p.lo, p.name, *p.hi)
			}
		}
		for _, a := range c.Actions {
			if !validAction(normalizeAction(a)) {
				bad("action %q", a)
			}
		}
		for _, l := range []struct {
			name string
			v    []string
		}{{"symbols_any", c.SymbolsAny}, {"symbols_all", c.SymbolsAll}} {
			for _, s := range l.v {
				if !validSymbol(s) {
					bad("%s: %q is not a symbol name", l.name, s)
				}
			}
		}
		for _, p := range c.Profiles {
			if p != "" {
				if err := ValidProfile(p); err != nil {
					bad("%v", err)
				}
			}
		}
		for _, a := range c.Recipients {
			if a == "" {
				bad("recipients: empty address")
			}
		}
		for _, l := range []struct {
			name string
			v    []string
		}{{"optin_any", c.OptinAny}, {"optin_none", c.OptinNone}} {
			for _, o := range l.v {
				if len(o) <= 1 {
					bad("%s: %q: opt-in strings of one character or less are ignored, so this never matches", l.name, o)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// CompileRecipientRegex compiles a recipient pattern case-insensitively, as
// recipients are compared.
func CompileRecipientRegex(expr string) (*regexp.Regexp, error) {
	re, err := regexp.Compile("(?i)" + expr)
	if err != nil {
		return nil, fmt.Errorf("bmi: recipient regex: %w", err)
	}
	return re, nil
}
