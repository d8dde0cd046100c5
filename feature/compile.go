package feature

import (
	"strings"
	"time"
)

// RequireAuthServID reports, at line (the section's), that the feature
// named cannot work without the top-level authserv_id, the name its
// results are written under. alsoIn names the header fields beside
// Authentication-Results that carry it (spf: Received-SPF).
func (env *CompileEnv) RequireAuthServID(line int, feature string, alsoIn ...string) {
	if env.AuthServID != "" {
		return
	}
	fields := strings.Join(append([]string{"Authentication-Results"}, alsoIn...), " and ")
	env.Report.Errorf(line, "%s needs authserv_id (top level): the name of this ADMD in %s (e.g. authserv_id: mx.example.org)", feature, fields)
}

// Timeout is what the optional timeout: option of a section sets, def when
// it is not set. 0 would bound nothing: it is reported at the option's line,
// with def as the example.
func Timeout(r Reporter, pos Pos, section string, set *Duration, def time.Duration) time.Duration {
	if set == nil {
		return def
	}
	if *set == 0 {
		r.Errorf(pos.KeyLine("timeout"), "%s.timeout: must be more than 0 (e.g. %s)", section, def)
	}
	return time.Duration(*set)
}

// EffectiveTimeout is the timeout: option as Effective prints it: def when
// it is not set or 0, as the modules default it.
func EffectiveTimeout(set *Duration, def time.Duration) *Duration {
	if set == nil || *set == 0 {
		d := Duration(def)
		return &d
	}
	return set
}
