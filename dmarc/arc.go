package dmarc

import (
	"errors"
	"strconv"
	"strings"

	msgauth "github.com/emersion/go-msgauth/dmarc"

	"github.com/tollgate/tollgate/internal/authres"
)

// ARCField is an ARC-Seal or ARC-Authentication-Results header field of the
// message as it arrived (the value after the colon).
type ARCField struct {
	Name, Value string
}

// maxARCFields caps what the module keeps: RFC 8617 allows 50 sets, and a
// chain longer than that fails anyway.
const maxARCFields = 2 * 50

// arcOverride applies local policy (RFC 7489 §7, RFC 8617 §7.2.1): when the
// ARC chain validated and a trusted sealer's ARC-Authentication-Results say
// the message passed DMARC, or had aligned SPF or DKIM, at its hop, it
// returns that sealer (its ARC-Seal d=) and what it saw. The newest trusted
// hop that vouches wins.
func arcOverride(in Input, domain string, rec *msgauth.Record) (sealer, saw string) {
	if in.TrustedSealer == nil || !arcPassed(in.AuthResults) {
		return "", ""
	}
	seals := map[int]string{}
	aars := map[int]string{}
	dup := map[int]bool{}
	top := 0
	for _, f := range in.ARC {
		switch strings.ToLower(f.Name) {
		case "arc-seal":
			i, d, err := ParseSealTags(f.Value)
			if err != nil {
				continue
			}
			if _, seen := seals[i]; seen {
				dup[i] = true
			}
			seals[i] = d
			top = max(top, i)
		case "arc-authentication-results":
			i, rest, err := SplitAAR(f.Value)
			if err != nil {
				continue
			}
			if _, seen := aars[i]; seen {
				dup[i] = true
			}
			aars[i] = rest
		}
	}
	for i := top; i >= 1; i-- {
		d, ok := seals[i]
		if !ok || dup[i] || !in.TrustedSealer(d) {
			continue
		}
		if saw := vouches(aars[i], domain, rec); saw != "" {
			return d, saw
		}
	}
	return "", ""
}

func arcPassed(rs []authres.Result) bool {
	for _, r := range rs {
		if strings.EqualFold(r.Method, "arc") && strings.EqualFold(r.Result, "pass") {
			return true
		}
	}
	return false
}

// vouches reads one hop's ARC-Authentication-Results (the part after i=)
// and says which of its results counts as DMARC for the From domain: a
// dmarc=pass for it, or an spf=pass or dkim=pass aligned with it under the
// record's alignment modes.
func vouches(aar, domain string, rec *msgauth.Record) string {
	if aar == "" {
		return ""
	}
	_, rest, err := authres.Split(aar)
	if err != nil {
		return ""
	}
	results, err := authres.SplitResults(rest)
	if err != nil {
		return ""
	}
	for _, s := range results {
		r, err := ParseResult(s)
		if err != nil || !strings.EqualFold(r.Result, "pass") {
			continue
		}
		switch strings.ToLower(r.Method) {
		case "dmarc":
			if from := prop(r, "header", "from"); strings.EqualFold(addrDomain(from), domain) {
				return "dmarc=pass"
			}
		case "spf":
			if mf := prop(r, "smtp", "mailfrom"); Aligned(domain, addrDomain(mf), rec.SPFAlignment) {
				return "spf=pass smtp.mailfrom=" + addrDomain(mf)
			}
		case "dkim":
			if d := prop(r, "header", "d"); Aligned(domain, d, rec.DKIMAlignment) {
				return "dkim=pass header.d=" + strings.ToLower(d)
			}
		}
	}
	return ""
}

var errARCSyntax = errors.New("dmarc: ARC header syntax")

// ParseSealTags reads the instance (i=) and the sealing domain (d=) of an
// ARC-Seal value; the signature itself is the arc feature's business.
func ParseSealTags(value string) (instance int, domain string, err error) {
	seen := map[string]bool{}
	for _, spec := range strings.Split(value, ";") {
		name, v, ok := strings.Cut(spec, "=")
		name = strings.Trim(name, " \t\r\n")
		if !ok {
			if name == "" {
				continue
			}
			return 0, "", errARCSyntax
		}
		if seen[name] {
			return 0, "", errARCSyntax
		}
		seen[name] = true
		v = strings.Join(strings.Fields(v), "")
		switch name {
		case "i":
			instance, err = parseInstance(v)
			if err != nil {
				return 0, "", err
			}
		case "d":
			domain = strings.ToLower(strings.TrimSuffix(v, "."))
		}
	}
	if instance == 0 || domain == "" {
		return 0, "", errARCSyntax
	}
	return instance, domain, nil
}

// SplitAAR splits an ARC-Authentication-Results value into its instance and
// the Authentication-Results payload after "i=N;".
func SplitAAR(value string) (instance int, rest string, err error) {
	i, err := authres.SkipCFWS(value, 0)
	if err != nil {
		return 0, "", err
	}
	if !strings.HasPrefix(value[i:], "i") {
		return 0, "", errARCSyntax
	}
	if i, err = authres.SkipCFWS(value, i+1); err != nil {
		return 0, "", err
	}
	if i >= len(value) || value[i] != '=' {
		return 0, "", errARCSyntax
	}
	if i, err = authres.SkipCFWS(value, i+1); err != nil {
		return 0, "", err
	}
	start := i
	for i < len(value) && value[i] >= '0' && value[i] <= '9' {
		i++
	}
	instance, err = parseInstance(value[start:i])
	if err != nil {
		return 0, "", err
	}
	if i, err = authres.SkipCFWS(value, i); err != nil {
		return 0, "", err
	}
	if i >= len(value) || value[i] != ';' {
		return 0, "", errARCSyntax
	}
	return instance, value[i+1:], nil
}

func parseInstance(v string) (int, error) {
	if len(v) == 0 || len(v) > 2 {
		return 0, errARCSyntax
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 50 {
		return 0, errARCSyntax
	}
	return n, nil
}

// ParseResult reads one resinfo of an Authentication-Results field (RFC
// 8601 §2.2) as authres.SplitResults returns it: method=result, comments
// skipped, reason= and ptype.property=value pairs.
func ParseResult(s string) (authres.Result, error) {
	var r authres.Result
	i, err := authres.SkipCFWS(s, 0)
	if err != nil {
		return r, err
	}
	method, i := token(s, i)
	if r.Method, _, _ = strings.Cut(method, "/"); r.Method == "" { // method-version
		return r, errARCSyntax
	}
	if i, err = authres.SkipCFWS(s, i); err != nil {
		return r, err
	}
	if i >= len(s) || s[i] != '=' {
		return r, errARCSyntax
	}
	if i, err = authres.SkipCFWS(s, i+1); err != nil {
		return r, err
	}
	if r.Result, i = token(s, i); r.Result == "" {
		return r, errARCSyntax
	}
	for {
		if i, err = authres.SkipCFWS(s, i); err != nil {
			return r, err
		}
		if i >= len(s) {
			return r, nil
		}
		var key string
		if key, i = token(s, i); key == "" {
			return r, errARCSyntax
		}
		if i, err = authres.SkipCFWS(s, i); err != nil {
			return r, err
		}
		if i >= len(s) || s[i] != '=' {
			return r, errARCSyntax
		}
		if i, err = authres.SkipCFWS(s, i+1); err != nil {
			return r, err
		}
		var v string
		if v, i, err = value(s, i); err != nil {
			return r, err
		}
		if strings.EqualFold(key, "reason") {
			r.Reason = v
			continue
		}
		typ, property, ok := strings.Cut(key, ".")
		if !ok {
			return r, errARCSyntax
		}
		r.Props = append(r.Props, authres.Prop{Type: typ, Property: property, Value: v})
	}
}

// token reads a method, result or ptype.property: token characters without
// "=" (authres.IsTokenChar tolerates it in authserv-ids).
func token(s string, i int) (string, int) {
	start := i
	for i < len(s) && authres.IsTokenChar(s[i]) && s[i] != '=' {
		i++
	}
	return s[start:i], i
}

// value reads a property value: a quoted-string, or everything up to the
// next space or comment (addresses keep their "@", tokens their "=").
func value(s string, i int) (string, int, error) {
	if i < len(s) && s[i] == '"' {
		v, next, err := authres.QuotedString(s, i)
		if err != nil {
			return "", 0, errARCSyntax
		}
		return v, next, nil
	}
	start := i
	for i < len(s) && s[i] > ' ' && s[i] != '(' && s[i] != ';' && s[i] != 0x7f {
		i++
	}
	if i == start {
		return "", 0, errARCSyntax
	}
	return s[start:i], i, nil
}
