package spf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
)

// ErrSyntax is a record that breaks RFC 7208 §12's grammar: permerror
// wherever it is found (§4.6), even after a mechanism that matched.
var ErrSyntax = errors.New("spf: record syntax")

// isSPFRecord selects the TXT records check_host() considers, exactly as
// the evaluator (blitiri.com.ar/go/spf) selects them: "v=spf1" alone or
// followed by a space, case-insensitive (RFC 7208 §4.5).
func isSPFRecord(txt string) bool {
	l := strings.ToLower(txt)
	return l == "v=spf1" || strings.HasPrefix(l, "v=spf1 ")
}

// ParseRecord checks a record against RFC 7208 §12 and returns it in the
// form the evaluator takes: the same terms, without exp= (explanations are
// not used) and without unknown modifiers (§6: they are ignored, the
// evaluator would refuse them). An error wraps ErrSyntax and names the term.
func ParseRecord(record string) (string, error) {
	if !isSPFRecord(record) {
		return "", fmt.Errorf("%w: not an SPF record", ErrSyntax)
	}
	for i := 0; i < len(record); i++ {
		if c := record[i]; c < 0x20 || c > 0x7e {
			return "", fmt.Errorf("%w: character %#x (only printable ASCII; terms are separated by spaces)", ErrSyntax, c)
		}
	}
	kept := []string{record[:len("v=spf1")]}
	redirects, exps := 0, 0
	for _, term := range strings.Split(record[len("v=spf1"):], " ") {
		if term == "" {
			continue
		}
		modifier, err := checkTerm(term)
		if err != nil {
			return "", fmt.Errorf("%w: %q: %w", ErrSyntax, term, err)
		}
		switch modifier {
		case "redirect":
			redirects++
		case "exp":
			exps++
			continue
		case "":
		default:
			continue // unknown modifier: ignored
		}
		kept = append(kept, term)
	}
	if redirects > 1 {
		return "", fmt.Errorf("%w: redirect= more than once", ErrSyntax)
	}
	if exps > 1 {
		return "", fmt.Errorf("%w: exp= more than once", ErrSyntax)
	}
	return strings.Join(kept, " "), nil
}

// checkTerm checks one directive or modifier; for a modifier it returns
// its name in lower case.
func checkTerm(term string) (modifier string, err error) {
	// A modifier is name "=" ...; a mechanism never has "=" before a ":"
	// or "/", so the first of those characters tells them apart.
	if i := strings.IndexAny(term, "=:/"); i > 0 && term[i] == '=' && isModifierName(term[:i]) {
		name, value := strings.ToLower(term[:i]), term[i+1:]
		switch name {
		case "redirect", "exp":
			return name, checkDomainSpec(value, false)
		default:
			return name, checkMacroString(value, false)
		}
	}
	body := term
	if strings.IndexByte("+-~?", term[0]) >= 0 {
		body = term[1:]
	}
	name, arg, hasArg := body, "", false
	if i := strings.IndexAny(body, ":/"); i >= 0 {
		name, arg, hasArg = body[:i], body[i:], true
	}
	switch strings.ToLower(name) {
	case "all":
		if hasArg {
			return "", errors.New("all takes no argument")
		}
	case "include", "exists":
		if !strings.HasPrefix(arg, ":") {
			return "", errors.New(strings.ToLower(name) + " needs :domain")
		}
		return "", checkDomainSpec(arg[1:], false)
	case "a", "mx":
		if !strings.HasPrefix(arg, ":") {
			return "", checkDualCIDR(arg)
		}
		// A domain-spec may hold "/" and ":" itself: the prefix lengths
		// are what ends the term in their form, if anything does.
		domain, cidr := arg[1:], ""
		if m := dualCIDRSuffix.FindString(domain); m != "" {
			domain, cidr = domain[:len(domain)-len(m)], m
		}
		if err := checkDomainSpec(domain, false); err != nil {
			return "", err
		}
		return "", checkDualCIDR(cidr)
	case "ptr":
		if hasArg {
			if !strings.HasPrefix(arg, ":") {
				return "", errors.New("ptr takes :domain only")
			}
			return "", checkDomainSpec(arg[1:], false)
		}
	case "ip4", "ip6":
		if !strings.HasPrefix(arg, ":") {
			return "", errors.New(name + " needs :network")
		}
		network, cidr, _ := strings.Cut(arg[1:], "/")
		ip := net.ParseIP(network)
		v4 := strings.EqualFold(name, "ip4")
		if ip == nil || (v4 && (ip.To4() == nil || strings.Contains(network, ":"))) || (!v4 && !strings.Contains(network, ":")) {
			return "", fmt.Errorf("bad %s network %q", name, network)
		}
		if strings.Contains(arg[1:], "/") {
			limit := 128
			if v4 {
				limit = 32
			}
			if !cidrLength(cidr, limit) {
				return "", fmt.Errorf("bad prefix length /%s", cidr)
			}
		}
	default:
		return "", fmt.Errorf("unknown mechanism %q", name)
	}
	return "", nil
}

var dualCIDRSuffix = regexp.MustCompile(`(/[0-9]+)?(//[0-9]+)?$`)

// checkDualCIDR checks "", "/n", "//m" or "/n//m".
func checkDualCIDR(s string) error {
	if s == "" {
		return nil
	}
	v4, v6, dual := strings.Cut(s[1:], "//")
	switch {
	case !strings.HasPrefix(s, "/"):
		return errors.New("bad prefix length")
	case strings.HasPrefix(s, "//"):
		if !cidrLength(s[2:], 128) {
			return fmt.Errorf("bad ip6 prefix length %q", s)
		}
	case !cidrLength(v4, 32) || (dual && !cidrLength(v6, 128)):
		return fmt.Errorf("bad prefix length %q", s)
	}
	return nil
}

// cidrLength: "0" or a number without a leading zero, at most limit.
func cidrLength(s string, limit int) bool {
	if s == "" || len(s) > 3 || (len(s) > 1 && s[0] == '0') {
		return false
	}
	n, err := strconv.Atoi(s)
	return err == nil && n >= 0 && n <= limit && strings.Trim(s, "0123456789") == ""
}

func isModifierName(s string) bool {
	if s == "" || !isAlpha(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlpha(c) && !isDigit(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

func isAlpha(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// checkDomainSpec: macro-string domain-end, where domain-end is a
// macro-expand or "." toplabel ["."] (RFC 7208 §7.1).
func checkDomainSpec(s string, exp bool) error {
	if s == "" {
		return errors.New("empty domain-spec")
	}
	if err := checkMacroString(s, exp); err != nil {
		return err
	}
	if strings.HasSuffix(s, "}") || strings.HasSuffix(s, "%%") || strings.HasSuffix(s, "%_") || strings.HasSuffix(s, "%-") {
		if endsInMacro(s) {
			return nil
		}
	}
	t := strings.TrimSuffix(s, ".")
	i := strings.LastIndexByte(t, '.')
	if i < 0 {
		return fmt.Errorf("domain-spec %q has no top label", s)
	}
	if !isTopLabel(t[i+1:]) {
		return fmt.Errorf("bad top label %q", t[i+1:])
	}
	return nil
}

// endsInMacro reports whether the macro-string's last element is a
// macro-expand (not a literal that looks like one's end).
func endsInMacro(s string) bool {
	last := ""
	for i := 0; i < len(s); {
		if s[i] == '%' && i+1 < len(s) {
			if s[i+1] == '{' {
				j := strings.IndexByte(s[i:], '}')
				last, i = s[i:i+j+1], i+j+1
				continue
			}
			last, i = s[i:i+2], i+2
			continue
		}
		last, i = "", i+1
	}
	return last != ""
}

// isTopLabel: alphanumerics with a letter, or alphanumerics and dashes
// starting and ending with an alphanumeric (RFC 7208 §7.1).
func isTopLabel(l string) bool {
	if l == "" || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	letter := false
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case isAlpha(c):
			letter = true
		case isDigit(c):
		case c == '-':
			letter = true // the second form: a dash inside
		default:
			return false
		}
	}
	return letter
}

// checkMacroString checks macro-expands and literals (visible ASCII but
// "%"); the letters c, r and t only in explanations (exp is false for
// domain-specs).
func checkMacroString(s string, exp bool) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			if c < 0x21 || c > 0x7e {
				return fmt.Errorf("character %#x in macro-string", c)
			}
			continue
		}
		if i+1 >= len(s) {
			return errors.New("% at the end")
		}
		switch s[i+1] {
		case '%', '_', '-':
			i++
			continue
		case '{':
		default:
			return fmt.Errorf("bad macro %q", s[i:i+2])
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return errors.New("unterminated macro")
		}
		m := s[i+2 : i+end]
		if m == "" {
			return errors.New("empty macro")
		}
		switch strings.ToLower(m[:1]) {
		case "s", "l", "o", "d", "i", "p", "h", "v":
		case "c", "r", "t":
			if !exp {
				return fmt.Errorf("macro letter %q is only for explanations", m[:1])
			}
		default:
			return fmt.Errorf("unknown macro letter %q", m[:1])
		}
		rest := m[1:]
		for rest != "" && isDigit(rest[0]) {
			rest = rest[1:]
		}
		rest = strings.TrimPrefix(strings.TrimPrefix(rest, "r"), "R")
		if strings.Trim(rest, ".-+,/_=") != "" {
			return fmt.Errorf("bad macro transformers %q", m)
		}
		i += end
	}
	return nil
}

// strictResolver is the evaluator's view of the resolver: SPF records are
// checked against the grammar (a broken one makes the check permerror) and
// handed on without what the evaluator does not take; names that are not
// domain names (an empty or long label, after macro expansion) are
// non-existent, as RFC 7208 §4.6.4 and the suite want, rather than
// questions the resolver cannot even send.
type strictResolver struct {
	Resolver
	lookups    int // questions asked, for tests and fuzzing
	ptrPending []pendingPTR
}

func (r *strictResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	r.ptrPending = nil
	if err := r.ask(name); err != nil {
		return nil, err
	}
	txts, err := r.Resolver.LookupTXT(ctx, name)
	if err != nil {
		return nil, dnsError(err, name)
	}
	out := make([]string, 0, len(txts))
	for _, txt := range txts {
		if !isSPFRecord(txt) {
			out = append(out, txt)
			continue
		}
		rec, err := ParseRecord(txt)
		if err != nil {
			// Not a *net.DNSError: the evaluator makes any other error of
			// a record lookup a permerror.
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, rec)
	}
	return out, nil
}

func (r *strictResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	r.ptrPending = nil
	if err := r.ask(name); err != nil {
		return nil, err
	}
	mx, err := r.Resolver.LookupMX(ctx, name)
	return mx, dnsError(err, name)
}

func (r *strictResolver) LookupIPAddr(ctx context.Context, name string) ([]net.IPAddr, error) {
	if len(r.ptrPending) > 0 && r.ptrPending[0].name == name {
		// the evaluator validating the PTR names we just gave it, in
		// order: answer from the forward lookup already made, and only
		// for a name whose addresses include the client's
		p := r.ptrPending[0]
		r.ptrPending = r.ptrPending[1:]
		if !p.confirmed {
			return nil, &net.DNSError{Err: "PTR name does not lead back to the client", Name: name, IsNotFound: true}
		}
		return p.addrs, nil
	}
	r.ptrPending = nil
	if err := r.ask(name); err != nil {
		return nil, err
	}
	ips, err := r.Resolver.LookupIPAddr(ctx, name)
	return ips, dnsError(err, name)
}

// maxPTRNames is RFC 7208 §4.6.4's cap on the names of a PTR answer that
// are looked at.
const maxPTRNames = 10

// LookupAddr validates the client's PTR names as RFC 7208 §5.5 requires:
// a name counts only when its addresses include the client's. The
// evaluator (blitiri.com.ar/go/spf v1.5.1) only checks that a name has
// some address, which would let a client whose reverse zone names
// mail.victim.example pass victim.example's "ptr"; so the forward lookups
// are made here, and its own validation lookups, which follow at once for
// each name in order, get their answers from ptrPending.
func (r *strictResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	r.lookups++
	r.ptrPending = nil
	names, err := r.Resolver.LookupAddr(ctx, addr)
	if err != nil {
		return nil, dnsError(err, addr)
	}
	if len(names) > maxPTRNames {
		names = names[:maxPTRNames]
	}
	client := net.ParseIP(addr)
	for _, n := range names {
		p := pendingPTR{name: n}
		if r.ask(n) == nil {
			if addrs, err := r.Resolver.LookupIPAddr(ctx, n); err == nil {
				p.addrs = addrs
				for _, a := range addrs {
					p.confirmed = p.confirmed || a.IP.Equal(client)
				}
			}
		}
		r.ptrPending = append(r.ptrPending, p)
	}
	return names, nil
}

type pendingPTR struct {
	name      string
	addrs     []net.IPAddr
	confirmed bool
}

func (r *strictResolver) ask(name string) error {
	n := strings.TrimSuffix(name, ".")
	bad := n == "" || len(n) > 253
	for _, l := range strings.Split(n, ".") {
		bad = bad || l == "" || len(l) > 63
	}
	if bad {
		return &net.DNSError{Err: "not a domain name", Name: name, IsNotFound: true}
	}
	r.lookups++
	return nil
}

// dnsError hands the evaluator a bare *net.DNSError, which it looks for
// with a type assertion, whatever wrapped it.
func dnsError(err error, name string) error {
	if err == nil {
		return nil
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return de
	}
	return &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true}
}
