package policy

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkFileListLookup is the cost of one lookup in a 100,000-line
// file: list of exact domains, for a domain near its end (the worst case
// for a list tried in order) and one not in it.
func BenchmarkFileListLookup(b *testing.B) {
	var sb strings.Builder
	for i := range 100_000 {
		fmt.Fprintf(&sb, "host%d.example.org\n", i)
	}
	path := writeFile(b, b.TempDir(), "domains", sb.String())
	d := &decoder{file: "t.yaml"}
	c := &listCompiler{d: d}
	l := c.domains(StrList{{Value: "file:" + path, Line: 1}})
	if d.errs != nil {
		b.Fatal(d.errs)
	}
	for _, tc := range []struct {
		name, domain string
		want         bool
	}{{"last", "host99999.example.org", true}, {"absent", "other.example.net", false}} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				if l.Match(tc.domain) != tc.want {
					b.Fatal("wrong answer")
				}
			}
		})
	}
}
