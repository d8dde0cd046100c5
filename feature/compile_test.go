package feature

import (
	"slices"
	"testing"
	"time"
)

func TestRequireAuthServID(t *testing.T) {
	var r recorder
	(&CompileEnv{Report: &r, AuthServID: "mx.example.org"}).RequireAuthServID(3, "dkim")
	if len(r) != 0 {
		t.Errorf("reported with authserv_id set: %q", r)
	}
	env := &CompileEnv{Report: &r}
	env.RequireAuthServID(3, "dkim")
	env.RequireAuthServID(4, "spf", "Received-SPF")
	want := recorder{
		"3: dkim needs authserv_id (top level): the name of this ADMD in Authentication-Results (e.g. authserv_id: mx.example.org)",
		"4: spf needs authserv_id (top level): the name of this ADMD in Authentication-Results and Received-SPF (e.g. authserv_id: mx.example.org)",
	}
	if !slices.Equal(r, want) {
		t.Errorf("reported %q, want %q", r, want)
	}
}

func TestTimeout(t *testing.T) {
	var pos Pos
	pos.Line = 5
	pos.SetKeyLine("timeout", 7)
	var r recorder
	if got := Timeout(&r, pos, "iprev", nil, 10*time.Second); got != 10*time.Second || len(r) != 0 {
		t.Errorf("not set: %v, %q; want the default and no error", got, r)
	}
	set := Duration(3 * time.Second)
	if got := Timeout(&r, pos, "iprev", &set, 10*time.Second); got != 3*time.Second || len(r) != 0 {
		t.Errorf("3s: %v, %q", got, r)
	}
	zero := Duration(0)
	Timeout(&r, pos, "spf", &zero, 20*time.Second)
	if want := (recorder{"7: spf.timeout: must be more than 0 (e.g. 20s)"}); !slices.Equal(r, want) {
		t.Errorf("0s: reported %q, want %q", r, want)
	}
}

func TestEffectiveTimeout(t *testing.T) {
	zero, set := Duration(0), Duration(3*time.Second)
	for _, tc := range []struct {
		in   *Duration
		want Duration
	}{{nil, Duration(10 * time.Second)}, {&zero, Duration(10 * time.Second)}, {&set, set}} {
		if got := EffectiveTimeout(tc.in, 10*time.Second); got == nil || *got != tc.want {
			t.Errorf("EffectiveTimeout(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if EffectiveTimeout(&zero, time.Second); zero != 0 {
		t.Errorf("the option given was changed")
	}
}
