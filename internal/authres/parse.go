package authres

import (
	"errors"
	"fmt"
	"strings"
)

// ErrSyntax is wrapped by the Authentication-Results parse errors.
var ErrSyntax = errors.New("authres: Authentication-Results syntax")

// AuthServID returns the authserv-id of an Authentication-Results value
// (RFC 8601 §2.2), unquoted, as written: compare it with strings.EqualFold.
// Only the part up to the first ";" is parsed, so a header whose results
// are malformed still yields its id: the milter uses this to delete
// headers that claim to be ours, whatever follows.
func AuthServID(value string) (string, error) {
	id, _, err := Split(value)
	return id, err
}

// Split returns the authserv-id and the text after the ";" that
// ends it (the version, if any, is skipped). A value with only an id (no
// ";") is an error: RFC 8601 requires "none" or results.
func Split(value string) (id, rest string, err error) {
	i, err := SkipCFWS(value, 0)
	if err != nil {
		return "", "", err
	}
	if i == len(value) {
		return "", "", fmt.Errorf("%w: empty", ErrSyntax)
	}
	if value[i] == '"' {
		id, i, err = QuotedString(value, i)
		if err != nil {
			return "", "", err
		}
	} else {
		start := i
		for i < len(value) && IsTokenChar(value[i]) {
			i++
		}
		id = value[start:i]
	}
	if id == "" {
		return "", "", fmt.Errorf("%w: no authserv-id", ErrSyntax)
	}
	if i, err = SkipCFWS(value, i); err != nil {
		return "", "", err
	}
	if i < len(value) && isDigit(value[i]) { // authres-version
		for i < len(value) && isDigit(value[i]) {
			i++
		}
		if i, err = SkipCFWS(value, i); err != nil {
			return "", "", err
		}
	}
	if i == len(value) || value[i] != ';' {
		return "", "", fmt.Errorf("%w: no ';' after authserv-id", ErrSyntax)
	}
	return id, value[i+1:], nil
}

// IsTokenChar reports RFC 2045 token characters, with '@', '/' and '='
// tolerated because authserv-ids seen in the wild contain them.
func IsTokenChar(c byte) bool {
	if c <= ' ' || c >= 0x7f {
		return false
	}
	switch c {
	case '(', ')', '<', '>', ',', ';', ':', '\\', '"', '[', ']', '?':
		return false
	}
	return true
}

// SkipCFWS skips whitespace, folds and (nested) comments.
func SkipCFWS(s string, i int) (int, error) {
	depth := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			i++
		case c == '(':
			depth++
			i++
		case c == ')' && depth > 0:
			depth--
			i++
		case c == '\\' && depth > 0:
			i += 2
		case depth > 0:
			i++
		default:
			return i, nil
		}
	}
	if depth > 0 {
		return 0, fmt.Errorf("%w: unterminated comment", ErrSyntax)
	}
	return min(i, len(s)), nil
}

// QuotedString reads the quoted-string that starts at s[i] (a '"'),
// returning its content unescaped and the index after its closing quote.
func QuotedString(s string, i int) (string, int, error) {
	var b strings.Builder
	for i++; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
			if i < len(s) {
				b.WriteByte(s[i])
			}
		case '"':
			return b.String(), i + 1, nil
		default:
			b.WriteByte(s[i])
		}
	}
	return "", 0, fmt.Errorf("%w: unterminated quoted string", ErrSyntax)
}

// SplitResults splits the results part of an Authentication-Results value
// at the ";" that are outside comments and quoted strings, trims each
// result, and drops empty ones and "none" (RFC 8601 no-result).
func SplitResults(rest string) ([]string, error) {
	var out []string
	depth, quoted, start := 0, false, 0
	add := func(r string) {
		r = strings.Trim(r, " \t\r\n")
		if r != "" && !strings.EqualFold(r, "none") {
			out = append(out, r)
		}
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		switch {
		case c == '\\' && (quoted || depth > 0):
			i++
		case quoted:
			if c == '"' {
				quoted = false
			}
		case c == '"':
			quoted = true
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == ';' && depth == 0:
			add(rest[start:i])
			start = i + 1
		}
	}
	if quoted || depth > 0 {
		return nil, fmt.Errorf("%w: unterminated comment or quoted string", ErrSyntax)
	}
	add(rest[start:])
	return out, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
