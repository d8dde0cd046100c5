package feature

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

type recorder []string

func (r *recorder) Errorf(line int, format string, args ...any) {
	*r = append(*r, fmt.Sprintf("%d: ", line)+fmt.Sprintf(format, args...))
}

type optionError struct{ field, msg string }

func (e *optionError) Error() string       { return e.msg }
func (e *optionError) ConfigField() string { return e.field }

// Joined errors, nested or not, are reported one by one, each at the line of
// the option it names; an error naming an option that was not given, or none,
// is reported at the section's line. Nothing is split out of a string.
func TestReportAll(t *testing.T) {
	var section Pos
	section.Line = 10
	section.SetKeyLine("timeout", 12)
	section.SetKeyLine("options", 14)
	err := errors.Join(
		&optionError{"timeout", "timeout: negative\nwith a second line"},
		errors.Join(&optionError{"options", "options: unknown word"}, errors.New("plain problem")),
		fmt.Errorf("wrapped: %w", &optionError{"address", "address: missing"}),
	)
	var r recorder
	ReportAll(&r, err, section, "dcc: ")
	want := []string{
		"12: dcc: timeout: negative\nwith a second line",
		"14: dcc: options: unknown word",
		"10: dcc: plain problem",
		"10: dcc: wrapped: address: missing",
	}
	if strings.Join(r, "|") != strings.Join(want, "|") {
		t.Errorf("got %q\nwant %q", r, want)
	}
	r = nil
	ReportAll(&r, nil, section, "")
	if len(r) != 0 {
		t.Errorf("nil error reported: %q", r)
	}
}
