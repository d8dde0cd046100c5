// Package feature is the small interface between the generic configuration
// and policy engine (package policy) and the features (arc, srs, dcc, bmi,
// ...). A feature package exports a Spec; cmd/tollgate lists the specs it is
// built with and hands them to the loader. policy imports no feature, and a
// feature imports neither policy nor another feature: what they share is
// here and in milter (identity, the envelope owner, the stage runner).
package feature

import (
	"errors"
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
