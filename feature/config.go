// Package feature is the small interface between the generic configuration
// and policy engine (package policy) and the features (arc, srs, dcc, bmi,
// ...). A feature package exports a Spec; cmd/tollgate lists the specs it is
// built with and hands them to the loader. policy imports no feature, and a
// feature imports neither policy nor another feature: what they share is
// here and in milter (identity, the envelope owner, the stage runner).
package feature

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// Str is a scalar string with the line it came from, for validation errors
// found after decoding.
type Str struct {
	Value string
	Line  int
}

// StrList accepts either one scalar (a one-item list) or a sequence of scalars.
type StrList []Str

// Values are the strings of the list.
func (l StrList) Values() []string {
	var out []string
	for _, s := range l {
		out = append(out, s.Value)
	}
	return out
}

// Pos, as a struct field, is filled with the line of the mapping the struct
// was decoded from and the line of each key given in it. It is never a key.
type Pos struct {
	Line int
	keys map[string]int
}

// KeyLine is the line of key in the mapping, or the mapping's own line when
// the key was not given: where a problem with that option is reported.
func (p Pos) KeyLine(key string) int {
	if l, ok := p.keys[key]; ok {
		return l
	}
	return p.Line
}

// SetKeyLine records the line of a key (the decoder calls it).
func (p *Pos) SetKeyLine(key string, line int) {
	if p.keys == nil {
		p.keys = map[string]int{}
	}
	p.keys[key] = line
}

// Duration accepts Go duration strings ("10s", "1m30s") and a leading number
// of days ("31d", "1d12h"). It is never negative.
type Duration time.Duration

// ByteSize accepts a number of bytes, optionally with a suffix K, M or G
// (powers of 1024; KB, KiB and so on too; case-insensitive). It is never
// negative.
type ByteSize int64

// Reporter collects configuration problems, each as "file:line: message";
// the loader reports all of them in one run.
type Reporter interface {
	Errorf(line int, format string, args ...any)
}

// FieldError is implemented by an error about one option: ConfigField is
// the option's key in the configuration section.
type FieldError interface {
	error
	ConfigField() string
}

// ReportAll reports every problem joined in err (errors.Join, nested or
// not), each on its own line: at the line of the option it names (a
// FieldError), else at the section's own line. Nothing is split out of a
// joined string.
func ReportAll(r Reporter, err error, section Pos, prefix string) {
	if err == nil {
		return
	}
	if _, leaf := err.(FieldError); !leaf {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				ReportAll(r, e, section, prefix)
			}
			return
		}
	}
	line := section.Line
	var f FieldError
	if errors.As(err, &f) {
		line = section.KeyLine(f.ConfigField())
	}
	r.Errorf(line, "%s%v", prefix, err)
}

// The MarshalYAML methods write the types back as the loader reads them, so
// that a section a Defaulter returns prints as configuration that loads.

// MarshalYAML writes the string alone; "" is left out of a printed section.
func (s Str) MarshalYAML() (any, error) {
	if s.Value == "" {
		return nil, nil
	}
	return s.Value, nil
}

// MarshalYAML writes a list of strings; a nil list is left out of a printed
// section, an empty one (which may differ from the default) prints as [].
func (l StrList) MarshalYAML() (any, error) {
	if l == nil {
		return nil, nil
	}
	out := make([]string, 0, len(l))
	for _, s := range l {
		out = append(out, s.Value)
	}
	return out, nil
}

// MarshalYAML writes whole days as "31d", otherwise Go's form without its
// zero units: "10s", "1m30s", "2h".
func (d Duration) MarshalYAML() (any, error) {
	t := time.Duration(d)
	if day := 24 * time.Hour; t > 0 && t%day == 0 {
		return strconv.FormatInt(int64(t/day), 10) + "d", nil
	}
	s := t.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s, nil
}

// MarshalYAML writes a size with the largest suffix that divides it: 512K, 20M.
func (b ByteSize) MarshalYAML() (any, error) {
	n := int64(b)
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"G", 30}, {"M", 20}, {"K", 10}} {
		if n > 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix, nil
		}
	}
	return strconv.FormatInt(n, 10), nil
}

// Redacted replaces a secret written inline in a section that is printed:
// secrets never leave the daemon through tollgate check --print.
const Redacted = "<redacted>"

// Redact returns the list with every item replaced by Redacted.
func Redact(l StrList) StrList {
	if l == nil {
		return nil
	}
	out := make(StrList, len(l))
	for i, s := range l {
		out[i] = Str{Value: Redacted, Line: s.Line}
	}
	return out
}

// Strs makes a list of the values, for a default written into a section.
func Strs(values ...string) StrList {
	out := make(StrList, 0, len(values))
	for _, v := range values {
		out = append(out, Str{Value: v})
	}
	return out
}
