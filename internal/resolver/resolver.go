// Package resolver is the one DNS client of the daemon: SPF, DKIM, DMARC,
// iprev, ARC and DNS lists all ask through it, so they share one cache, one
// set of deadlines and one metric.
//
// Why not net.Resolver: it has no cache, cannot remember failures (a
// resolver that hangs would cost one timeout per message instead of one per
// name and period), does not report the TTLs that RFC 2308 negative caching
// needs, and cannot be pointed at a server with a port (test resolvers).
// The methods have net.Resolver's signatures and its *net.DNSError errors,
// so libraries written for net.Resolver (blitiri.com.ar/go/spf) take it as
// it is, and tests may hand any of them a *net.Resolver-like fake.
package resolver

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
)

// Resolver is what a feature looks names up with. Errors are *net.DNSError:
// IsNotFound for NXDOMAIN and for a name without records of the type asked
// (RFC 7208's "void lookup" counts both), IsTemporary and IsTimeout for
// answers that may come later. *net.Resolver implements it.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupIP(ctx context.Context, network, host string) ([]net.IP, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

// Options configures a Cached resolver (the top-level dns: section).
type Options struct {
	// Server is "host:port" of a recursive resolver; "" reads the
	// nameservers of ResolvConf and tries them in order.
	Server string
	// ResolvConf defaults to /etc/resolv.conf.
	ResolvConf string
	// Timeout bounds each query to one server; default 5s. The caller's
	// context bounds the whole lookup.
	Timeout time.Duration
	// CacheSize is the number of answers kept; default 4096, negative
	// disables the cache.
	CacheSize int
	// MaxTTL caps how long an answer is kept; default 1h.
	MaxTTL time.Duration
	// NegativeTTL is used for NXDOMAIN and no-data answers that carry no
	// SOA; default 60s. Those with a SOA are kept for its MINIMUM or TTL,
	// whichever is smaller (RFC 2308 §5), capped by MaxTTL.
	NegativeTTL time.Duration
	// FailureTTL is how long a temporary failure (timeout, SERVFAIL,
	// REFUSED, network error) is remembered, so that a resolver that hangs
	// costs one timeout per name and period instead of one per message;
	// default 5s, negative disables. RFC 2308 §7 allows up to five minutes.
	FailureTTL time.Duration
	// Metrics, if set, counts lookups.
	Metrics *Metrics
	// Now is the clock of the cache; default time.Now.
	Now func() time.Time
}

// Defaults of Options.
const (
	DefaultTimeout    = 5 * time.Second
	DefaultFailureTTL = 5 * time.Second
	DefaultCacheSize  = 4096
	// MaxFailureTTL is RFC 2308 §7's bound on caching a server failure.
	MaxFailureTTL = 5 * time.Minute
)

// Key is a string that differs whenever an option that changes answers
// differs: a reload with the same key may keep the resolver and its cache.
func (o Options) Key() string {
	return fmt.Sprintf("dns|%s|%s|%s|%d|%s|%s|%s", o.Server, o.ResolvConf, o.Timeout, o.CacheSize, o.MaxTTL, o.NegativeTTL, o.FailureTTL)
}

// Metrics counts lookups by record type, cache (hit, miss) and outcome
// (answer, negative, failure).
type Metrics struct {
	Lookups *prometheus.CounterVec
}

// NewMetrics registers the resolver's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{Lookups: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Subsystem: "dns", Name: "lookups_total",
		Help: "DNS lookups of every feature by record type, whether the cache answered (hit) or a server was asked (miss), and outcome: answer, negative (NXDOMAIN or no records) or failure (timeout, SERVFAIL, network)."},
		[]string{"type", "cache", "outcome"})}
	reg.MustRegister(m.Lookups)
	for _, t := range []string{"TXT", "MX", "A", "AAAA", "PTR"} {
		for _, c := range []string{"hit", "miss"} {
			for _, o := range []string{"answer", "negative", "failure"} {
				m.Lookups.WithLabelValues(t, c, o)
			}
		}
	}
	return m
}

// Cached is a Resolver built on github.com/miekg/dns with a small LRU cache
// that keeps answers (and NXDOMAIN/no-data, RFC 2308) for their TTL and
// temporary failures for FailureTTL. Concurrent lookups of one name and type
// share one query. Safe for concurrent use.
type Cached struct {
	opts    Options
	servers []string
	confErr error
	flight  singleflight.Group

	mu    sync.Mutex
	lru   *list.List // of *entry, most recent first
	cache map[string]*list.Element
}

type entry struct {
	key     string
	rrs     []dns.RR
	err     error
	expires time.Time
}

// New returns a resolver; a resolv.conf that cannot be read makes every
// lookup a temporary failure naming the problem.
func New(opts Options) *Cached {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.MaxTTL <= 0 {
		opts.MaxTTL = time.Hour
	}
	if opts.NegativeTTL <= 0 {
		opts.NegativeTTL = time.Minute
	}
	if opts.FailureTTL == 0 {
		opts.FailureTTL = DefaultFailureTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Cached{opts: opts, lru: list.New(), cache: map[string]*list.Element{}}
	if opts.Server != "" {
		r.servers = []string{opts.Server}
		return r
	}
	path := opts.ResolvConf
	if path == "" {
		path = "/etc/resolv.conf"
	}
	cc, err := dns.ClientConfigFromFile(path)
	switch {
	case err != nil:
		r.confErr = err
	case len(cc.Servers) == 0:
		r.confErr = fmt.Errorf("no nameserver in %s", path)
	default:
		for _, s := range cc.Servers {
			r.servers = append(r.servers, net.JoinHostPort(s, cc.Port))
		}
	}
	return r
}

// Close lets a Cached be a shared resource kept across reloads.
func (r *Cached) Close() error { return nil }

// LookupTXT returns one string per record, the character-strings of a
// record concatenated (RFC 7208 §3.3, RFC 6376 §3.6.2.2), as the bytes
// the server sent (as net.Resolver returns them).
func (r *Cached) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rrs, err := r.lookup(ctx, name, dns.TypeTXT)
	var out []string
	for _, rr := range rrs {
		var b strings.Builder
		for _, s := range rr.(*dns.TXT).Txt {
			b.WriteString(txtBytes(s))
		}
		out = append(out, b.String())
	}
	return out, err
}

// txtBytes undoes miekg/dns's presentation format of a character-string
// (\" and \\ for quote and backslash, \DDD for bytes outside printable
// ASCII): an SPF record with a control character or a non-ASCII byte must
// reach its parser as that byte, to be refused as RFC 7208 §3.1 says, not
// as four harmless characters.
func txtBytes(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 >= len(s) {
			b = append(b, s[i])
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			n := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0')
			if n <= 255 {
				b = append(b, byte(n))
				i += 3
				continue
			}
		}
		b = append(b, s[i+1])
		i++
	}
	return string(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// LookupMX returns the MX records sorted by preference.
func (r *Cached) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	rrs, err := r.lookup(ctx, name, dns.TypeMX)
	var out []*net.MX
	for _, rr := range rrs {
		mx := rr.(*dns.MX)
		out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
	}
	slices.SortStableFunc(out, func(a, b *net.MX) int { return int(a.Pref) - int(b.Pref) })
	return out, err
}

// LookupIP asks for A ("ip4"), AAAA ("ip6") or both ("ip"). With both, a
// name that has records of one type only is an answer, not an error.
func (r *Cached) LookupIP(ctx context.Context, network, host string) ([]net.IP, error) {
	var types []uint16
	switch network {
	case "ip4":
		types = []uint16{dns.TypeA}
	case "ip6":
		types = []uint16{dns.TypeAAAA}
	case "ip":
		types = []uint16{dns.TypeA, dns.TypeAAAA}
	default:
		return nil, &net.DNSError{Err: "unknown network " + network, Name: host}
	}
	var out []net.IP
	var firstErr error
	for _, t := range types {
		rrs, err := r.lookup(ctx, host, t)
		if err != nil {
			if firstErr == nil || !isNotFound(err) {
				firstErr = err
			}
			continue
		}
		for _, rr := range rrs {
			switch a := rr.(type) {
			case *dns.A:
				out = append(out, a.A)
			case *dns.AAAA:
				out = append(out, a.AAAA)
			}
		}
	}
	if len(out) > 0 {
		// with both types, an answer of one is an answer even when the
		// other failed for now
		return out, nil
	}
	return nil, firstErr
}

// LookupIPAddr is LookupIP(ctx, "ip", host) as net.IPAddr.
func (r *Cached) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	ips, err := r.LookupIP(ctx, "ip", host)
	out := make([]net.IPAddr, 0, len(ips))
	for _, ip := range ips {
		out = append(out, net.IPAddr{IP: ip})
	}
	return out, err
}

// LookupAddr returns the PTR names of an address, fully qualified.
func (r *Cached) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	rev, err := dns.ReverseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "not an IP address", Name: addr}
	}
	rrs, err := r.lookup(ctx, rev, dns.TypePTR)
	var out []string
	for _, rr := range rrs {
		out = append(out, rr.(*dns.PTR).Ptr)
	}
	return out, err
}

func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// lookup answers from the cache or asks. The query runs apart from ctx,
// shared by every caller that asks for the same name and type meanwhile: a
// caller whose deadline passes gets a timeout, and the query goes on to fill
// the cache for the others.
func (r *Cached) lookup(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	typ := dns.TypeToString[qtype]
	key := typ + " " + name
	if rrs, err, ok := r.cached(key); ok {
		r.count(typ, "hit", err)
		return rrs, err
	}
	if r.confErr != nil {
		err := temporary(name, r.confErr.Error(), false)
		r.count(typ, "miss", err)
		return nil, err
	}
	ch := r.flight.DoChan(key, func() (any, error) {
		return r.resolve(context.WithoutCancel(ctx), key, name, qtype)
	})
	select {
	case res := <-ch:
		rrs, _ := res.Val.([]dns.RR)
		r.count(typ, "miss", res.Err)
		return rrs, res.Err
	case <-ctx.Done():
		err := temporary(name, "timeout", true)
		r.count(typ, "miss", err)
		return nil, err
	}
}

func temporary(name, cause string, timeout bool) *net.DNSError {
	return &net.DNSError{Err: cause, Name: name, IsTemporary: true, IsTimeout: timeout}
}

func notFound(name, cause string) *net.DNSError {
	return &net.DNSError{Err: cause, Name: name, IsNotFound: true}
}

// resolve asks the servers in turn and caches what it gets. Each query is
// bounded by Timeout, so the whole by Timeout times the servers.
func (r *Cached) resolve(ctx context.Context, key, name string, qtype uint16) ([]dns.RR, error) {
	var lastErr error
	for _, server := range r.servers {
		rrs, ttl, err := r.query(ctx, server, name, qtype)
		if err == nil || isNotFound(err) {
			r.store(key, rrs, err, ttl)
			return rrs, err
		}
		lastErr = err
	}
	r.store(key, nil, lastErr, r.opts.FailureTTL)
	return nil, lastErr
}

func (r *Cached) count(typ, cache string, err error) {
	if r.opts.Metrics == nil {
		return
	}
	outcome := "answer"
	switch {
	case isNotFound(err):
		outcome = "negative"
	case err != nil:
		outcome = "failure"
	}
	r.opts.Metrics.Lookups.WithLabelValues(typ, cache, outcome).Inc()
}

func (r *Cached) query(ctx context.Context, server, name string, qtype uint16) ([]dns.RR, time.Duration, error) {
	fqdn := dns.Fqdn(name)
	m := new(dns.Msg)
	m.SetQuestion(fqdn, qtype)
	m.SetEdns0(1232, false)

	qctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	c := &dns.Client{Net: "udp", Timeout: r.opts.Timeout}
	resp, _, err := c.ExchangeContext(qctx, m, server)
	if err == nil && resp.Truncated {
		c.Net = "tcp"
		resp, _, err = c.ExchangeContext(qctx, m, server)
	}
	if err != nil {
		var ne net.Error
		if qctx.Err() != nil || (errors.As(err, &ne) && ne.Timeout()) {
			return nil, 0, temporary(name, "timeout", true)
		}
		return nil, 0, temporary(name, err.Error(), false)
	}
	switch resp.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, r.negativeTTL(resp), notFound(name, "NXDOMAIN")
	default:
		return nil, 0, temporary(name, dns.RcodeToString[resp.Rcode], false)
	}
	// follow a CNAME chain inside the answer section
	owner := fqdn
	if len(resp.Question) == 1 && strings.EqualFold(txtBytes(resp.Question[0].Name), fqdn) {
		// the name as miekg/dns writes the answers' names: a name with
		// a space or other odd byte (an SPF macro of a local part) comes
		// back escaped
		owner = resp.Question[0].Name
	}
	for range 8 {
		next := ""
		for _, rr := range resp.Answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, owner) {
				next = c.Target
			}
		}
		if next == "" {
			break
		}
		owner = next
	}
	var rrs []dns.RR
	var ttl uint32
	for _, rr := range resp.Answer {
		h := rr.Header()
		if h.Rrtype != qtype || !strings.EqualFold(h.Name, owner) {
			continue
		}
		if len(rrs) == 0 || h.Ttl < ttl {
			ttl = h.Ttl
		}
		rrs = append(rrs, rr)
	}
	if len(rrs) == 0 {
		return nil, r.negativeTTL(resp), notFound(name, "no "+dns.TypeToString[qtype]+" record")
	}
	return rrs, time.Duration(ttl) * time.Second, nil
}

// negativeTTL follows RFC 2308 §5: the smaller of the SOA's TTL and its
// MINIMUM field.
func (r *Cached) negativeTTL(resp *dns.Msg) time.Duration {
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
		}
	}
	return r.opts.NegativeTTL
}

func (r *Cached) cached(key string) ([]dns.RR, error, bool) {
	if r.opts.CacheSize < 0 {
		return nil, nil, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	el, ok := r.cache[key]
	if !ok {
		return nil, nil, false
	}
	e := el.Value.(*entry)
	if !r.opts.Now().Before(e.expires) {
		r.lru.Remove(el)
		delete(r.cache, key)
		return nil, nil, false
	}
	r.lru.MoveToFront(el)
	return e.rrs, e.err, true
}

func (r *Cached) store(key string, rrs []dns.RR, err error, ttl time.Duration) {
	if r.opts.CacheSize < 0 || ttl <= 0 {
		return
	}
	ttl = min(ttl, r.opts.MaxTTL)
	r.mu.Lock()
	defer r.mu.Unlock()
	e := &entry{key: key, rrs: rrs, err: err, expires: r.opts.Now().Add(ttl)}
	if el, ok := r.cache[key]; ok {
		el.Value = e
		r.lru.MoveToFront(el)
		return
	}
	r.cache[key] = r.lru.PushFront(e)
	for r.lru.Len() > r.opts.CacheSize {
		last := r.lru.Back()
		r.lru.Remove(last)
		delete(r.cache, last.Value.(*entry).key)
	}
}
