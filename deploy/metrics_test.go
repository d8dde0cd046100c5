package deploy_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const (
	dashboardFile = "grafana/tollgate-dashboard.json"
	rulesFile     = "prometheus/tollgate.rules.yml"
)

// notOnMetrics are names the dashboard or the rules may use although the
// live run cannot make them appear on /metrics; each must still be
// registered by the daemon's code (liveResult.described).
var notOnMetrics = map[string]string{
	// Counted only when evaluating the policy panics (a bug): no message
	// can make it happen on purpose.
	"tollgate_policy_errors_total": "a policy panic",
}

// fromPrometheus are series Prometheus makes itself.
var fromPrometheus = map[string]bool{"up": true}

// dashboardExprs are the PromQL expressions of the dashboard's panels,
// variables and annotations, keyed by where they are.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	var d struct {
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Annotations struct {
			List []struct {
				Name string `json:"name"`
				Expr string `json:"expr"`
			} `json:"list"`
		} `json:"annotations"`
	}
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	exprs := map[string]string{}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("%s: panel id %d used twice", dashboardFile, p.ID)
		}
		ids[p.ID] = true
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("%s: panel %q has no query", dashboardFile, p.Title)
		}
		for i, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("%s: panel %q query %d is empty", dashboardFile, p.Title, i)
			}
			exprs["panel "+strconv.Quote(p.Title)+" query "+string(rune('A'+i))] = tg.Expr
		}
	}
	labelValues := regexp.MustCompile(`^\s*label_values\((.*),\s*\w+\s*\)\s*$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)
		s, _ := q["query"].(string)
		m := labelValues.FindStringSubmatch(s)
		if m == nil {
			t.Errorf("%s: variable %s: want label_values(METRIC, LABEL), got %q", dashboardFile, v.Name, s)
			continue
		}
		exprs["variable "+v.Name] = m[1]
	}
	for _, a := range d.Annotations.List {
		if a.Expr != "" {
			exprs["annotation "+a.Name] = a.Expr
		}
	}
	return exprs
}

// ruleExprs are the alert rules' expressions, keyed by alert name.
func ruleExprs(t *testing.T) map[string]string {
	t.Helper()
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	exprs := map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			exprs["alert "+r.Alert+r.Record] = r.Expr
		}
	}
	return exprs
}

var (
	promStrings  = regexp.MustCompile("\"(?:\\\\.|[^\"\\\\])*\"|'(?:\\\\.|[^'\\\\])*'|`[^`]*`")
	promMatchers = regexp.MustCompile(`\{[^{}]*\}`)
	promRanges   = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promOffset   = regexp.MustCompile(`\boffset\s+-?\w+`)
	promVars     = regexp.MustCompile(`\$\{?\w+\}?`)
	promIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	promKeywords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true,
		"group_right": true, "bool": true, "offset": true, "and": true, "or": true, "unless": true, "inf": true, "nan": true, "atan2": true}
)

// promqlMetrics lists the metric names a PromQL expression selects: the
// identifiers left once strings, label matchers, ranges, grouping clauses
// and Grafana variables are removed, that are not functions, keywords or
// parts of numbers.
func promqlMetrics(expr string) []string {
	s := promStrings.ReplaceAllString(expr, `""`)
	s = promMatchers.ReplaceAllString(s, " ")
	s = promRanges.ReplaceAllString(s, " ")
	s = promGrouping.ReplaceAllString(s, " ")
	s = promOffset.ReplaceAllString(s, " ")
	s = promVars.ReplaceAllString(s, " ")
	var names []string
	for _, loc := range promIdent.FindAllStringIndex(s, -1) {
		name := s[loc[0]:loc[1]]
		if loc[0] > 0 && (isAlnum(s[loc[0]-1]) || s[loc[0]-1] == '.') {
			continue // 1e3, 0.5m
		}
		if rest := strings.TrimLeft(s[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") || promKeywords[strings.ToLower(name)] {
			continue
		}
		names = append(names, name)
	}
	return names
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
}

// The parser above on the shapes the dashboard and rules use.
func TestPromQLMetrics(t *testing.T) {
	for expr, want := range map[string]string{
		`sum by (decision) (rate(tollgate_messages_total{job=~"$job", instance=~"$instance"}[$__rate_interval]))`: "tollgate_messages_total",
		`histogram_quantile(0.99, sum by (le, stage) (rate(a_bucket{stage!="data"}[5m]))) > 2`:                    "a_bucket",
		"sum(rate(x_total[5m])) / on (instance) group_left sum(rate(y_total[5m])) > 0.01":                         "x_total y_total",
		`time() - min(last_ts{a="b"}) offset 5m`:                                                                  "last_ts",
		`label_replace(up{job="tollgate"}, "host", "$1", "instance", "(.*):.*") == 0 and 1e3 > bool 2`:            "up",
		`absent(up{job="tollgate"})`: "up",
	} {
		if got := strings.Join(promqlMetrics(expr), " "); got != want {
			t.Errorf("promqlMetrics(%q) = %q, want %q", expr, got, want)
		}
	}
}
