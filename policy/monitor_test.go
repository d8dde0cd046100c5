package policy

import (
	"strings"
	"testing"

	"github.com/tollgate/tollgate/milter"
)

func TestModeAndMonitorHeader(t *testing.T) {
	if p := mustParse(t, "acl: {rcpt: [accept: {}]}\n"); p.Monitor.On || p.Needs().Actions&milter.ActAddHeader != 0 {
		t.Errorf("default mode: %+v", p.Monitor)
	}
	if p := mustParse(t, "mode: enforce\n"); p.Monitor.On {
		t.Error("mode: enforce monitors")
	}
	p := mustParse(t, "mode: monitor\nmonitor_header: X-Tollgate-Would\n")
	if !p.Monitor.On || p.Monitor.Header != "X-Tollgate-Would" || p.Needs().Actions&milter.ActAddHeader == 0 {
		t.Errorf("monitor with header: %+v, actions %v", p.Monitor, p.Needs().Actions)
	}
	if rt := NewRuntime(p, nil, milter.NewMetrics(newRegistry())); rt.Monitor() != p.Monitor {
		t.Errorf("runtime mode %+v", rt.Monitor())
	}
	p = mustParse(t, "mode: enforce\nmonitor_header: X-Tollgate-Would\n")
	if p.Monitor.Header != "" || len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0].Error(), "test.yaml:2: monitor_header is only added in monitor mode") {
		t.Errorf("header without monitor mode: %+v %v", p.Monitor, p.Warnings)
	}
}

func TestModeErrorsHaveLines(t *testing.T) {
	_, err := Parse("bad.yaml", []byte("on_error: accept\nmode: dryrun\nmonitor_header: \"X Would\"\nmonitor: true\n"))
	if err == nil {
		t.Fatal("loaded")
	}
	for _, want := range []string{`bad.yaml:2: mode: "dryrun" is not enforce or monitor`,
		`bad.yaml:3: monitor_header: "X Would" is not a header name`, `bad.yaml:4: unknown key "monitor"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
}
