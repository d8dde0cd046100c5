package policy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/resolver"
	"github.com/tollgate/tollgate/milter"
)

// The dnslists condition is Exim's (spec "Using DNS lists", dnsbl.c): the
// items are tried in order and the first that lists the key makes the
// condition true. An item is
//
//	[txtdomain,]domain[[!]{=|==|&|=&}ip[,ip...]][/key]
//
// or one of the flags +exclude_unknown (the default), +include_unknown and
// +defer_unknown, which say what a temporary DNS failure means for the
// items after them.

// dnsListUnknown is what a temporary DNS failure counts as.
type dnsListUnknown uint8

const (
	unknownExclude dnsListUnknown = iota // not listed: go on with the next item (Exim's default)
	unknownInclude                       // listed
	unknownDefer                         // the ACL defers (4xx)
)

// dnsListItem is one parsed item.
type dnsListItem struct {
	raw       string
	domain    string       // the zone the A record is looked up in
	txtDomain string       // the zone of the TXT record and of $dnslist_domain; "" is domain
	values    []netip.Addr // =ip,ip or &mask,mask; none: any 127.0.0.0/8 answer lists
	bitmask   bool         // & rather than =
	all       bool         // == or =&: every answer must match
	negate    bool         // != or !&
	key       string       // after '/': "" looks up the client's address
	hasKey    bool
	unknown   dnsListUnknown
}

// parseDNSListItem parses one item. flag is set (and item zero) for the
// +..._unknown flags.
func parseDNSListItem(s string) (item dnsListItem, flag dnsListUnknown, isFlag bool, err error) {
	item.raw = s
	if strings.HasPrefix(s, "+") {
		switch strings.ToLower(s) {
		case "+exclude_unknown":
			return item, unknownExclude, true, nil
		case "+include_unknown":
			return item, unknownInclude, true, nil
		case "+defer_unknown":
			return item, unknownDefer, true, nil
		}
		return item, 0, false, errors.New("unknown flag: use +exclude_unknown, +include_unknown or +defer_unknown")
	}
	if strings.HasPrefix(s, "!") {
		return item, 0, false, errors.New("an item cannot be negated as a whole (Exim has no such item): put ! before = or & (\"zone!=127.0.0.2\"), or write the rule the other way round")
	}
	spec := s
	if i := strings.IndexByte(spec, '/'); i >= 0 {
		spec, item.key, item.hasKey = spec[:i], spec[i+1:], true
		if item.key == "" {
			return item, 0, false, errors.New("nothing after '/': give a key (an IP address, a domain or a $variable), or leave out the '/'")
		}
	}
	var list string
	hasList := false
	if i := strings.IndexByte(spec, '='); i >= 0 {
		spec, list, hasList = spec[:i], spec[i+1:], true
		switch {
		case strings.HasPrefix(list, "="):
			item.all, list = true, list[1:]
		case strings.HasPrefix(list, "&"):
			item.all, item.bitmask, list = true, true, list[1:]
		}
	} else if i := strings.IndexByte(spec, '&'); i >= 0 {
		spec, list, hasList, item.bitmask = spec[:i], spec[i+1:], true, true
	}
	if hasList {
		if rest, ok := strings.CutSuffix(spec, "!"); ok {
			spec, item.negate = rest, true
		}
		if list == "" {
			return item, 0, false, errors.New("no address after = or &")
		}
		for v := range strings.SplitSeq(list, ",") {
			a, perr := netip.ParseAddr(strings.TrimSpace(v))
			if perr != nil || !a.Is4() {
				return item, 0, false, fmt.Errorf("%q is not an IPv4 address (DNS lists answer with A records such as 127.0.0.2)", v)
			}
			item.values = append(item.values, a)
		}
	}
	if txt, zone, ok := strings.Cut(spec, ","); ok {
		item.txtDomain, spec = txt, zone
		if err := checkDNSListDomain(txt); err != nil {
			return item, 0, false, fmt.Errorf("TXT domain %q: %w", txt, err)
		}
	}
	if err := checkDNSListDomain(spec); err != nil {
		return item, 0, false, fmt.Errorf("domain %q: %w", spec, err)
	}
	item.domain = strings.ToLower(spec)
	item.txtDomain = strings.ToLower(item.txtDomain)
	return item, 0, false, nil
}

// checkDNSListDomain refuses what cannot be a DNS list's zone. Exim only
// logs "strange characters"; a policy that loads should not have any.
func checkDNSListDomain(d string) error {
	if d == "" {
		return errors.New("empty")
	}
	if len(d) > 200 {
		return errors.New("longer than 200 characters: no room left for a reversed address")
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 {
			return errors.New("empty or over-long label")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("%q is not allowed: use letters, digits, '-', '_' and '.'", string(c))
			}
		}
	}
	return nil
}

// validKeyName reports whether a key that is no IP address can be put in
// front of a zone: DNS labels of letters, digits, '-' and '_'. Anything
// else (a domain literal, spaces) cannot be listed, and asking for it would
// only turn into a DNS error.
func validKeyName(key string) bool {
	if key == "" || len(key) > 253 {
		return false
	}
	for _, label := range strings.Split(key, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// dnsListsCond is a compiled dnslists condition.
type dnsListsCond struct {
	items []dnsListItem
	keys  []*template // per item, nil when the item has no key
}

// compileDNSLists parses the items, reporting each bad one at its line.
func compileDNSLists(d *decoder, stage milter.Stage, line int, list StrList) condition {
	c := &dnsListsCond{}
	unknown := unknownExclude
	bad := false
	for _, s := range list {
		item, flag, isFlag, err := parseDNSListItem(strings.TrimSpace(s.Value))
		if err != nil {
			d.errorf(s.Line, "dnslists: %q: %v", s.Value, err)
			bad = true
			continue
		}
		if isFlag {
			unknown = flag
			continue
		}
		item.unknown = unknown
		var key *template
		if item.hasKey && !strings.Contains(item.key, "$") {
			for _, k := range splitDNSListKeys(item.key) {
				if dnsListPrepend(k) == "" {
					d.errorf(s.Line, "dnslists: %q: the key %q is neither an IP address nor a domain name", s.Value, k)
					bad = true
				}
			}
			if bad {
				continue
			}
		}
		if item.hasKey {
			key = compileTemplate(d, Str{Value: item.key, Line: s.Line}, stage, "dnslists key")
		}
		c.items = append(c.items, item)
		c.keys = append(c.keys, key)
	}
	if len(c.items) == 0 && len(list) == 0 {
		d.errorf(line, "dnslists: no DNS list to look up")
		return nil
	}
	if bad {
		return nil
	}
	if len(c.items) == 0 {
		d.errorf(list[0].Line, "dnslists: no DNS list to look up, only flags")
		return nil
	}
	return c
}

// Where a match leaves its values: connection state, as in Exim, where they
// stay until the next dnslists condition matches. The keys cannot clash
// with the policy's acl_c_ variables.
const (
	dnslistDomainVar  = "dnslist:domain"
	dnslistValueVar   = "dnslist:value"
	dnslistTextVar    = "dnslist:text"
	dnslistMatchedVar = "dnslist:matched"
)

// dnsListVariable is $dnslist_domain, $dnslist_value, $dnslist_text or
// $dnslist_matched: empty until a dnslists condition has matched in the
// connection.
func dnsListVariable(key string) variable {
	return variable{fromConnect, func(e *evalCtx) string { return e.s.Vars[key] }}
}

// dnsListLookup is what one item found for one key.
type dnsListLookup struct {
	listed bool
	err    error // a temporary failure: listed then follows the item's +..._unknown
	values []netip.Addr
	text   string
}

// dnsListResult labels of tollgate_dnslist_lookups_total.
const (
	dnsListListed    = "listed"
	dnsListNotListed = "not_listed"
	dnsListError     = "error"
)

func newDNSListMetrics(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Name: "dnslist_lookups_total",
		Help: "DNS list (dnslists condition) lookups by result: listed, not_listed, error (a temporary DNS failure or timeout)."},
		[]string{"result"})
	if reg != nil {
		reg.MustRegister(c)
	}
	return c
}

func (c *dnsListsCond) match(e *evalCtx) bool {
	m, _ := c.eval(e)
	return m
}

// eval tries the items in order. A temporary failure counts as the item's
// +..._unknown flag says; +defer_unknown stops there and defers the ACL.
func (c *dnsListsCond) eval(e *evalCtx) (bool, *milter.Decision) {
	client := e.s.Identity.ClientAddr.Unmap()
	for i := range c.items {
		it := &c.items[i]
		var keys []string
		if c.keys[i] != nil {
			keys = splitDNSListKeys(c.keys[i].expand(e))
		} else if client.IsValid() {
			keys = []string{client.String()}
		} // no client address: this item cannot list it
		var deferred error
		for _, key := range keys {
			prepend := dnsListPrepend(key)
			if prepend == "" {
				continue // a key from the client (a sender domain) that no list can hold
			}
			res := e.dnsListLookup(it, prepend)
			if res.err != nil {
				e.dnsListLog(it, res.err)
				switch it.unknown {
				case unknownExclude:
					continue
				case unknownDefer:
					// as Exim: the item's other keys may still list it
					deferred = res.err
					continue
				}
			} else if !res.listed {
				continue
			}
			e.setDNSListVars(it, key, res)
			return true, nil
		}
		if deferred != nil {
			return false, &milter.Decision{Verdict: milter.TempFail, Reason: "dnslists: " + deferred.Error(),
				Reply: milter.Reply{Code: 451, Enhanced: "4.4.3", Text: "temporary DNS failure, try again later"}}
		}
	}
	return false, nil
}

// splitDNSListKeys splits an expanded key. One key is the usual; Exim's
// "<" followed by a separator character makes it a list
// ("<;$sender_host_address;192.0.2.1"), which IPv6 addresses need since
// they contain ':'.
func splitDNSListKeys(key string) []string {
	key = strings.TrimSpace(key)
	if len(key) < 2 || key[0] != '<' || !strings.ContainsRune(dnsListKeySeparators, rune(key[1])) {
		return []string{key}
	}
	var out []string
	for k := range strings.SplitSeq(key[2:], key[1:2]) {
		if k = strings.TrimSpace(k); k != "" {
			out = append(out, k)
		}
	}
	return out
}

// dnsListKeySeparators are the characters a key list may be split on.
const dnsListKeySeparators = ";|,:!#%@ "

// dnsListPrepend is what a key puts in front of the zone: an IP address
// reversed, a domain name as it is (in lower case); "" for anything else
// (a domain literal, spaces), which no list can hold and which would only
// turn into a DNS error.
func dnsListPrepend(key string) string {
	key = strings.TrimSuffix(key, ".")
	if a, err := netip.ParseAddr(key); err == nil {
		return reverseAddr(a.Unmap())
	}
	if validKeyName(key) {
		return strings.ToLower(key)
	}
	return ""
}

// setDNSListVars records a match for $dnslist_*.
func (e *evalCtx) setDNSListVars(it *dnsListItem, key string, res dnsListLookup) {
	domain := it.txtDomain
	if domain == "" {
		domain = it.domain
	}
	if e.s.Vars == nil {
		e.s.Vars = map[string]string{}
	}
	vals := make([]string, len(res.values))
	for j, v := range res.values {
		vals[j] = v.String()
	}
	e.s.Vars[dnslistDomainVar] = domain
	e.s.Vars[dnslistMatchedVar] = key
	e.s.Vars[dnslistValueVar] = strings.Join(vals, ", ")
	e.s.Vars[dnslistTextVar] = res.text
}

// dnsListLookup looks the name up in one item's zone, and on a match its
// TXT record (in the TXT domain, which must then list the name too, as in
// Exim). The item's lookups share one deadline: dns.timeout.
func (e *evalCtx) dnsListLookup(it *dnsListItem, prepend string) dnsListLookup {
	ctx := e.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, e.dnsTimeout())
	defer cancel()
	res := e.dnsListQuery(ctx, it.domain, prepend, it)
	if !res.listed || res.err != nil {
		return res
	}
	if it.txtDomain != "" && it.txtDomain != it.domain {
		res = e.dnsListQuery(ctx, it.txtDomain, prepend, &dnsListItem{raw: it.raw})
		if !res.listed || res.err != nil {
			return res
		}
		return e.dnsListText(ctx, it.txtDomain, prepend, res)
	}
	return e.dnsListText(ctx, it.domain, prepend, res)
}

func (e *evalCtx) dnsTimeout() time.Duration {
	if e.dnsWait > 0 {
		return e.dnsWait
	}
	return resolver.DefaultTimeout
}

// dnsListQuery asks for the A records and matches them as the item says.
func (e *evalCtx) dnsListQuery(ctx context.Context, zone, prepend string, it *dnsListItem) dnsListLookup {
	name := prepend + "." + zone
	if len(name) > 253 {
		e.dnsListCount(dnsListNotListed)
		return dnsListLookup{}
	}
	var ips []net.IP
	var err error
	if e.dns == nil {
		err = &net.DNSError{Err: "no resolver", Name: name, IsTemporary: true}
	} else {
		ips, err = e.dns.LookupIP(ctx, "ip4", name)
	}
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			e.dnsListCount(dnsListNotListed)
			return dnsListLookup{}
		}
		e.dnsListCount(dnsListError)
		return dnsListLookup{err: fmt.Errorf("%s: %w", name, err)}
	}
	var answers []netip.Addr
	for _, ip := range ips {
		if a, ok := netip.AddrFromSlice(ip); ok {
			answers = append(answers, a.Unmap())
		}
	}
	if matchDNSListAnswers(it, answers) {
		e.dnsListCount(dnsListListed)
		return dnsListLookup{listed: true, values: answers}
	}
	e.dnsListCount(dnsListNotListed)
	return dnsListLookup{}
}

// matchDNSListAnswers applies =, ==, &, =& and their negations to the A
// records, as Exim's one_check_dnsbl does.
func matchDNSListAnswers(it *dnsListItem, answers []netip.Addr) bool {
	if len(answers) == 0 {
		return false
	}
	if len(it.values) == 0 {
		// Without values only 127.0.0.0/8 answers list: anything else is a
		// wildcard or a list that has gone away answering for everything.
		for _, a := range answers {
			if inLoopback8(a) {
				return true
			}
		}
		return false
	}
	matches := func(a netip.Addr) bool {
		for _, v := range it.values {
			if !it.bitmask {
				if a == v {
					return true
				}
				continue
			}
			// Every bit of v set in the answer; an answer outside
			// 127.0.0.0/8 has no bits (Exim discards it).
			var mask uint32
			if inLoopback8(a) {
				mask = be32(a)
			}
			if be32(v)&mask == be32(v) {
				return true
			}
		}
		return false
	}
	var found bool
	if it.all {
		found = true
		for _, a := range answers {
			if !matches(a) {
				found = false
				break
			}
		}
	} else {
		for _, a := range answers {
			if matches(a) {
				found = true
				break
			}
		}
	}
	return found != it.negate
}

func inLoopback8(a netip.Addr) bool { return a.Is4() && a.As4()[0] == 127 }

func be32(a netip.Addr) uint32 {
	if !a.Is4() {
		return 0
	}
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// dnsListText adds the first TXT record of the listed name: what the list
// says about it. A failure leaves it empty; the name is listed all the same.
func (e *evalCtx) dnsListText(ctx context.Context, zone, prepend string, res dnsListLookup) dnsListLookup {
	if e.dns == nil {
		return res
	}
	if txt, err := e.dns.LookupTXT(ctx, prepend+"."+zone); err == nil && len(txt) > 0 {
		res.text = txt[0]
	}
	return res
}

func (e *evalCtx) dnsListCount(result string) {
	if e.dnsLists != nil {
		e.dnsLists.WithLabelValues(result).Inc()
	}
}

// dnsListLog says, once a minute per list, that a lookup failed and what
// that was taken for.
func (e *evalCtx) dnsListLog(it *dnsListItem, err error) {
	if !e.limit.allow("dnslists/"+it.domain, time.Now()) {
		return
	}
	taken := map[dnsListUnknown]string{unknownExclude: "assumed not listed", unknownInclude: "assumed listed", unknownDefer: "deferred"}[it.unknown]
	log := e.log
	if log == nil {
		return
	}
	log.Warn("policy: DNS list lookup failed", "list", it.domain, "err", err.Error(), "taken_as", taken,
		"stage", e.stage.String(), "session", e.s.ID)
}

// reverseAddr is the name an address is listed under: 4.3.2.1 for
// 1.2.3.4, the 32 nibbles in reverse for IPv6 (RFC 5782 §2.4).
func reverseAddr(a netip.Addr) string {
	if a.Is4() {
		b := a.As4()
		return fmt.Sprintf("%d.%d.%d.%d", b[3], b[2], b[1], b[0])
	}
	const hex = "0123456789abcdef"
	b := a.As16()
	out := make([]byte, 0, 63)
	for i := 15; i >= 0; i-- {
		out = append(out, hex[b[i]&0xf], '.', hex[b[i]>>4], '.')
	}
	return string(out[:len(out)-1])
}

// String writes the item back in the syntax parseDNSListItem reads.
func (it *dnsListItem) String() string {
	var b strings.Builder
	if it.txtDomain != "" {
		b.WriteString(it.txtDomain + ",")
	}
	b.WriteString(it.domain)
	if len(it.values) > 0 {
		if it.negate {
			b.WriteByte('!')
		}
		switch {
		case it.all && it.bitmask:
			b.WriteString("=&")
		case it.all:
			b.WriteString("==")
		case it.bitmask:
			b.WriteByte('&')
		default:
			b.WriteByte('=')
		}
		for i, v := range it.values {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(v.String())
		}
	}
	if it.hasKey {
		b.WriteString("/" + it.key)
	}
	return b.String()
}
