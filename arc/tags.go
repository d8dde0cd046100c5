package arc

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// tag is one tag=value pair of an RFC 6376 §3.2 tag-list.
type tag struct {
	name  string
	value string // surrounding FWS removed, inner FWS kept
	// raw[rawStart:rawEnd] is everything between '=' and the ';' (or the
	// end), surrounding whitespace included: deleting it is how b= is
	// "treated as the empty string" (RFC 6376 §3.7, "including all
	// surrounding whitespace").
	rawStart, rawEnd int
}

type tagList []tag

func (l tagList) get(name string) (string, bool) {
	for i := range l {
		if l[i].name == name {
			return l[i].value, true
		}
	}
	return "", false
}

func (l tagList) find(name string) *tag {
	for i := range l {
		if l[i].name == name {
			return &l[i]
		}
	}
	return nil
}

var errTagSyntax = errors.New("tag-list syntax")

// parseTagList parses s strictly: tag names are ALPHA *(ALPHA/DIGIT/"_"),
// values are VALCHARs separated by FWS, a tag may appear only once, an
// empty tag-spec (";;") is an error, a trailing ";" is allowed. Bytes of
// 0x80 and above are accepted in values (RFC 8616 allows UTF-8 there).
func parseTagList(s string) (tagList, error) {
	var l tagList
	i := 0
	for {
		i = skipFWS(s, i)
		if i < 0 {
			return nil, fmt.Errorf("%w: bad line break", errTagSyntax)
		}
		if i == len(s) {
			return l, nil
		}
		start := i
		if !isAlpha(s[i]) {
			return nil, fmt.Errorf("%w: bad tag name at offset %d", errTagSyntax, i)
		}
		for i < len(s) && (isAlpha(s[i]) || isDigit(s[i]) || s[i] == '_') {
			i++
		}
		name := s[start:i]
		i = skipFWS(s, i)
		if i < 0 {
			return nil, fmt.Errorf("%w: bad line break", errTagSyntax)
		}
		if i == len(s) || s[i] != '=' {
			return nil, fmt.Errorf("%w: no '=' after tag %q", errTagSyntax, name)
		}
		i++
		rawStart := i
		end := strings.IndexByte(s[i:], ';')
		if end < 0 {
			end = len(s)
		} else {
			end += i
		}
		val, err := trimValue(s[i:end])
		if err != nil {
			return nil, fmt.Errorf("%w: tag %q: %v", errTagSyntax, name, err)
		}
		if l.find(name) != nil {
			return nil, fmt.Errorf("%w: duplicate tag %q", errTagSyntax, name)
		}
		l = append(l, tag{name: name, value: val, rawStart: rawStart, rawEnd: end})
		i = end
		if i < len(s) {
			i++ // the ';'
		}
	}
}

// skipFWS returns the index after any WSP and CRLF-WSP folds starting at i,
// or -1 if a CR or LF appears that is not part of a fold.
func skipFWS(s string, i int) int {
	for i < len(s) {
		switch s[i] {
		case ' ', '\t':
			i++
		case '\r':
			if i+2 < len(s) && s[i+1] == '\n' && (s[i+2] == ' ' || s[i+2] == '\t') {
				i += 3
				continue
			}
			return -1
		case '\n':
			return -1
		default:
			return i
		}
	}
	return i
}

// trimValue checks that v is [FWS] tval *(FWS tval) [FWS] and returns it
// without the surrounding FWS.
func trimValue(v string) (string, error) {
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == ' ' || c == '\t':
		case c == '\r':
			if i+2 < len(v) && v[i+1] == '\n' && (v[i+2] == ' ' || v[i+2] == '\t') {
				i += 2
				continue
			}
			return "", errors.New("bad line break")
		case c < 0x21 || c == 0x7f:
			return "", fmt.Errorf("bad character 0x%02x", c)
		}
	}
	return strings.Trim(v, " \t\r\n"), nil
}

func isAlpha(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// stripFWS removes all whitespace, for values whose grammar allows FWS
// anywhere (b=, bh=, h=).
func stripFWS(v string) string {
	if !strings.ContainsAny(v, " \t\r\n") {
		return v
	}
	var b strings.Builder
	b.Grow(len(v))
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case ' ', '\t', '\r', '\n':
		default:
			b.WriteByte(v[i])
		}
	}
	return b.String()
}

// decodeB64 decodes a base64 tag value (FWS allowed anywhere, padding
// required as in RFC 6376's base64string).
func decodeB64(v string) ([]byte, error) {
	v = stripFWS(v)
	if v == "" {
		return nil, errors.New("empty")
	}
	return base64.StdEncoding.Strict().DecodeString(v)
}

// parseUint parses a DIGIT-only value of at most maxDigits digits.
func parseUint(v string, maxDigits int) (int64, bool) {
	if v == "" || len(v) > maxDigits {
		return 0, false
	}
	for i := 0; i < len(v); i++ {
		if !isDigit(v[i]) {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}

// parseInstance parses an ARC i= value: 1*DIGIT without leading zeros.
// Values above 50 are returned as they are (the chain then fails on its
// size) but capped so that an attacker's i=99999999 cannot make anyone
// allocate for it.
func parseInstance(v string) (int, bool) {
	n, ok := parseUint(v, 9)
	if !ok || n < 1 || v[0] == '0' {
		return 0, false
	}
	return int(n), true
}

// validDomain reports whether d is an RFC 6376 domain-name (LDH labels;
// underscore tolerated because DNS allows it and selectors use it).
func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !isAlpha(c) && !isDigit(c) && c != '-' && c != '_' {
				return false
			}
		}
	}
	return true
}

// parseHList splits an h= value into lower-cased field names. Empty
// elements ("from::to") are skipped: the ValiMail suite's
// ams_fields_h_mis_hdr expects them tolerated, and they select nothing.
func parseHList(v string) ([]string, error) {
	var out []string
	for _, n := range strings.Split(stripFWS(v), ":") {
		if n == "" {
			continue
		}
		for i := 0; i < len(n); i++ {
			// RFC 5322 ftext: printable US-ASCII except ':'
			if n[i] < 33 || n[i] > 126 {
				return nil, fmt.Errorf("bad header name %q", n)
			}
		}
		out = append(out, strings.ToLower(n))
	}
	if len(out) == 0 {
		return nil, errors.New("h= names no header")
	}
	return out, nil
}
