// Package authres reads and writes Authentication-Results header fields
// (RFC 8601). Every method of the daemon (auth, iprev, spf, dkim, dmarc,
// arc) hands its results to the milter as Result values; the milter writes
// the one header field of the authserv-id with Format, and ARC seals the
// same text as its ARC-Authentication-Results.
//
// Why not github.com/emersion/go-msgauth/authres: its Format knows a fixed
// set of methods with fixed properties (no header.oldest-pass for arc, no
// policy.dmarc, no reason= on every method) and its Parse refuses the
// comments and unknown methods other implementations write; the reader here
// only needs the authserv-id and the results split apart, which is what ARC
// and the DMARC override read.
package authres

import (
	"net/netip"
	"slices"
	"strings"
)

// Result is one method's result (RFC 8601 §2.2 resinfo).
type Result struct {
	Method  string // auth, iprev, spf, dkim, dmarc, arc
	Result  string // pass, fail, none, ...
	Comment string // a comment after the result, plain text
	Reason  string // reason="..."
	Props   []Prop
}

// Prop is a ptype.property=value of a result: smtp.mailfrom=a@example.org.
type Prop struct {
	Type, Property, Value string
}

// methodOrder is the order of the methods in the header: what the client
// is, then the envelope, then the message, then the chain.
var methodOrder = map[string]int{"auth": 1, "iprev": 2, "spf": 3, "dkim": 4, "dmarc": 5, "arc": 6}

// Sort orders results by method (auth, iprev, spf, dkim, dmarc, arc, then
// any other), keeping the order of one method's results.
func Sort(rs []Result) []Result {
	rank := func(m string) int {
		if r, ok := methodOrder[m]; ok {
			return r
		}
		return len(methodOrder) + 1
	}
	out := slices.Clone(rs)
	slices.SortStableFunc(out, func(a, b Result) int { return rank(a.Method) - rank(b.Method) })
	return out
}

// Format returns the value of an Authentication-Results header field
// without the leading space: the authserv-id, then each result on a line of
// its own (folded with CRLF TAB, as Exim writes it), or "none" when there is
// none. The results are written in the order given (see Sort).
func Format(authServID string, rs []Result) string {
	var b strings.Builder
	b.WriteString(authServID)
	if len(rs) == 0 {
		b.WriteString("; none")
		return b.String()
	}
	for _, r := range rs {
		b.WriteString(";\r\n\t")
		b.WriteString(FormatResult(r))
	}
	return b.String()
}

// FormatResult writes one resinfo: "spf=pass (comment) smtp.mailfrom=a@b".
func FormatResult(r Result) string {
	var b strings.Builder
	b.WriteString(r.Method + "=" + r.Result)
	if r.Comment != "" {
		b.WriteString(" (" + CommentSafe(r.Comment) + ")")
	}
	if r.Reason != "" {
		b.WriteString(" reason=" + Quote(r.Reason))
	}
	for _, p := range r.Props {
		if p.Value == "" {
			continue
		}
		b.WriteString(" " + p.Type + "." + p.Property + "=" + pvalue(p.Value))
	}
	return b.String()
}

// pvalue writes a property value as RFC 8601 §2.2 allows: a token, an
// addr-spec as it is when its local part is a dot-atom, otherwise a
// quoted-string.
func pvalue(v string) string {
	if local, domain, ok := strings.Cut(v, "@"); ok {
		if (local == "" || IsDotAtom(local)) && IsDotAtom(domain) {
			return v
		}
		return Quote(v)
	}
	if _, err := netip.ParseAddr(v); err == nil {
		return v // smtp.remote-ip=2001:db8::1, as every implementation writes it
	}
	for i := 0; i < len(v); i++ {
		if !IsTokenChar(v[i]) || v[i] == '@' || v[i] == '=' {
			return Quote(v)
		}
	}
	return v
}

// IsDotAtom reports whether s is an RFC 5322 dot-atom, which a header
// field may carry unquoted.
func IsDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>[]:;@\,"`, c) >= 0 {
			return false
		}
	}
	return true
}

// Quote writes s as an RFC 5322 quoted-string on one line: control
// characters become spaces, and it stops at 300 bytes.
func Quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s) && b.Len() < 300; i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c == 0x7f:
			b.WriteByte(' ')
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// CommentSafe makes s fit in an RFC 5322 comment on one line, at most 200
// bytes.
func CommentSafe(s string) string { return CommentSafeN(s, 200) }

// CommentSafeN is CommentSafe for a comment of up to about n bytes (an
// escape may take it one byte over): it escapes what would end or nest the
// comment and turns control characters into spaces.
func CommentSafeN(s string, n int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < n; i++ {
		switch c := s[i]; {
		case c == '(' || c == ')' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c == 0x7f:
			b.WriteByte(' ')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
