package arc

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
)

// Resolver looks up TXT records: one string per record, the
// character-strings of a record concatenated (RFC 6376 §3.6.2.2). Errors
// must match ErrTempDNS or ErrPermDNS with errors.Is; anything else counts
// as temporary.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

var (
	// ErrTempDNS: the answer could not be had now (timeout, SERVFAIL,
	// REFUSED, network error); trying later may work.
	ErrTempDNS = errors.New("dns: temporary failure")
	// ErrPermDNS: the name has no TXT record (NXDOMAIN or no data).
	ErrPermDNS = errors.New("dns: no record")
)

// DNSError is the error of a failed lookup.
type DNSError struct {
	Name      string
	Temporary bool
	Cause     string // e.g. "SERVFAIL", "NXDOMAIN", "i/o timeout"
}

func (e *DNSError) Error() string {
	s := ErrPermDNS.Error() + " at "
	if e.Temporary {
		s = ErrTempDNS.Error() + " for "
	}
	s += e.Name
	if e.Cause != "" {
		s += " (" + e.Cause + ")"
	}
	return s
}

func (e *DNSError) Is(target error) bool {
	return (target == ErrTempDNS && e.Temporary) || (target == ErrPermDNS && !e.Temporary)
}

// DNSOptions configures a DNSResolver.
type DNSOptions struct {
	// Server is "host:port" of a recursive resolver; "" reads the
	// nameservers of ResolvConf and tries them in order.
	Server string
	// ResolvConf defaults to /etc/resolv.conf.
	ResolvConf string
	// Timeout bounds each query to one server; default 5s. The caller's
	// context bounds the whole lookup.
	Timeout time.Duration
	// CacheSize is the number of names kept; default 4096, negative
	// disables the cache.
	CacheSize int
	// MaxTTL caps how long an answer is kept; default 1h.
	MaxTTL time.Duration
	// NegativeTTL is used for NXDOMAIN and no-data answers that carry no
	// SOA; default 60s. Those with a SOA are kept for its MINIMUM or TTL,
	// whichever is smaller (RFC 2308 §5), capped by MaxTTL.
	NegativeTTL time.Duration
	// FailureTTL is how long a temporary failure (timeout, SERVFAIL,
	// REFUSED, network error) is remembered, so that a resolver that
	// hangs costs one timeout per name and period instead of one per
	// message; default 5s, negative disables. RFC 2308 §7 allows up to
	// five minutes.
	FailureTTL time.Duration
	// Lookups, if set, counts lookups with the labels cache (hit, miss)
	// and outcome (answer, negative, failure).
	Lookups *prometheus.CounterVec
	// Now is the clock of the cache; default time.Now.
	Now func() time.Time
}

// DNSResolver is a Resolver built on github.com/miekg/dns with a small
// LRU cache that keeps answers (and NXDOMAIN/no-data, RFC 2308) for their
// TTL and temporary failures for FailureTTL. Concurrent lookups of one
// name share one query. Safe for concurrent use.
type DNSResolver struct {
	opts    DNSOptions
	servers []string
	confErr error
	flight  singleflight.Group

	mu    sync.Mutex
	lru   *list.List // of *cacheEntry, most recent first
	cache map[string]*list.Element
}

type cacheEntry struct {
	name    string
	txt     []string
	err     error
	expires time.Time
}

// DefaultFailureTTL is DNSOptions.FailureTTL when unset: short enough
// that a resolver back from an outage is used again within seconds.
const DefaultFailureTTL = 5 * time.Second

// DefaultDNSTimeout bounds one query when DNSOptions.Timeout is not set.
const DefaultDNSTimeout = 5 * time.Second

// NewDNSResolver returns a resolver; a resolv.conf that cannot be read
// makes every lookup a temporary failure naming the problem.
func NewDNSResolver(opts DNSOptions) *DNSResolver {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultDNSTimeout
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = 4096
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
	r := &DNSResolver{opts: opts, lru: list.New(), cache: map[string]*list.Element{}}
	if opts.Server != "" {
		r.servers = []string{opts.Server}
	} else {
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
	}
	return r
}

// LookupTXT implements Resolver. The query runs apart from ctx, shared by
// every caller that asks for the name meanwhile: a caller whose deadline
// passes gets a timeout, and the query goes on to fill the cache for the
// others.
func (r *DNSResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if txt, err, ok := r.cached(name); ok {
		r.count("hit", err)
		return txt, err
	}
	if r.confErr != nil {
		err := &DNSError{Name: name, Temporary: true, Cause: r.confErr.Error()}
		r.count("miss", err)
		return nil, err
	}
	ch := r.flight.DoChan(name, func() (any, error) {
		return r.resolve(context.WithoutCancel(ctx), name)
	})
	select {
	case res := <-ch:
		txt, _ := res.Val.([]string)
		r.count("miss", res.Err)
		return txt, res.Err
	case <-ctx.Done():
		err := &DNSError{Name: name, Temporary: true, Cause: "timeout"}
		r.count("miss", err)
		return nil, err
	}
}

// resolve asks the servers in turn and caches what it gets. Each query is
// bounded by Timeout, so the whole by Timeout times the servers.
func (r *DNSResolver) resolve(ctx context.Context, name string) ([]string, error) {
	var lastErr error
	for _, server := range r.servers {
		txt, ttl, err := r.query(ctx, server, name)
		var de *DNSError
		if err == nil || (errors.As(err, &de) && !de.Temporary) {
			r.store(name, txt, err, ttl)
			return txt, err
		}
		lastErr = err
	}
	r.store(name, nil, lastErr, r.opts.FailureTTL)
	return nil, lastErr
}

func (r *DNSResolver) count(cache string, err error) {
	if r.opts.Lookups == nil {
		return
	}
	outcome := "answer"
	switch {
	case errors.Is(err, ErrPermDNS):
		outcome = "negative"
	case err != nil:
		outcome = "failure"
	}
	r.opts.Lookups.WithLabelValues(cache, outcome).Inc()
}

func (r *DNSResolver) query(ctx context.Context, server, name string) ([]string, time.Duration, error) {
	fqdn := dns.Fqdn(name)
	m := new(dns.Msg)
	m.SetQuestion(fqdn, dns.TypeTXT)
	m.SetEdns0(1232, false)
	temp := func(cause string) error { return &DNSError{Name: name, Temporary: true, Cause: cause} }

	qctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	c := &dns.Client{Net: "udp", Timeout: r.opts.Timeout}
	resp, _, err := c.ExchangeContext(qctx, m, server)
	if err == nil && resp.Truncated {
		c.Net = "tcp"
		resp, _, err = c.ExchangeContext(qctx, m, server)
	}
	if err != nil {
		if qctx.Err() != nil {
			return nil, 0, temp("timeout")
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, 0, temp("timeout")
		}
		return nil, 0, temp(err.Error())
	}
	switch resp.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, r.negativeTTL(resp), &DNSError{Name: name, Cause: "NXDOMAIN"}
	default:
		return nil, 0, temp(dns.RcodeToString[resp.Rcode])
	}
	// follow a CNAME chain inside the answer section
	owner := fqdn
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
	var txt []string
	var ttl uint32
	for _, rr := range resp.Answer {
		t, ok := rr.(*dns.TXT)
		if !ok || !strings.EqualFold(t.Hdr.Name, owner) {
			continue
		}
		if len(txt) == 0 || t.Hdr.Ttl < ttl {
			ttl = t.Hdr.Ttl
		}
		txt = append(txt, strings.Join(t.Txt, ""))
	}
	if len(txt) == 0 {
		return nil, r.negativeTTL(resp), &DNSError{Name: name, Cause: "no TXT record"}
	}
	return txt, time.Duration(ttl) * time.Second, nil
}

// negativeTTL follows RFC 2308 §5: the smaller of the SOA's TTL and its
// MINIMUM field.
func (r *DNSResolver) negativeTTL(resp *dns.Msg) time.Duration {
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
		}
	}
	return r.opts.NegativeTTL
}

func (r *DNSResolver) cached(name string) ([]string, error, bool) {
	if r.opts.CacheSize < 0 {
		return nil, nil, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	el, ok := r.cache[name]
	if !ok {
		return nil, nil, false
	}
	e := el.Value.(*cacheEntry)
	if !r.opts.Now().Before(e.expires) {
		r.lru.Remove(el)
		delete(r.cache, name)
		return nil, nil, false
	}
	r.lru.MoveToFront(el)
	return e.txt, e.err, true
}

func (r *DNSResolver) store(name string, txt []string, err error, ttl time.Duration) {
	if r.opts.CacheSize < 0 || ttl <= 0 {
		return
	}
	ttl = min(ttl, r.opts.MaxTTL)
	r.mu.Lock()
	defer r.mu.Unlock()
	e := &cacheEntry{name: name, txt: txt, err: err, expires: r.opts.Now().Add(ttl)}
	if el, ok := r.cache[name]; ok {
		el.Value = e
		r.lru.MoveToFront(el)
		return
	}
	r.cache[name] = r.lru.PushFront(e)
	for r.lru.Len() > r.opts.CacheSize {
		last := r.lru.Back()
		r.lru.Remove(last)
		delete(r.cache, last.Value.(*cacheEntry).name)
	}
}
