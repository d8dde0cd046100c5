package feature

import (
	"slices"
	"testing"

	"github.com/tollgate/tollgate/milter"
)

func compileStates(t *testing.T, s StateCondition, items ...string) (Test, recorder) {
	t.Helper()
	var list StrList
	for i, it := range items {
		list = append(list, Str{Value: it, Line: 10 + i})
	}
	c := s.Condition()
	if c.Key != s.Key || c.Stages != s.Stages || c.Example != s.Example {
		t.Fatalf("Condition() = %+v, lost the key, stages or example of %+v", c, s)
	}
	v := c.NewValue()
	*v.(*StrList) = list
	var r recorder
	return c.Compile(v, 1, nil, &r), r
}

// The first listed item equal to the state decides; when none is, the list
// holds only if its last item is negated, as in an Exim list.
func TestStateConditionMatch(t *testing.T) {
	state, determined := "", true
	s := StateCondition{Key: "arc", Words: []string{"pass", "fail", "none"},
		State: func(*Eval) (string, bool) { return state, determined }}
	for _, tc := range []struct {
		items []string
		state string
		want  bool
	}{
		{[]string{"pass", "none"}, "pass", true},
		{[]string{"pass", "none"}, "none", true},
		{[]string{"pass", "none"}, "fail", false},
		{[]string{"!fail"}, "fail", false},
		{[]string{"!fail"}, "pass", true},
		{[]string{"!fail"}, "", true}, // determined but empty: not fail
		{[]string{"!fail", "pass"}, "none", false},
		{[]string{"pass", "!fail"}, "none", true},
		{[]string{"!fail", "fail"}, "fail", false}, // the first that matches decides
		{[]string{"fail", "!fail"}, "fail", true},
		{nil, "pass", false},
	} {
		test, errs := compileStates(t, s, tc.items...)
		if len(errs) != 0 {
			t.Fatalf("%q: %v", tc.items, errs)
		}
		state = tc.state
		got, deferred := test.Match(&Eval{})
		if got != tc.want || deferred != nil {
			t.Errorf("%q with state %q: %v, %v; want %v", tc.items, tc.state, got, deferred, tc.want)
		}
	}
	// An undetermined state is claimed by no list, negated or not.
	determined = false
	for _, items := range [][]string{{"!fail"}, {"pass", "!none"}, {"none"}} {
		test, _ := compileStates(t, s, items...)
		if got, _ := test.Match(&Eval{}); got {
			t.Errorf("%q holds for an undetermined state", items)
		}
	}
}

// State reads the Eval it is given: the condition is wired to the message.
func TestStateConditionReadsEval(t *testing.T) {
	s := StateCondition{Key: "k", Words: []string{"connect", "data"},
		State: func(e *Eval) (string, bool) { return e.Stage.String(), true }}
	test, _ := compileStates(t, s, "data")
	if got, _ := test.Match(&Eval{Stage: milter.StageData}); !got {
		t.Errorf("data at StageData: false")
	}
	if got, _ := test.Match(&Eval{Stage: milter.StageConnect}); got {
		t.Errorf("data at StageConnect: true")
	}
}

// Unknown words are reported at their own line, as written, in the
// feature's words or as "one of" the list; Fold accepts any case and
// surrounding space, and matches the folded word.
func TestStateConditionCompile(t *testing.T) {
	words := []string{"pass", "fail", "none"}
	_, errs := compileStates(t, StateCondition{Key: "arc", Words: words, Expected: "pass, fail or none"}, "pass", "!PASS", "bad")
	want := recorder{`11: arc: "!PASS" is not pass, fail or none (with ! to negate)`, `12: arc: "bad" is not pass, fail or none (with ! to negate)`}
	if !slices.Equal(errs, want) {
		t.Errorf("errors %q, want %q", errs, want)
	}
	_, errs = compileStates(t, StateCondition{Key: "spf_helo", Words: words, Fold: true}, " !Fail ", "failed")
	want = recorder{`11: spf_helo: "failed" is not one of pass, fail, none (with ! to negate)`}
	if !slices.Equal(errs, want) {
		t.Errorf("errors %q, want %q", errs, want)
	}
	test, _ := compileStates(t, StateCondition{Key: "spf", Words: words, Fold: true,
		State: func(*Eval) (string, bool) { return "fail", true }}, " !Fail ")
	if got, _ := test.Match(&Eval{}); got {
		t.Errorf("' !Fail ' holds for fail")
	}
}
