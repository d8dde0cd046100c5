package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/milter"
)

func TestLimitsDefaultsAndValues(t *testing.T) {
	if got := mustParse(t, "listen: inet:127.0.0.1:8891\n").Limits; got != milter.DefaultLimits() {
		t.Errorf("defaults %+v", got)
	}
	p := mustParse(t, `limits:
  max_connections: 200
  idle_timeout: 15m
  max_packet: 1M
  max_headers: 300
  max_header_bytes: 256K
`)
	want := milter.Limits{MaxConnections: 200, IdleTimeout: 15 * time.Minute, MaxPacket: 1 << 20, MaxHeaders: 300, MaxHeaderBytes: 256 << 10}
	if p.Limits != want {
		t.Errorf("limits %+v, want %+v", p.Limits, want)
	}
	if p := mustParse(t, "limits: {idle_timeout: 2m}\n"); len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0].Error(), "test.yaml:1: limits.idle_timeout") {
		t.Errorf("no warning for an idle_timeout under Postfix's: %v", p.Warnings)
	}
}

func TestLimitsErrorsHaveLines(t *testing.T) {
	_, err := Parse("bad.yaml", []byte(`limits:
  max_connections: 0
  idle_timeout: soon
  max_packet: 1K
  max_headers: many
  max_header_bytes: 12
  max_body: 1M
`))
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{
		"bad.yaml:2: limits.max_connections:",
		"bad.yaml:3: limits.idle_timeout:",
		"bad.yaml:4: limits.max_packet:",
		"bad.yaml:5: limits.max_headers:",
		"bad.yaml:6: limits.max_header_bytes:",
		`bad.yaml:7: unknown key "max_body"`,
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in:\n%v", w, err)
		}
	}
}
