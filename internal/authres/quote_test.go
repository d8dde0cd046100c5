package authres

import (
	"errors"
	"strings"
	"testing"
)

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":                    `""`,
		"user@example.org":    `"user@example.org"`,
		`say "hi" \ bye`:      `"say \"hi\" \\ bye"`,
		"line\r\nnext\x7fend": `"line  next end"`,
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
	// a client's long string is cut, not carried whole into a header
	if got := Quote(strings.Repeat("a", 1000)); len(got) != 301 || !strings.HasPrefix(got, `"aaa`) || !strings.HasSuffix(got, `a"`) {
		t.Errorf("Quote of 1000 bytes: %d bytes", len(got))
	}
}

func TestIsDotAtom(t *testing.T) {
	for in, want := range map[string]bool{
		"mx.example.org": true, "a+b=c": true, "x": true,
		"": false, ".a": false, "a.": false, "a..b": false, "a b": false,
		"a@b": false, "[1.2.3.4]": false, `a"b`: false, "a\x7f": false, "é": false,
	} {
		if got := IsDotAtom(in); got != want {
			t.Errorf("IsDotAtom(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestQuotedString(t *testing.T) {
	s := `x="a \"b\" \\c" rest`
	v, next, err := QuotedString(s, 2)
	if err != nil || v != `a "b" \c` || s[next:] != " rest" {
		t.Errorf("QuotedString(%q, 2) = %q, %d, %v", s, v, next, err)
	}
	for _, bad := range []string{`"open`, `"ends in escape\`} {
		if _, _, err := QuotedString(bad, 0); !errors.Is(err, ErrSyntax) {
			t.Errorf("QuotedString(%q): %v, want ErrSyntax", bad, err)
		}
	}
}

func TestCommentSafeN(t *testing.T) {
	if got, want := CommentSafeN("a (b) \\c\r\nd", 100), `a \(b\) \\c  d`; got != want {
		t.Errorf("CommentSafeN = %q, want %q", got, want)
	}
	long := strings.Repeat("x", 1000)
	if n := len(CommentSafeN(long, 400)); n != 400 {
		t.Errorf("CommentSafeN(1000 bytes, 400): %d bytes", n)
	}
	if n := len(CommentSafe(long)); n != 200 {
		t.Errorf("CommentSafe(1000 bytes): %d bytes", n)
	}
}
