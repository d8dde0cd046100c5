package dcc

import (
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"
)

func TestParseReply(t *testing.T) {
	long := "X-DCC-EXAMPLE-Metrics: mx.example.org 1085; bulk Body=many Fuz1=many\n\tFuz2=many rep=99%\n"
	cases := []struct {
		name   string
		in     string
		n      int
		want   string // "O RCPTS|header"
		kind   error
		detail string
	}{
		{name: "accept with header", in: "A\nAA\nX-DCC-x-Metrics: h 1; Body=1\n\n", n: 2, want: "A AA|X-DCC-x-Metrics: h 1; Body=1"},
		{name: "no header option", in: "A\nA\n", n: 1, want: "A A|"},
		{name: "header option, no header", in: "G\nG\n\n", n: 1, want: "G G|"},
		{name: "folded", in: "R\nR\n" + long + "\n", n: 1, want: "R R|X-DCC-EXAMPLE-Metrics: mx.example.org 1085; bulk Body=many Fuz1=many Fuz2=many rep=99%"},
		{name: "CRLF tolerated", in: "A\r\nA\r\nX-DCC-x: h\r\n\t1\r\n\r\n", n: 1, want: "A A|X-DCC-x: h 1"},
		{name: "white space runs", in: "A\nA\nX-DCC-x:   h \t 1  \n  \t2\n\n", n: 1, want: "A A|X-DCC-x: h 1 2"},
		{name: "T without letters", in: "T\n\n\n", n: 3, want: "T |"},
		{name: "T with letters", in: "T\nAAR\n", n: 3, want: "T AAR|"},
		{name: "S", in: "S\nAR\n", n: 2, want: "S AR|"},
		{name: "zero recipients", in: "A\n\n\n", n: 0, want: "A |"},
		{name: "unreachable DCC server", in: "A\nA\nX-DCC--Metrics: mx 0; Body=0\n\n", n: 1, want: "A A|X-DCC--Metrics: mx 0; Body=0"},
		{name: "lower-case name", in: "A\nA\nx-dcc-brand-metrics: h 1\n\n", n: 1, want: "A A|x-dcc-brand-metrics: h 1"},

		{name: "empty", in: "", n: 1, kind: ErrClosed, detail: "without a reply"},
		{name: "letter only", in: "A", n: 1, kind: ErrClosed, detail: "cut short"},
		{name: "no recipient line", in: "A\n", n: 1, kind: ErrClosed},
		{name: "recipient line cut", in: "A\nA", n: 1, kind: ErrClosed},
		{name: "header cut", in: "A\nA\nX-DCC-x: h", n: 1, kind: ErrClosed},
		{name: "no empty line after header", in: "A\nA\nX-DCC-x: h\n", n: 1, kind: ErrClosed},
		{name: "lower-case letter", in: "a\na\n", n: 1, kind: ErrGarbage},
		{name: "unknown letter", in: "Q\nA\n", n: 1, kind: ErrGarbage},
		{name: "empty result", in: "\nA\n", n: 1, kind: ErrGarbage},
		{name: "two letters", in: "AA\nA\n", n: 1, kind: ErrGarbage},
		{name: "count", in: "A\nAA\n", n: 1, kind: ErrGarbage},
		{name: "A without letters", in: "A\n\n\n", n: 1, kind: ErrGarbage},
		{name: "T recipient letter", in: "T\nT\n", n: 1, kind: ErrGarbage},
		{name: "continuation first", in: "A\nA\n\tX-DCC-x: h\n\n", n: 1, kind: ErrGarbage},
		{name: "not X-DCC", in: "A\nA\nSubject: hi\n\n", n: 1, kind: ErrGarbage},
		{name: "X-DCC without dash", in: "A\nA\nX-DCCx: hi\n\n", n: 1, kind: ErrGarbage},
		{name: "no colon", in: "A\nA\nX-DCC-x h\n\n", n: 1, kind: ErrGarbage},
		{name: "space in name", in: "A\nA\nX-DCC-x y: h\n\n", n: 1, kind: ErrGarbage},
		{name: "8-bit", in: "A\nA\nX-DCC-x: h\xe9\n\n", n: 1, kind: ErrGarbage},
		{name: "trailing data", in: "A\nA\n\nX", n: 1, kind: ErrGarbage},
		{name: "second header", in: "A\nA\nX-DCC-x: h\nX-DCC-y: h\n\n", n: 1, kind: ErrGarbage},
		{name: "header 241 bytes", in: "A\nA\nX-DCC-x:" + strings.Repeat(" y", 116) + "\n\n", n: 1, kind: ErrTooBig},
		{name: "folded header 250 bytes", in: "A\nA\nX-DCC-x:" + strings.Repeat(" y", 60) + "\n\t" + strings.Repeat(" y", 60) + "\n\n", n: 1, kind: ErrTooBig},
		{name: "endless line", in: "A\nA\nX-DCC-x: " + strings.Repeat("y", 10000), n: 1, kind: ErrTooBig},
		{name: "endless result line", in: strings.Repeat("A", 10000), n: 1, kind: ErrTooBig},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := ParseReply(strings.NewReader(c.in), c.n)
			if c.kind != nil {
				if !errors.Is(err, c.kind) || !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), c.detail) {
					t.Fatalf("ParseReply(%q) = %+v, %v; want %v", c.in, res, err, c.kind)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseReply(%q): %v", c.in, err)
			}
			if got := res.String() + "|" + res.Header; got != c.want {
				t.Fatalf("ParseReply(%q) = %q, want %q", c.in, got, c.want)
			}
			if res.Verdict != VerdictOf(res.Overall) {
				t.Fatalf("verdict %s for %c", res.Verdict, res.Overall)
			}
		})
	}
}

// The largest header dccifd writes (240 bytes with its folds and final
// newline) passes.
func TestParseReplyMaxHeader(t *testing.T) {
	h := "X-DCC-x:" + strings.Repeat(" y", 60) + "\n\t" + strings.Repeat("z", 240-8-120-2-1) + "\n"
	if len(h) != MaxHeaderLen {
		t.Fatalf("test header is %d bytes", len(h))
	}
	if _, err := ParseReply(strings.NewReader("A\nA\n"+h+"\n"), 1); err != nil {
		t.Fatal(err)
	}
}

// Read errors keep their kind: a deadline is a timeout.
func TestParseReplyReadErrors(t *testing.T) {
	_, err := ParseReply(iotest.ErrReader(os.ErrDeadlineExceeded), 1)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
	_, err = ParseReply(io.MultiReader(strings.NewReader("A\n"), iotest.ErrReader(errors.New("boom"))), 1)
	if !errors.Is(err, ErrIO) || Kind(err) != "io" {
		t.Fatalf("boom: %v", err)
	}
	// One byte at a time is fine.
	res, err := ParseReply(iotest.OneByteReader(strings.NewReader("A\nA\nX-DCC-x: h\n\t1\n\n")), 1)
	if err != nil || res.Header != "X-DCC-x: h 1" {
		t.Fatalf("%+v, %v", res, err)
	}
	if _, err := ParseReply(strings.NewReader(""), -1); !errors.Is(err, ErrRequest) {
		t.Fatalf("negative count: %v", err)
	}
}

func TestFoldHeader(t *testing.T) {
	cases := []struct {
		name, value string
		width       int
		want        string
	}{
		{"X-DCC-x-Metrics", "h 1; Body=1", 0, "h 1; Body=1"},
		{"X-DCC-x-Metrics", "  h \t 1;\r\n\tBody=1  ", 0, "h 1; Body=1"},
		// dccifd never folds inside "host id;", and folds before a word
		// that passes column 78, restarting at the word's length plus 9.
		{"X", "h 1; aaaa bbbb cccc", 14, "h 1; aaaa\n\tbbbb\n\tcccc"},
		{"X", "h 1; " + strings.Repeat("w", 100) + " x", 78, "h 1;\n\t" + strings.Repeat("w", 100) + "\n\tx"},
		{"X", strings.Repeat("w", 100) + " x", 78, strings.Repeat("w", 100) + " x"},
		{"X-DCC--Metrics", strings.Repeat("h", 70) + "; whitelist", 78, strings.Repeat("h", 70) + "; whitelist"},
		{"X-DCC-b-Metrics", "h 1; bulk rep Body=many", 29, "h 1;\n\tbulk rep Body=many"},
		// 62 columns on the line after a fold: 8 + 61 + 1 space + 8 = 78 would
		// fit, but dccifd counts one column more and folds.
		{"X", "h 1; " + strings.Repeat("a", 75) + " " + strings.Repeat("b", 61) + " " + strings.Repeat("c", 8), 78,
			"h 1;\n\t" + strings.Repeat("a", 75) + "\n\t" + strings.Repeat("b", 61) + "\n\t" + strings.Repeat("c", 8)},
		{"X", "", 78, ""},
	}
	for _, c := range cases {
		if got := FoldHeader(c.name, c.value, c.width); got != c.want {
			t.Errorf("FoldHeader(%q, %q, %d) = %q, want %q", c.name, c.value, c.width, got, c.want)
		}
	}
}

func TestKind(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{errors.New("other"), "error"},
		{ErrDial, "dial"}, {ErrTimeout, "timeout"}, {ErrClosed, "closed"}, {ErrGarbage, "garbage"},
		{ErrTooBig, "too_big"}, {ErrIO, "io"}, {ErrConfig, "config"}, {ErrRequest, "bad_request"},
		{ErrCanceled, "canceled"},
		{newErr(ErrTimeout, "read reply", "", os.ErrDeadlineExceeded), "timeout"},
	} {
		if got := Kind(c.err); got != c.want {
			t.Errorf("Kind(%v) = %q, want %q", c.err, got, c.want)
		}
	}
	for _, e := range []*Error{ErrDial, ErrTimeout, ErrClosed, ErrGarbage, ErrTooBig, ErrIO} {
		if !errors.Is(e, ErrUnavailable) || e.Kind() == "" {
			t.Errorf("%v does not match ErrUnavailable", e)
		}
	}
	for _, e := range []*Error{ErrConfig, ErrRequest, ErrCanceled} {
		if errors.Is(e, ErrUnavailable) {
			t.Errorf("%v matches ErrUnavailable", e)
		}
	}
	err := newErr(ErrGarbage, "read reply", "bad result line", nil)
	if err.Error() != "dcc: read reply: bad result line" {
		t.Errorf("message %q", err)
	}
}
