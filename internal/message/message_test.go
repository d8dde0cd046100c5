package message

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	for _, c := range []struct {
		name, msg string
		fields    []Field
		body      string
		separated bool
	}{
		{"lf", "Subject: hi\nX-Folded: a\n\tb\n\nbody\n", []Field{{"Subject", " hi"}, {"X-Folded", " a\r\n\tb"}}, "body\n", true},
		{"crlf", "Subject: hi\r\nX-Folded: a\r\n b\r\n\r\nbody\r\n", []Field{{"Subject", " hi"}, {"X-Folded", " a\r\n b"}}, "body\r\n", true},
		{"blanks before the colon", "Subject \t: hi\n\n", []Field{{"Subject", " hi"}}, "", true},
		{"no value", "X-Empty:\n\nb", []Field{{"X-Empty", ""}}, "b", true},
		{"no body", "Subject: hi\n", []Field{{"Subject", " hi"}}, "", false},
		{"no empty line", "Subject: hi\r\nnot a field\r\nmore\n", []Field{{"Subject", " hi"}}, "not a field\nmore\n", false},
		{"starts with the body", "\nbody", nil, "body", true},
		{"empty", "", nil, "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			fields, body, separated := Split([]byte(c.msg))
			if !reflect.DeepEqual(fields, c.fields) || string(body) != c.body || separated != c.separated {
				t.Errorf("Split(%q) = %q, %q, %v; want %q, %q, %v", c.msg, fields, body, separated, c.fields, c.body, c.separated)
			}
		})
	}
}

// Split never panics, returns the body as the exact tail of msg, and gives
// fields a milter can take: no colon or line break in a name, and a line
// break in a value only as CRLF before a continuation's white space.
func FuzzSplit(f *testing.F) {
	for _, s := range []string{"Subject: hi\n\nbody", "A: b\r\n c\r\n\r\n", "x\n", ": v\n\n", "\tcont: x\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		fields, body, separated := Split(msg)
		tail := body
		if !separated && body != nil {
			// The line that ended the header lost its CR, if it had one.
			_, tail, _ = bytes.Cut(body, []byte("\n"))
		}
		if !bytes.HasSuffix(msg, tail) {
			t.Fatalf("body %q is not the end of the message", body)
		}
		for _, fl := range fields {
			if strings.ContainsAny(fl.Name, ":\n") || strings.TrimRight(fl.Name, " \t") != fl.Name {
				t.Fatalf("name %q", fl.Name)
			}
			for i := strings.IndexByte(fl.Value, '\n'); i >= 0; i = strings.IndexByte(fl.Value[i+1:], '\n') + i + 1 {
				if i == 0 || fl.Value[i-1] != '\r' || i+1 >= len(fl.Value) || (fl.Value[i+1] != ' ' && fl.Value[i+1] != '\t') {
					t.Fatalf("value %q: a line break that is not a fold", fl.Value)
				}
				if strings.IndexByte(fl.Value[i+1:], '\n') < 0 {
					break
				}
			}
		}
	})
}
