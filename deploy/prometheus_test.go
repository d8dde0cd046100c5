//go:build e2e

package deploy_test

import (
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/e2e"
)

// The alert rules load in Prometheus, and fire when and only when they
// should (tests/tollgate.rules.test.yml: promtool's unit tests).
func TestPrometheusRules(t *testing.T) {
	promtool := e2e.RequireProgram(t, "promtool", "prometheus")
	out := run(t, promtool, "check", "rules", rulesFile)
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool check rules:\n%s", out)
	}
	out = run(t, promtool, "test", "rules", "prometheus/tests/tollgate.rules.test.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules:\n%s", out)
	}
	// Every alert says what it is about and how bad.
	var alerts []string
	for name := range ruleExprs(t) {
		alerts = append(alerts, name)
	}
	if len(alerts) < 10 {
		t.Errorf("only %d rules: %v", len(alerts), alerts)
	}
}
