package bmi

import (
	"math"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestEvaluate(t *testing.T) {
	spam := &ScanResult{Score: 12.5, Threshold: 5, IsSpam: true, Action: "add header",
		Symbols: []string{"BAYES_99", "GTUBE", "URIBL_BLACK"}, Backend: "rspamd", Profile: "strict"}
	ham := &ScanResult{Score: -1, Threshold: 5, Action: "no action", Backend: "rspamd"}
	alice := RcptInput{Addr: "Alice@Example.ORG", Optins: []string{"virus", "spam-high"}}
	bob := RcptInput{Addr: "bob@example.org", Optins: []string{"s", "x", ""}}

	type want struct {
		outcome Outcome
		rule    int
		fired   []int
		alt     string
	}
	for _, c := range []struct {
		name  string
		rules []Rule
		res   *ScanResult
		rcpt  RcptInput
		want  want
	}{
		{"no rules", nil, spam, alice, want{OutcomeDeliver, 0, nil, ""}},
		{"first match decides, all fire", []Rule{
			{ID: 5, When: Conditions{ScoreBelow: ptr(0.0)}, Outcome: OutcomeDrop},
			{ID: 8, When: Conditions{IsSpam: ptr(true)}, Outcome: OutcomeAlternate, AltLocation: "quarantine"},
			{ID: 11, When: Conditions{SymbolsAny: []string{"gtube"}}, Outcome: OutcomeDrop},
			{ID: 3, When: Conditions{}, Outcome: OutcomeDeliver},
		}, spam, alice, want{OutcomeAlternate, 8, []int{8, 11, 3}, "quarantine"}},
		{"a deliver rule decides too", []Rule{
			{ID: 1, When: Conditions{Recipients: []string{"alice@example.org"}}, Outcome: OutcomeDeliver},
			{ID: 2, When: Conditions{IsSpam: ptr(true)}, Outcome: OutcomeDrop},
		}, spam, alice, want{OutcomeDeliver, 1, []int{1, 2}, ""}},
		{"nothing matches", []Rule{
			{ID: 2, When: Conditions{IsSpam: ptr(true)}, Outcome: OutcomeDrop},
		}, ham, alice, want{OutcomeDeliver, 0, nil, ""}},
		{"score bounds are strict", []Rule{
			{ID: 1, When: Conditions{ScoreAbove: ptr(12.5)}, Outcome: OutcomeDrop},
			{ID: 2, When: Conditions{ScoreBelow: ptr(12.5)}, Outcome: OutcomeDrop},
			{ID: 3, When: Conditions{ScoreAbove: ptr(12.4), ScoreBelow: ptr(12.6)}, Outcome: OutcomeDrop},
		}, spam, alice, want{OutcomeDrop, 3, []int{3}, ""}},
		{"threshold and margin", []Rule{
			{ID: 1, When: Conditions{ThresholdAbove: ptr(5.0)}, Outcome: OutcomeDrop},
			{ID: 2, When: Conditions{ThresholdBelow: ptr(6.0), MarginAbove: ptr(7.0)}, Outcome: OutcomeDrop},
			{ID: 3, When: Conditions{MarginBelow: ptr(7.5)}, Outcome: OutcomeDrop},
		}, spam, alice, want{OutcomeDrop, 2, []int{2}, ""}},
		{"actions, normalized", []Rule{
			{ID: 1, When: Conditions{Actions: []string{"reject"}}, Outcome: OutcomeDrop},
			{ID: 2, When: Conditions{Actions: []string{"reject", "ADD_HEADER"}}, Outcome: OutcomeAlternate, AltLocation: "header:X-Spam: yes"},
		}, spam, alice, want{OutcomeAlternate, 2, []int{2}, "header:X-Spam: yes"}},
		{"symbols all", []Rule{
			{ID: 1, When: Conditions{SymbolsAll: []string{"GTUBE", "NOPE"}}, Outcome: OutcomeDrop},
			{ID: 2, When: Conditions{SymbolsAll: []string{"gtube", "uribl_black"}}, Outcome: OutcomeDrop},
		}, spam, alice, want{OutcomeDrop, 2, []int{2}, ""}},
		{"profiles", []Rule{
			{ID: 1, When: Conditions{Profiles: []string{""}}, Outcome: OutcomeDrop},
			{ID: 2, When: Conditions{Profiles: []string{"strict"}}, Outcome: OutcomeDrop},
		}, spam, alice, want{OutcomeDrop, 2, []int{2}, ""}},
		{"recipient, case-insensitive", []Rule{
			{ID: 1, When: Conditions{Recipients: []string{"ALICE@example.org"}}, Outcome: OutcomeDrop},
		}, spam, alice, want{OutcomeDrop, 1, []int{1}, ""}},
		{"recipient regex", []Rule{
			{ID: 1, When: Conditions{RecipientRegex: mustRe(t, `^alice@example\.org$`)}, Outcome: OutcomeDrop},
		}, spam, alice, want{OutcomeDrop, 1, []int{1}, ""}},
		{"opt-ins", []Rule{
			{ID: 1, When: Conditions{OptinAny: []string{"spam-low"}}, Outcome: OutcomeDrop},
			{ID: 2, When: Conditions{OptinAny: []string{"spam-low", "spam-high"}, OptinNone: []string{"virus"}}, Outcome: OutcomeDrop},
			{ID: 3, When: Conditions{OptinAny: []string{"spam-high"}, OptinNone: []string{"nothing"}}, Outcome: OutcomeDrop},
		}, spam, alice, want{OutcomeDrop, 3, []int{3}, ""}},
		{"opt-ins of one character or less are ignored", []Rule{
			{ID: 1, When: Conditions{OptinAny: []string{"s", "x", ""}}, Outcome: OutcomeDrop},
			{ID: 2, When: Conditions{OptinNone: []string{"s"}}, Outcome: OutcomeDrop},
		}, spam, bob, want{OutcomeDrop, 2, []int{2}, ""}},
		{"ids <= 0 never fire", []Rule{
			{ID: 0, When: Conditions{}, Outcome: OutcomeDrop},
			{ID: -3, When: Conditions{}, Outcome: OutcomeDrop},
		}, spam, alice, want{OutcomeDeliver, 0, nil, ""}},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := Evaluate(c.rules, c.res, c.rcpt)
			if !v.Scanned || v.Outcome != c.want.outcome || v.Rule != c.want.rule || !slices.Equal(v.Fired, c.want.fired) || v.AltLocation != c.want.alt {
				t.Errorf("got %+v; want %+v", v, c.want)
			}
			if v.Deliver != (c.want.outcome != OutcomeDrop) {
				t.Errorf("Deliver %v for %s", v.Deliver, v.Outcome)
			}
			if len(v.Fired) > 0 && v.Fired[0] != v.Rule {
				t.Errorf("the deciding rule %d is not the first fired %v", v.Rule, v.Fired)
			}
			n := 0
			for _, f := range []bool{v.DeliverDefault(), v.DeliverAlternate(), v.DontDeliver()} {
				if f {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%+v: exactly one of the three conditions must hold", v)
			}
		})
	}
}

func mustRe(t *testing.T, expr string) *regexp.Regexp {
	t.Helper()
	re, err := CompileRecipientRegex(expr)
	if err != nil {
		t.Fatal(err)
	}
	return re
}

// No scan result: deliver normally, empty everything, no rule looked at.
func TestNoVerdict(t *testing.T) {
	rules := []Rule{{ID: 1, When: Conditions{}, Outcome: OutcomeDrop}}
	v := Evaluate(rules, nil, RcptInput{Addr: "a@example.org", Optins: []string{"spam"}})
	if v.Scanned || !v.Deliver || !v.DeliverDefault() || v.DeliverAlternate() || v.DontDeliver() ||
		v.AltLocation != "" || v.Rule != 0 || len(v.Fired) != 0 {
		t.Fatalf("%+v", v)
	}
	if EncodeVerdict(v, nil) != "" || EncodeVerdict(v, &ScanResult{}) != "" || v.Tracker() != "" {
		t.Error("no verdict must encode as empty verdict and tracker")
	}
	if Fired(v, []int{1}) {
		t.Error("bmi_rule true without a verdict")
	}
	if got := EvaluateGroups(rules, []RcptInput{{Addr: "a"}}, nil)[0]; got.Scanned || !got.Deliver {
		t.Errorf("recipient in no group: %+v", got)
	}
	if got := Find(nil, nil, "a@example.org"); got.Scanned || !got.Deliver {
		t.Errorf("Find without verdicts: %+v", got)
	}
}

func TestFiredBMIRule(t *testing.T) {
	v := Verdict{Scanned: true, Deliver: true, Outcome: OutcomeDeliver, Fired: []int{5, 8, 11}, Rule: 5}
	for _, c := range []struct {
		ids  []int
		want bool
	}{
		{[]int{5}, true},
		{[]int{1, 2, 11}, true},
		{[]int{1, 2, 3}, false},
		{nil, false},
		{[]int{0, -5}, false},
		{[]int{-8, 8}, true},
	} {
		if got := Fired(v, c.ids); got != c.want {
			t.Errorf("Fired(%v) = %v", c.ids, got)
		}
	}
	v.Fired = []int{0, -1} // never produced by Evaluate, still ignored
	if Fired(v, []int{0, -1}) {
		t.Error("ids <= 0 must be ignored")
	}
}

func TestFindCaseInsensitive(t *testing.T) {
	rcpts := []RcptInput{{Addr: "Alice@Example.org"}, {Addr: "bob@example.org"}, {Addr: "ALICE@example.ORG"}}
	vs := []Verdict{{Scanned: true, Rule: 1}, {Scanned: true, Rule: 2}, {Scanned: true, Rule: 3}}
	if got := Find(rcpts, vs, "alice@EXAMPLE.org"); got.Rule != 1 {
		t.Errorf("got rule %d; want the first match", got.Rule)
	}
	// ASCII only, as Exim's strcmpic: the Kelvin sign is not a k.
	rcpts = []RcptInput{{Addr: "k@example.org"}}
	if got := Find(rcpts, vs[:1], "\u212a@example.org"); got.Scanned {
		t.Error("Unicode folding used")
	}
}

func TestValidate(t *testing.T) {
	good := exampleRules()
	if err := Validate(good); err != nil {
		t.Fatal(err)
	}
	bad := []Rule{
		{ID: 0, Outcome: OutcomeDeliver},
		{ID: 2, Outcome: OutcomeDrop},
		{ID: 2, Outcome: OutcomeDrop},
		{ID: 3, Outcome: OutcomeAlternate},
		{ID: 4, Outcome: OutcomeDrop, AltLocation: "quarantine"},
		{ID: 5, Outcome: "bounce"},
		{ID: 6, Outcome: OutcomeAlternate, AltLocation: "mailbox:Junk"},
		{ID: 7, Outcome: OutcomeDrop, When: Conditions{ScoreAbove: ptr(10.0), ScoreBelow: ptr(5.0)}},
		{ID: 8, Outcome: OutcomeDrop, When: Conditions{MarginAbove: ptr(math.NaN())}},
		{ID: 9, Outcome: OutcomeDrop, When: Conditions{OptinAny: []string{"x"}}},
		{ID: 10, Outcome: OutcomeDrop, When: Conditions{SymbolsAny: []string{"A B"}}},
		{ID: 11, Outcome: OutcomeDrop, When: Conditions{Actions: []string{""}}},
		{ID: 12, Outcome: OutcomeDrop, When: Conditions{Profiles: []string{"../x"}}},
		{ID: 13, Outcome: OutcomeAlternate, AltLocation: "header:X-Brightmail-Verdict: forged"},
		{ID: -1, Outcome: OutcomeDrop},
	}
	err := Validate(bad)
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(bad)-1 { // rule 2's first occurrence is fine
		t.Errorf("%d problems reported, want %d:\n%v", len(lines), len(bad)-1, err)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "bmi: rule ") {
			t.Errorf("%q: want the bmi: rule prefix", l)
		}
	}
}

func TestParseAltLocation(t *testing.T) {
	for _, c := range []struct {
		in   string
		want AltLocation
	}{
		{"redirect:spam@example.org", AltLocation{Kind: AltRedirect, Address: "spam@example.org"}},
		{"Redirect: spam@example.org ", AltLocation{Kind: AltRedirect, Address: "spam@example.org"}},
		{"header:X-Spam-Folder: Junk", AltLocation{Kind: AltHeader, HeaderName: "X-Spam-Folder", HeaderValue: "Junk"}},
		{"header:X-Spam:", AltLocation{Kind: AltHeader, HeaderName: "X-Spam"}},
		{"quarantine", AltLocation{Kind: AltQuarantine}},
		{"quarantine:bmi rule 7", AltLocation{Kind: AltQuarantine, Reason: "bmi rule 7"}},
	} {
		got, err := ParseAltLocation(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseAltLocation(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "redirect:", "redirect:a b@c", "redirect:<a@b>", "header:", "header:Bad Name: x",
		"header:X-Brightmail-Tracker: x", "folder:Junk", "quarantine:a\r\nb"} {
		if got, err := ParseAltLocation(in); err == nil {
			t.Errorf("ParseAltLocation(%q) = %+v; want an error", in, got)
		}
	}
}

func TestProfiles(t *testing.T) {
	rcpts := []RcptInput{
		{Addr: "a", Optins: []string{"p", "gold"}},
		{Addr: "b"},
		{Addr: "c", Optins: []string{"silver", "gold"}},
		{Addr: "d", Optins: []string{"gold"}},
	}
	pm := ProfileMap{ByOptin: map[string]string{"gold": "strict", "silver": "lenient", "p": "never"}, Default: "std"}
	got := Profiles(rcpts, pm.Of)
	want := []ProfileGroup{{"strict", []int{0, 3}}, {"std", []int{1}}, {"lenient", []int{2}}}
	if len(got) != len(want) {
		t.Fatalf("%+v", got)
	}
	for i := range want {
		if got[i].Profile != want[i].Profile || !slices.Equal(got[i].Rcpts, want[i].Rcpts) {
			t.Errorf("group %d: %+v; want %+v", i, got[i], want[i])
		}
	}
	if g := Profiles(rcpts, nil); len(g) != 1 || g[0].Profile != "" || len(g[0].Rcpts) != 4 {
		t.Errorf("nil profileOf: %+v", g)
	}
	for _, p := range []string{"strict", "user@example.org", "a.b-c_d+e", "0"} {
		if err := ValidProfile(p); err != nil {
			t.Error(err)
		}
	}
	for _, p := range []string{"", ".hidden", "a..b", "a/b", "a b", "-x", strings.Repeat("a", 65), "é"} {
		if ValidProfile(p) == nil {
			t.Errorf("ValidProfile(%q) accepted", p)
		}
	}
}
