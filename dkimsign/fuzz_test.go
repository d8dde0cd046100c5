package dkimsign

import (
	"bytes"
	"crypto/sha256"
	"regexp"
	"strings"
	"testing"
)

var wspRun = regexp.MustCompile(`[ \t]+`)

// refBodyCanon is RFC 6376 §3.4.3/§3.4.4 over a whole body, written
// plainly: what the streaming bodyHasher must equal.
func refBodyCanon(relaxed bool, body string) string {
	lines := strings.Split(body, "\r\n")
	last := lines[len(lines)-1]
	lines = lines[:len(lines)-1]
	unterminated := last != ""
	if unterminated {
		lines = append(lines, last)
	}
	for i, l := range lines {
		if relaxed {
			l = wspRun.ReplaceAllString(l, " ")
			if !unterminated || i < len(lines)-1 || strings.Trim(l, " ") == "" {
				l = strings.TrimRight(l, " ")
			}
		}
		lines[i] = l
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) == 0 {
		if relaxed {
			return ""
		}
		return "\r\n"
	}
	return strings.Join(lines, "\r\n") + "\r\n"
}

// FuzzBodyCanon: the body comes from the network in chunks cut anywhere;
// the streamed hash must be that of the plain canonicalization, however
// it is cut.
func FuzzBodyCanon(f *testing.F) {
	for _, s := range []string{"", "\r\n", " C \r\nD \t E\r\n\r\n\r\n", "a\r \r\n", "x\r", "\r\n \t\r\n", "lone\nLF\r\n", "tail  "} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, body []byte, cut uint8) {
		for _, canon := range []string{canonRelaxed, canonSimple} {
			want := sha256.Sum256([]byte(refBodyCanon(canon == canonRelaxed, string(body))))
			if got := bodyHash(canon, string(body), int(cut)); !bytes.Equal(got, want[:]) {
				t.Fatalf("%s %q cut %d: %q expected", canon, body, cut, refBodyCanon(canon == canonRelaxed, string(body)))
			}
		}
	})
}

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
