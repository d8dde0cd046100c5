//go:build e2e

package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/e2e"
)

// The daemon's /metrics as served, checked by promtool.
func TestMetricsEndpointLintsClean(t *testing.T) {
	d := startDaemon(t, denyConfig)
	rcpt(t, d.sock, "blocked@example.org")
	code, body := d.get(t, "/metrics")
	if code != 200 {
		t.Fatalf("status %d", code)
	}
	for _, want := range []string{"tollgate_sessions_active", "tollgate_messages_total", "tollgate_stage_duration_seconds_bucket",
		`tollgate_policy_decisions_total{rule="blocked",stage="rcpt",verb="deny"} 1`,
		"tollgate_config_reloads_total", "tollgate_build_info", "process_resident_memory_bytes"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// The registry lint runs in the milter package; promtool checks the exposition as served.
	e2e.RequireProgram(t, "/usr/bin/promtool", "prometheus")
	cmd := exec.Command("/usr/bin/promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool: %v\n%s", err, out)
	}
}
