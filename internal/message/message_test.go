package message

import (
	"reflect"
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

// Split never panics and loses no body byte after the empty line.
func FuzzSplit(f *testing.F) {
	for _, s := range []string{"Subject: hi\n\nbody", "A: b\r\n c\r\n\r\n", "x\n", ": v\n\n", "\tcont: x\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		fields, body, separated := Split(msg)
		if separated && len(body) > len(msg) {
			t.Fatalf("body longer than the message")
		}
		for _, fl := range fields {
			if fl.Name != "" && (fl.Name[len(fl.Name)-1] == ' ' || fl.Name[len(fl.Name)-1] == '\t') {
				t.Fatalf("name %q keeps blanks", fl.Name)
			}
		}
	})
}
