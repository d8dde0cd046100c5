package milter

import "strings"

// Stages is a set of policy stages: where a variable has a value, a condition
// means something or a control can still act. A set, not a "from" stage,
// because recipient facts exist at rcpt only: at data there is no current
// recipient, so "available from rcpt on" would let $recipient into a data
// rule that can only fail there.
type Stages uint16

// StageSet is the set of the given stages.
func StageSet(stages ...Stage) Stages {
	var ss Stages
	for _, s := range stages {
		ss |= 1 << s
	}
	return ss
}

// StagesFrom is s and every policy stage after it.
func StagesFrom(s Stage) Stages {
	var ss Stages
	seen := false
	for _, p := range PolicyStages {
		if p == s {
			seen = true
		}
		if seen {
			ss |= 1 << p
		}
	}
	return ss
}

// AllStages is every policy stage.
var AllStages = StagesFrom(StageConnect)

// Has reports whether s is in the set.
func (ss Stages) Has(s Stage) bool { return ss&(1<<s) != 0 }

// String lists the policy stages of the set in transaction order, e.g. "mail, rcpt".
func (ss Stages) String() string {
	var names []string
	for _, p := range PolicyStages {
		if ss.Has(p) {
			names = append(names, p.String())
		}
	}
	if len(names) == 0 {
		return "no stage"
	}
	return strings.Join(names, ", ")
}
