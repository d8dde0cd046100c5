package policy

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// Lists follow Exim: items are tried left to right and the first that
// matches decides, a plain item for the list and a negated one ("!item")
// against it. If none matches, the list does not match, unless its last item
// is negated: ["!+local_domains"] means "not one of ours". "+name" refers to
// a list in the lists: section, compiled as the kind of list it is used in.
// Compiled lists are never changed, so they may be matched from many
// goroutines at once.

type namedLists map[string]StrList

type listItem[T comparable] struct {
	neg   bool
	match func(T) bool
	// A run of exact items (domains, addresses of hosts, logins) with the
	// same sign is one set: a 100,000-line file list costs a map lookup,
	// not 100,000 comparisons. Order within such a run cannot matter.
	set map[T]struct{}
}

// compiledList is the form shared by all kinds. T is the value after
// normalisation (an unmapped address, a lower-cased name).
type compiledList[T comparable] struct {
	items []listItem[T]
	dflt  bool // the result when no item matches: the last item is negated
}

func (l *compiledList[T]) match(x T) bool {
	for _, it := range l.items {
		if it.set != nil {
			if _, ok := it.set[x]; ok {
				return !it.neg
			}
		} else if it.match(x) {
			return !it.neg
		}
	}
	return l.dflt
}

// HostList is a list of IP addresses and networks.
type HostList struct{ l *compiledList[netip.Addr] }

// DomainList is a list of domains and domain patterns.
type DomainList struct{ l *compiledList[string] }

// AddressList is a list of mail addresses and address patterns.
type AddressList struct{ l *compiledList[string] }

// PatternList is a list of plain strings (logins and the like) and patterns.
type PatternList struct{ l *compiledList[string] }

// Match reports whether ip is in the list. IPv4-mapped IPv6 addresses match
// IPv4 items; an invalid address matches no item.
func (h *HostList) Match(ip netip.Addr) bool {
	if h == nil {
		return false
	}
	if !ip.IsValid() {
		return h.l.dflt
	}
	return h.l.match(ip.Unmap().WithZone(""))
}

// Match reports whether domain is in the list, ignoring case and a trailing
// dot. The empty domain matches no item.
func (dl *DomainList) Match(domain string) bool {
	if dl == nil {
		return false
	}
	domain = normDomain(domain)
	if domain == "" {
		return dl.l.dflt
	}
	return dl.l.match(domain)
}

// Match reports whether addr (without <>; "" is the null sender) is in the
// list. Both the local part and the domain are compared without regard to
// case: RFC 5321 lets the local part be case-sensitive, but no mail system
// we deal with makes use of it, and a list that missed "John@" for "john@"
// would be a trap.
func (al *AddressList) Match(addr string) bool {
	if al == nil {
		return false
	}
	return al.l.match(strings.ToLower(addr))
}

// Match reports whether s is in the list, ignoring case. The empty string
// (e.g. not authenticated) matches no item.
func (pl *PatternList) Match(s string) bool {
	if pl == nil {
		return false
	}
	if s == "" {
		return pl.l.dflt
	}
	return pl.l.match(strings.ToLower(s))
}

type listKind int

const (
	hostKind listKind = iota
	domainKind
	addressKind
	patternKind
)

type namedKey struct {
	kind listKind
	name string
}

type listCompiler struct {
	named namedLists
	d     *decoder

	done   map[namedKey]any // *compiledList[T] for the kind; lists used twice are compiled once
	active []namedKey       // named lists being compiled, to catch cycles
	where  string           // "path:line: " while compiling the items of a file

	// exactKey is set by an item function that returns an exact match
	// (the value it stands for, of the list's type) and taken by addItem.
	exactKey any
}

// lookupItem opens the database of a "cdb:/path" or "lmdb:/path" item:
// the value (an IP address in its canonical form, a domain, an address or a
// string, lower-cased) is in the list when it is a key of the database. It
// returns false for an item of another form.
func (c *listCompiler) lookupItem(s Str) (db *lookupDB, isLookup bool) {
	for _, kind := range lookupKinds {
		if path, ok := strings.CutPrefix(s.Value, kind+":"); ok {
			return c.d.openLookup(s.Line, c.where, kind, path), true
		}
	}
	return nil, false
}

// errorf reports at the YAML line; an item read from a file names the
// file's own line too, as the YAML line only names the file.
func (c *listCompiler) errorf(line int, format string, args ...any) {
	c.d.errorf(line, "%s%s", c.where, fmt.Sprintf(format, args...))
}

func (c *listCompiler) hosts(items StrList) *HostList {
	return &HostList{compileList(c, items, c.hostItem)}
}

func (c *listCompiler) domains(items StrList) *DomainList {
	return &DomainList{compileList(c, items, c.domainItem)}
}

func (c *listCompiler) addresses(items StrList) *AddressList {
	return &AddressList{compileList(c, items, c.addressItem)}
}

func (c *listCompiler) patterns(items StrList) *PatternList {
	return &PatternList{compileList(c, items, c.patternItem)}
}

// compileList handles negation, empty items and file: items; item compiles
// the rest of an item, returning nil (after reporting why) when it is
// invalid.
func compileList[T comparable](c *listCompiler, items StrList, item func(Str) func(T) bool) *compiledList[T] {
	l := new(compiledList[T])
	for _, s := range items {
		path, isFile := strings.CutPrefix(strings.TrimSpace(s.Value), fileItemPrefix)
		if !isFile {
			addItem(c, l, s, item)
			continue
		}
		c.d.watch(path)
		lines, err := readListFile(path)
		if err != nil {
			c.errorf(s.Line, "%v", err)
			continue
		}
		for _, fl := range lines {
			c.where = fmt.Sprintf("%s:%d: ", path, fl.line)
			if strings.HasPrefix(fl.text, fileItemPrefix) {
				c.errorf(s.Line, "%q: a file cannot name another file", fl.text)
			} else {
				addItem(c, l, Str{Value: fl.text, Line: s.Line}, item)
			}
		}
		c.where = ""
	}
	return l
}

func addItem[T comparable](c *listCompiler, l *compiledList[T], s Str, item func(Str) func(T) bool) {
	v := strings.TrimSpace(s.Value)
	neg := strings.HasPrefix(v, "!")
	if neg {
		v = strings.TrimSpace(v[1:])
	}
	l.dflt = neg
	switch {
	case v == "" && neg:
		c.errorf(s.Line, "nothing after \"!\"")
	case v == "":
		c.errorf(s.Line, "empty item")
	case strings.HasPrefix(v, "!"):
		c.errorf(s.Line, "%q: an item can be negated only once", s.Value)
	case strings.HasPrefix(v, fileItemPrefix):
		// Exim would negate every item of the file; that reads as "not any
		// of these" but is not, as soon as one line is itself negated.
		c.errorf(s.Line, "%q: a file item cannot be negated; write \"!\" before the items inside the file", s.Value)
	default:
		c.exactKey = nil
		m := item(Str{Value: v, Line: s.Line})
		key, exact := c.exactKey.(T)
		c.exactKey = nil
		switch n := len(l.items); {
		case m == nil:
		case exact && n > 0 && l.items[n-1].set != nil && l.items[n-1].neg == neg:
			l.items[n-1].set[key] = struct{}{}
		case exact:
			l.items = append(l.items, listItem[T]{neg: neg, set: map[T]struct{}{key: {}}})
		default:
			l.items = append(l.items, listItem[T]{neg: neg, match: m})
		}
	}
}

// compileNamed compiles the list that s ("+name") refers to as kind, or reports
// why it cannot and returns nil.
func compileNamed[T comparable](c *listCompiler, kind listKind, s Str, item func(Str) func(T) bool) func(T) bool {
	name := strings.TrimSpace(s.Value[1:])
	key := namedKey{kind, name}
	if l, ok := c.done[key]; ok {
		return l.(*compiledList[T]).match
	}
	if name == "" {
		c.errorf(s.Line, "missing list name after \"+\"")
		return nil
	}
	items, ok := c.named[name]
	if !ok {
		c.errorf(s.Line, "unknown list %q", name)
		return nil
	}
	if i := slices.Index(c.active, key); i >= 0 {
		var path []string
		for _, k := range c.active[i:] {
			path = append(path, k.name)
		}
		if len(path) == 1 {
			c.errorf(s.Line, "list %q refers to itself", name)
		} else {
			c.errorf(s.Line, "list %q refers to itself (%s -> %s)", name, strings.Join(path, " -> "), name)
		}
		return nil
	}
	c.active = append(c.active, key)
	where := c.where // a named list's items are in the YAML, not in the file that names it
	c.where = ""
	l := compileList(c, items, item)
	c.where = where
	c.active = c.active[:len(c.active)-1]
	if c.done == nil {
		c.done = make(map[namedKey]any)
	}
	c.done[key] = l
	return l.match
}

func (c *listCompiler) hostItem(s Str) func(netip.Addr) bool {
	v := s.Value
	switch {
	case v == "*":
		return func(netip.Addr) bool { return true }
	case v[0] == '+':
		return compileNamed(c, hostKind, s, c.hostItem)
	}
	if db, ok := c.lookupItem(s); ok {
		if db == nil {
			return nil
		}
		return func(ip netip.Addr) bool { return db.has(ip.String()) }
	}
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			c.errorf(s.Line, "invalid network %q: %v", v, strings.TrimPrefix(err.Error(), "netip.ParsePrefix("+strconv.Quote(v)+"): "))
			return nil
		}
		if m := p.Masked(); m != p {
			c.errorf(s.Line, "%s has host bits set; did you mean %s?", v, m)
			return nil
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Contains
	}
	a, err := netip.ParseAddr(v)
	switch {
	case err != nil && strings.ContainsAny(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") && !strings.Contains(v, ":"):
		c.errorf(s.Line, "host names are not supported in host lists: %q", v)
	case err != nil:
		c.errorf(s.Line, "invalid IP address %q", v)
	case a.Zone() != "":
		c.errorf(s.Line, "%q: zones are not supported in host lists", v)
	default:
		a = a.Unmap()
		c.exactKey = a
		return func(ip netip.Addr) bool { return ip == a }
	}
	return nil
}

func normDomain(d string) string {
	return strings.TrimSuffix(strings.ToLower(d), ".")
}

// domainItem compiles a domain item; it is also the domain part of address
// items, so the domain it gets may be empty (an address without "@").
func (c *listCompiler) domainItem(s Str) func(string) bool {
	v := s.Value
	switch v[0] {
	case '^':
		return c.regexp(s)
	case '+':
		return compileNamed(c, domainKind, s, c.domainItem)
	}
	if db, ok := c.lookupItem(s); ok {
		if db == nil {
			return nil
		}
		return func(d string) bool { return d != "" && db.has(d) }
	}
	v = normDomain(v)
	rest, wild := strings.CutPrefix(v, "*")
	switch {
	case v == "":
		c.errorf(s.Line, "%q is not a domain", s.Value)
	case strings.Contains(v, "@"):
		c.errorf(s.Line, "%q is an address, not a domain", s.Value)
	case strings.ContainsFunc(v, unicode.IsSpace):
		c.errorf(s.Line, "%q: a domain cannot contain spaces", s.Value)
	case strings.Contains(rest, "*"):
		c.errorf(s.Line, "%q: \"*\" is allowed only at the start of a domain", s.Value)
	case !wild:
		c.exactKey = v
		return func(d string) bool { return d == v }
	case rest == "":
		return func(d string) bool { return d != "" }
	case rest[0] == '.' && len(rest) > 1:
		return func(d string) bool { return len(d) > len(rest) && strings.HasSuffix(d, rest) }
	default:
		return func(d string) bool { return strings.HasSuffix(d, rest) }
	}
	return nil
}

func (c *listCompiler) addressItem(s Str) func(string) bool {
	// The domain items it is made of are exact domains, not exact addresses.
	defer func() { c.exactKey = nil }()
	v := s.Value
	switch {
	case v == "<>":
		return func(a string) bool { return a == "" }
	case v == "*":
		return func(a string) bool { return a != "" }
	case v[0] == '^':
		return nonEmptyOnly(c.regexp(s))
	case v[0] == '+':
		return compileNamed(c, addressKind, s, c.addressItem)
	}
	if db, ok := c.lookupItem(s); ok {
		if db == nil {
			return nil
		}
		return func(a string) bool { return a != "" && db.has(a) }
	}
	at := strings.LastIndexByte(v, '@')
	if at < 0 {
		dm := c.domainItem(s)
		if dm == nil {
			return nil
		}
		return func(a string) bool {
			_, d := splitAddress(a)
			return d != "" && dm(d)
		}
	}
	local, domain := strings.ToLower(v[:at]), v[at+1:]
	if domain == "" {
		c.errorf(s.Line, "%q: missing domain after \"@\" (use *@* for any address)", v)
		return nil
	}
	dm := c.domainItem(Str{Value: domain, Line: s.Line})
	if dm == nil {
		return nil
	}
	if local == "" {
		local = "*"
	}
	return func(a string) bool {
		l, d := splitAddress(a)
		return d != "" && dm(d) && globMatch(local, l)
	}
}

// splitAddress splits at the last "@": a quoted local part may contain one.
func splitAddress(a string) (local, domain string) {
	at := strings.LastIndexByte(a, '@')
	if at < 0 {
		return a, ""
	}
	return a[:at], strings.TrimSuffix(a[at+1:], ".")
}

func (c *listCompiler) patternItem(s Str) func(string) bool {
	v := s.Value
	switch v[0] {
	case '^':
		return c.regexp(s)
	case '+':
		return compileNamed(c, patternKind, s, c.patternItem)
	}
	if db, ok := c.lookupItem(s); ok {
		if db == nil {
			return nil
		}
		return db.has
	}
	if strings.Contains(v, "*") {
		p := strings.ToLower(v)
		return func(x string) bool { return globMatch(p, x) }
	}
	v = strings.ToLower(v)
	c.exactKey = v
	return func(x string) bool { return x == v }
}

// regexp compiles a "^..." item as Exim does: the item is the expression, so
// it is anchored at the start only, unless it ends in "$".
func (c *listCompiler) regexp(s Str) func(string) bool {
	re, err := regexp.Compile("(?i)" + s.Value)
	if err != nil {
		c.errorf(s.Line, "invalid regular expression %q: %v", s.Value, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		return nil
	}
	return re.MatchString
}

func nonEmptyOnly(m func(string) bool) func(string) bool {
	if m == nil {
		return nil
	}
	return func(s string) bool { return s != "" && m(s) }
}

// glob matches s against a pattern in which "*" stands for any run of
// characters, in time linear in len(s) for each star.
func globMatch(pattern, s string) bool {
	// Greedy with one backtrack point: the last star seen. A later mismatch
	// only ever needs to retry from there.
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			mark++
			p, i = star+1, mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
