package dkimsign

import (
	"strings"
	"testing"
)

// FuzzFromDomain: the From field is the sender's text; whatever it holds,
// the domain found is one token in lower case, or none.
func FuzzFromDomain(f *testing.F) {
	for _, s := range []string{" Alice <alice@Example.ORG>", " a@b.example, c@d.example", " \"x@y\" <z@w.example>", " nobody", " <@>", " a@b.example.\r\n (comment)", " =?utf-8?q?x?= <a@b.example>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		d := fromDomain([]Header{{"From", value}})
		if d != strings.ToLower(d) || strings.ContainsAny(d, " \t\r\n<>,;") {
			t.Fatalf("%q: domain %q", value, d)
		}
	})
}
