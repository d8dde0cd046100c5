package feature

import (
	"strings"

	"github.com/tollgate/tollgate/milter"
)

// StateCondition is a condition whose value lists words of one state of the
// message or session (arc: [pass, none], spf: ['!pass']): it holds when the
// state is listed. Items take "!" as in an Exim list: the first item equal
// to the state decides (a negated one: false); when none is, the list holds
// only if its last item is negated ("[!fail]" is "anything but fail").
type StateCondition struct {
	Key     string
	Stages  milter.Stages
	Example string
	// Words are the states a list may name; any other word is an error.
	Words []string
	// Expected names the words in the error for an unknown one, after "is
	// not"; "one of " and Words, comma-separated, when empty.
	Expected string
	// Fold trims and lower-cases each item before its "!" is read.
	Fold bool
	// State is the state a list is matched against; determined is false
	// when it was not (the check did not run), and then the condition does
	// not hold, whatever the list and its negations.
	State func(e *Eval) (state string, determined bool)
}

// Condition is the ACL condition: its value is a StrList.
func (s StateCondition) Condition() Condition {
	return Condition{Key: s.Key, Stages: s.Stages, Example: s.Example,
		NewValue: func() any { return new(StrList) },
		Compile: func(value any, _ int, _ Section, r Reporter) Test {
			return s.compile(*value.(*StrList), r)
		}}
}

func (s StateCondition) compile(items StrList, r Reporter) Test {
	expected := s.Expected
	if expected == "" {
		expected = "one of " + strings.Join(s.Words, ", ")
	}
	t := stateTest{state: s.State}
	for _, it := range items {
		v := it.Value
		if s.Fold {
			v = strings.ToLower(strings.TrimSpace(v))
		}
		v, neg := strings.CutPrefix(v, "!")
		known := false
		for _, w := range s.Words {
			known = known || v == w
		}
		if !known {
			r.Errorf(it.Line, "%s: %q is not %s (with ! to negate)", s.Key, it.Value, expected)
		}
		t.items, t.negate = append(t.items, v), append(t.negate, neg)
	}
	return t
}

type stateTest struct {
	state  func(e *Eval) (string, bool)
	items  []string
	negate []bool
}

func (t stateTest) Match(e *Eval) (bool, *milter.Decision) {
	state, determined := t.state(e)
	if !determined {
		return false, nil
	}
	return t.holds(state), nil
}

func (t stateTest) holds(state string) bool {
	for i, it := range t.items {
		if it == state {
			return !t.negate[i]
		}
	}
	return len(t.negate) > 0 && t.negate[len(t.negate)-1]
}
