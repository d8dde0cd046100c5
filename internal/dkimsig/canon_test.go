package dkimsig

import (
	"bytes"
	"crypto/sha256"
	"math/rand"
	"regexp"
	"strings"
	"testing"
)

// Reference canonicalizations written the way dkimpy writes them (regular
// expressions over the whole body), to check the streaming ones against.
var (
	reTrailWSP = regexp.MustCompile("[\t ]+\r\n")
	reWSP      = regexp.MustCompile("[\t ]+")
)

func refStripTrailingLines(b []byte) []byte {
	if !bytes.HasSuffix(b, []byte("\r\n")) {
		return append(append([]byte{}, b...), '\r', '\n')
	}
	for bytes.HasSuffix(b, []byte("\r\n\r\n")) {
		b = b[:len(b)-2]
	}
	return b
}

func refBody(body []byte, relaxed bool) []byte {
	if !relaxed {
		return refStripTrailingLines(body)
	}
	b := reTrailWSP.ReplaceAll(body, []byte("\r\n"))
	b = reWSP.ReplaceAll(b, []byte(" "))
	b = refStripTrailingLines(b)
	if bytes.Equal(b, []byte("\r\n")) {
		return nil
	}
	return b
}

// streamBody canonicalizes body fed in the given chunk sizes and returns
// the canonical bytes (captured through a recording hash).
func streamBody(body []byte, relaxed bool, chunks []int) []byte {
	rec := &recorder{}
	c := &BodyCanon{Relaxed: relaxed, Sinks: []*BodyHash{{Hash: rec, Limit: -1}}}
	for len(body) > 0 {
		n := len(body)
		if len(chunks) > 0 {
			n = min(chunks[0], n)
			chunks = chunks[1:]
		}
		c.Write(body[:n])
		body = body[n:]
	}
	c.Close()
	return rec.Bytes()
}

type recorder struct{ bytes.Buffer }

func (r *recorder) Sum(b []byte) []byte { return append(b, r.Bytes()...) }
func (r *recorder) BlockSize() int      { return 1 }
func (r *recorder) Size() int           { return 0 }

func TestBodyCanonTable(t *testing.T) {
	cases := []struct {
		in              string
		simple, relaxed string
	}{
		{"", "\r\n", ""},
		{"\r\n", "\r\n", ""},
		{"\r\n\r\n\r\n", "\r\n", ""},
		{"abc", "abc\r\n", "abc\r\n"},
		{"abc\r\n", "abc\r\n", "abc\r\n"},
		{"abc\r\n\r\n\r\n", "abc\r\n", "abc\r\n"},
		{" a  b\t\tc \r\n", " a  b\t\tc \r\n", " a b c\r\n"},
		{"a\r\n \t \r\n", "a\r\n \t \r\n", "a\r\n"},
		{"a\r\n\t\r\nb", "a\r\n\t\r\nb\r\n", "a\r\n\r\nb\r\n"},
		{"   \r\n", "   \r\n", ""},
		{"a\rb\nc", "a\rb\nc\r\n", "a\rb\nc\r\n"},
		{"a \r", "a \r\r\n", "a \r\r\n"},
		// WSP on a last line without CRLF stays, as dkimpy keeps it
		{"  ", "  \r\n", " \r\n"},
		{"a\r\n \t", "a\r\n \t\r\n", "a\r\n \r\n"},
		{"\r\n\r\nx\r\n", "\r\n\r\nx\r\n", "\r\n\r\nx\r\n"},
	}
	for _, c := range cases {
		for size := 1; size <= len(c.in)+1; size++ {
			chunks := make([]int, len(c.in)+1)
			for i := range chunks {
				chunks[i] = size
			}
			if got := string(streamBody([]byte(c.in), false, chunks)); got != c.simple {
				t.Errorf("simple %q chunk %d = %q, want %q", c.in, size, got, c.simple)
			}
			if got := string(streamBody([]byte(c.in), true, chunks)); got != c.relaxed {
				t.Errorf("relaxed %q chunk %d = %q, want %q", c.in, size, got, c.relaxed)
			}
		}
	}
}

func TestBodyCanonRandom(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	alphabet := []byte("ab \t\r\n\r\n\r\n  x")
	for n := 0; n < 2500; n++ {
		// long enough for the eight-bytes-at-a-time scanner, and heavy
		// in the bytes it must stop at
		body := make([]byte, rng.Intn(60+n/4))
		for i := range body {
			body[i] = alphabet[rng.Intn(len(alphabet))]
		}
		var chunks []int
		for i := 0; i < 20; i++ {
			chunks = append(chunks, 1+rng.Intn(7+n/20))
		}
		checkBodyCanon(t, body, chunks)
	}
}

func checkBodyCanon(t *testing.T, body []byte, chunks []int) {
	t.Helper()
	for _, relaxed := range []bool{false, true} {
		want := refBody(body, relaxed)
		got := streamBody(body, relaxed, chunks)
		if !bytes.Equal(got, want) {
			t.Fatalf("relaxed=%v %q chunks %v:\n got %q\nwant %q", relaxed, body, chunks, got, want)
		}
	}
}

func FuzzBodyCanon(f *testing.F) {
	f.Add([]byte("Hey  gang,\r\n\tThis is  a test.\r\n\r\n"), uint8(3))
	f.Add([]byte("a \r"), uint8(1))
	f.Add([]byte("\r\n \r\n"), uint8(2))
	f.Fuzz(func(t *testing.T, body []byte, chunk uint8) {
		var chunks []int
		for i := 0; i <= len(body); i++ {
			chunks = append(chunks, 1+int(chunk)%(i%5+1))
		}
		checkBodyCanon(t, body, chunks)
	})
}

func TestBodyHashLimit(t *testing.T) {
	bh := &BodyHash{Hash: sha256.New(), Limit: 5}
	c := &BodyCanon{Relaxed: true, Sinks: []*BodyHash{bh}}
	c.Write([]byte("hello  world\r\n"))
	c.Close()
	want := sha256.Sum256([]byte("hello"))
	if !bytes.Equal(bh.Sum, want[:]) || bh.N != int64(len("hello world\r\n")) {
		t.Fatalf("limited hash wrong: n=%d", bh.N)
	}
}

func TestRelaxedHeader(t *testing.T) {
	cases := []struct{ name, value, want string }{
		{"Subject", " Hello   world  ", "subject:Hello world"},
		{"SUBJECT \t", "\tHello\r\n\tworld\r\n ", "subject:Hello world"},
		{"X", "", "x:"},
		{"X", " a\r\n b", "x:a b"},
		{"X", "a\rb", "x:a\rb"},
	}
	for _, c := range cases {
		if got := string(AppendRelaxedHeader(nil, c.name, c.value)); got != c.want {
			t.Errorf("relaxed(%q, %q) = %q, want %q", c.name, c.value, got, c.want)
		}
	}
	if got := string(AppendHeader(nil, Simple, "Subject", " a  b")); got != "Subject: a  b\r\n" {
		t.Errorf("simple = %q", got)
	}
}

func FuzzHeaderCanon(f *testing.F) {
	for _, s := range []string{" Hello   world  ", "\tHello\r\n\tworld\r\n ", "a\rb\nc", "", "\r\n \r\n"} {
		f.Add("Subject", s)
	}
	f.Fuzz(func(t *testing.T, name, value string) {
		// as Verifier.Header stores it: a bare LF is a line end
		value = FixLF(value)
		out := AppendRelaxedHeader(nil, name, value)
		n, v, ok := bytes.Cut(out, []byte(":"))
		if !ok && !strings.Contains(name, ":") {
			t.Fatalf("no colon in %q", out)
		}
		if strings.Contains(name, ":") {
			return
		}
		if bytes.ContainsAny(v, "\t") || bytes.Contains(v, []byte("  ")) ||
			bytes.HasPrefix(v, []byte(" ")) || bytes.HasSuffix(v, []byte(" ")) || bytes.Contains(v, []byte("\r\n")) {
			t.Fatalf("relaxed value %q", v)
		}
		if bytes.ContainsAny(n, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
			t.Fatalf("name %q", n)
		}
		// canonicalizing twice changes nothing
		again := AppendRelaxedHeader(nil, string(n), " "+string(v))
		if !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q -> %q", out, again)
		}
		simple := AppendHeader(nil, Simple, name, value)
		if string(simple) != name+":"+value+"\r\n" {
			t.Fatalf("simple %q", simple)
		}
	})
}
