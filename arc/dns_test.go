package arc

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// dnsZone is what the in-process test server answers for one name.
type dnsZone struct {
	txt     [][]string // one entry per record, each split in character-strings
	ttl     uint32
	rcode   int  // non-zero: answer with this rcode
	nodata  bool // NOERROR without answers
	silent  bool // never answer (timeout)
	soaTTL  uint32
	cname   string
	queries atomic.Int32
}

// testDNSServer is a miekg/dns server on 127.0.0.1, UDP and TCP on the
// same port.
type testDNSServer struct {
	addr  string
	mu    sync.Mutex
	zones map[string]*dnsZone
	tcp   atomic.Int32
}

func newTestDNSServer(t testing.TB) *testDNSServer {
	t.Helper()
	s := &testDNSServer{zones: map[string]*dnsZone{}}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	s.addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(s.serve)
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: ln, Handler: h}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() {
		udp.Shutdown()
		tcp.Shutdown()
	})
	return s
}

func (s *testDNSServer) set(name string, z *dnsZone) *dnsZone {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.zones[dns.Fqdn(name)] = z
	return z
}

func (s *testDNSServer) serve(w dns.ResponseWriter, req *dns.Msg) {
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		s.tcp.Add(1)
	}
	q := req.Question[0]
	s.mu.Lock()
	z := s.zones[strings.ToLower(q.Name)]
	s.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(req)
	if z == nil {
		m.Rcode = dns.RcodeNameError
		w.WriteMsg(m)
		return
	}
	z.queries.Add(1)
	soa := &dns.SOA{Hdr: dns.RR_Header{Name: "example.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: z.soaTTL},
		Ns: "ns.example.", Mbox: "h.example.", Serial: 1, Refresh: 1, Retry: 1, Expire: 1, Minttl: z.soaTTL}
	switch {
	case z.silent:
		return
	case z.rcode != 0:
		m.Rcode = z.rcode
		if z.rcode == dns.RcodeNameError && z.soaTTL > 0 {
			m.Ns = append(m.Ns, soa)
		}
	case z.nodata:
		if z.soaTTL > 0 {
			m.Ns = append(m.Ns, soa)
		}
	default:
		owner := q.Name
		if z.cname != "" {
			m.Answer = append(m.Answer, &dns.CNAME{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: z.ttl}, Target: dns.Fqdn(z.cname)})
			owner = dns.Fqdn(z.cname)
		}
		for _, txt := range z.txt {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: z.ttl}, Txt: txt})
		}
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		m.Truncate(512)
	}
	w.WriteMsg(m)
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestDNSResolver(t *testing.T) {
	srv := newTestDNSServer(t)
	clock := &fakeClock{now: t0}
	r := NewDNSResolver(DNSOptions{Server: srv.addr, Timeout: 300 * time.Millisecond, Now: clock.Now})
	ctx := context.Background()

	t.Run("strings of a record are joined, records kept apart", func(t *testing.T) {
		srv.set("multi.example", &dnsZone{ttl: 60, txt: [][]string{{"v=DKIM1; ", "p=abc"}, {"second"}}})
		got, err := r.LookupTXT(ctx, "multi.example")
		if err != nil || len(got) != 2 || got[0] != "v=DKIM1; p=abc" || got[1] != "second" {
			t.Fatalf("%q %v", got, err)
		}
	})
	t.Run("NXDOMAIN is permanent and cached for the SOA minimum", func(t *testing.T) {
		z := srv.set("gone.example", &dnsZone{rcode: dns.RcodeNameError, soaTTL: 30})
		_, err := r.LookupTXT(ctx, "gone.example")
		if !errors.Is(err, ErrPermDNS) || errors.Is(err, ErrTempDNS) {
			t.Fatalf("%v", err)
		}
		r.LookupTXT(ctx, "gone.example")
		if n := z.queries.Load(); n != 1 {
			t.Fatalf("%d queries, want 1 (cached)", n)
		}
		clock.Add(31 * time.Second)
		r.LookupTXT(ctx, "gone.example")
		if n := z.queries.Load(); n != 2 {
			t.Fatalf("%d queries after the SOA minimum, want 2", n)
		}
	})
	t.Run("no data is permanent", func(t *testing.T) {
		srv.set("empty.example", &dnsZone{nodata: true})
		if _, err := r.LookupTXT(ctx, "empty.example"); !errors.Is(err, ErrPermDNS) {
			t.Fatalf("%v", err)
		}
	})
	t.Run("SERVFAIL is temporary and cached for FailureTTL", func(t *testing.T) {
		z := srv.set("broken.example", &dnsZone{rcode: dns.RcodeServerFailure})
		_, err := r.LookupTXT(ctx, "broken.example")
		if !errors.Is(err, ErrTempDNS) || err.Error() != "dns: temporary failure for broken.example (SERVFAIL)" {
			t.Fatalf("%v", err)
		}
		_, err = r.LookupTXT(ctx, "broken.example")
		if n := z.queries.Load(); n != 1 || !errors.Is(err, ErrTempDNS) {
			t.Fatalf("%d queries, want 1; %v", n, err)
		}
		clock.Add(DefaultFailureTTL)
		r.LookupTXT(ctx, "broken.example")
		if n := z.queries.Load(); n != 2 {
			t.Fatalf("%d queries after FailureTTL, want 2", n)
		}
	})
	t.Run("NXDOMAIN without SOA is kept for NegativeTTL, a long SOA minimum capped by MaxTTL", func(t *testing.T) {
		bare := srv.set("bare.example", &dnsZone{rcode: dns.RcodeNameError})
		long := srv.set("long.example", &dnsZone{nodata: true, soaTTL: 86400})
		for range 2 {
			r.LookupTXT(ctx, "bare.example")
			r.LookupTXT(ctx, "long.example")
		}
		clock.Add(59 * time.Second)
		r.LookupTXT(ctx, "bare.example")
		if bare.queries.Load() != 1 {
			t.Fatalf("bare NXDOMAIN asked %d times within a minute", bare.queries.Load())
		}
		clock.Add(time.Hour)
		r.LookupTXT(ctx, "bare.example")
		r.LookupTXT(ctx, "long.example")
		if bare.queries.Load() != 2 || long.queries.Load() != 2 {
			t.Fatalf("after an hour: bare asked %d times, long %d; want 2 each", bare.queries.Load(), long.queries.Load())
		}
	})
	t.Run("timeout is temporary", func(t *testing.T) {
		srv.set("slow.example", &dnsZone{silent: true})
		start := time.Now()
		_, err := r.LookupTXT(ctx, "slow.example")
		if !errors.Is(err, ErrTempDNS) || !strings.Contains(err.Error(), "timeout") {
			t.Fatalf("%v", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("took %v", d)
		}
	})
	t.Run("a timeout is cached too", func(t *testing.T) {
		z := srv.set("hang.example", &dnsZone{silent: true})
		for range 3 {
			if _, err := r.LookupTXT(ctx, "hang.example"); !errors.Is(err, ErrTempDNS) {
				t.Fatalf("%v", err)
			}
		}
		if n := z.queries.Load(); n != 1 {
			t.Fatalf("%d queries, want 1", n)
		}
	})
	t.Run("the caller's deadline wins", func(t *testing.T) {
		srv.set("slow2.example", &dnsZone{silent: true})
		slow := NewDNSResolver(DNSOptions{Server: srv.addr, Timeout: time.Minute})
		cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		if _, err := slow.LookupTXT(cctx, "slow2.example"); !errors.Is(err, ErrTempDNS) {
			t.Fatalf("%v", err)
		}
	})
	t.Run("answers live for their TTL", func(t *testing.T) {
		z := srv.set("ttl.example", &dnsZone{ttl: 100, txt: [][]string{{"one"}}})
		for range 3 {
			r.LookupTXT(ctx, "ttl.example")
		}
		if n := z.queries.Load(); n != 1 {
			t.Fatalf("%d queries, want 1", n)
		}
		clock.Add(99 * time.Second)
		r.LookupTXT(ctx, "TTL.example.")
		if n := z.queries.Load(); n != 1 {
			t.Fatalf("%d queries before expiry, want 1", n)
		}
		clock.Add(2 * time.Second)
		r.LookupTXT(ctx, "ttl.example")
		if n := z.queries.Load(); n != 2 {
			t.Fatalf("%d queries after expiry, want 2", n)
		}
	})
	t.Run("truncated answers are fetched over TCP", func(t *testing.T) {
		long := strings.Repeat("x", 250)
		srv.set("big.example", &dnsZone{ttl: 60, txt: [][]string{{long, long, long}}})
		got, err := r.LookupTXT(ctx, "big.example")
		if err != nil || len(got) != 1 || len(got[0]) != 750 || srv.tcp.Load() == 0 {
			t.Fatalf("%d records, %v, tcp queries %d", len(got), err, srv.tcp.Load())
		}
	})
	t.Run("CNAME", func(t *testing.T) {
		srv.set("alias.example", &dnsZone{ttl: 60, cname: "target.example", txt: [][]string{{"via cname"}}})
		got, err := r.LookupTXT(ctx, "alias.example")
		if err != nil || len(got) != 1 || got[0] != "via cname" {
			t.Fatalf("%q %v", got, err)
		}
	})
}

func TestDNSCacheBounded(t *testing.T) {
	srv := newTestDNSServer(t)
	r := NewDNSResolver(DNSOptions{Server: srv.addr, CacheSize: 2})
	zs := map[string]*dnsZone{}
	for _, n := range []string{"a.example", "b.example", "c.example"} {
		zs[n] = srv.set(n, &dnsZone{ttl: 3600, txt: [][]string{{n}}})
	}
	ctx := context.Background()
	for _, n := range []string{"a.example", "b.example", "c.example", "a.example", "c.example"} {
		if _, err := r.LookupTXT(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if r.lru.Len() != 2 {
		t.Fatalf("cache holds %d", r.lru.Len())
	}
	if zs["a.example"].queries.Load() != 2 || zs["c.example"].queries.Load() != 1 {
		t.Fatalf("a asked %d times (want 2: evicted), c %d (want 1)", zs["a.example"].queries.Load(), zs["c.example"].queries.Load())
	}
}

func TestDNSResolvConf(t *testing.T) {
	r := NewDNSResolver(DNSOptions{ResolvConf: filepath.Join(t.TempDir(), "missing")})
	_, err := r.LookupTXT(context.Background(), "x.example")
	if !errors.Is(err, ErrTempDNS) {
		t.Fatalf("%v", err)
	}
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(conf, []byte("nameserver 127.0.0.1\nnameserver ::1\n"), 0o644)
	r = NewDNSResolver(DNSOptions{ResolvConf: conf})
	if len(r.servers) != 2 || r.servers[0] != "127.0.0.1:53" || r.servers[1] != "[::1]:53" {
		t.Fatalf("servers %q", r.servers)
	}
}

// TestVerifyThroughDNS runs a whole verification against the loopback
// server: several TXT records at the key name, one of them the key.
func TestVerifyThroughDNS(t *testing.T) {
	srv := newTestDNSServer(t)
	keys := mapResolver{}
	hs, body := parseMessage(plainMessage)
	k := testKey(keys, "hop1")
	m := mustSealHop(t, keys, hs, body, k, t0, nil)
	rec := keys["sel._domainkey.hop1.example"][0]
	var parts []string
	for len(rec) > 0 {
		n := min(255, len(rec))
		parts, rec = append(parts, rec[:n]), rec[n:]
	}
	srv.set("sel._domainkey.hop1.example", &dnsZone{ttl: 300, txt: [][]string{{"google-site-verification=abc"}, parts}})
	res := NewDNSResolver(DNSOptions{Server: srv.addr, Timeout: time.Second})
	if r := verifyAt(res, m, body, t0); r.State != StatePass {
		t.Fatalf("%+v", r)
	}
	srv.set("sel._domainkey.hop1.example", &dnsZone{rcode: dns.RcodeServerFailure})
	res = NewDNSResolver(DNSOptions{Server: srv.addr, Timeout: time.Second})
	if r := verifyAt(res, m, body, t0); r.State != StateFail || !r.Temporary {
		t.Fatalf("%+v", r)
	}
}

// TestDNSFailureCacheOff: FailureTTL < 0 asks again every time.
func TestDNSFailureCacheOff(t *testing.T) {
	srv := newTestDNSServer(t)
	z := srv.set("broken.example", &dnsZone{rcode: dns.RcodeServerFailure})
	r := NewDNSResolver(DNSOptions{Server: srv.addr, FailureTTL: -1})
	for range 3 {
		r.LookupTXT(context.Background(), "broken.example")
	}
	if n := z.queries.Load(); n != 3 {
		t.Fatalf("%d queries, want 3", n)
	}
}

// TestDNSFlightOutlivesCaller: a caller that gives up early does not cut
// the shared query short; the next caller finds its answer cached.
func TestDNSFlightOutlivesCaller(t *testing.T) {
	srv := newTestDNSServer(t)
	z := srv.set("hang.example", &dnsZone{silent: true})
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	r := NewDNSResolver(DNSOptions{Server: srv.addr, Timeout: 300 * time.Millisecond, Lookups: m.DNS})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := r.LookupTXT(ctx, "hang.example"); !errors.Is(err, ErrTempDNS) {
		t.Fatalf("%v", err)
	}
	// the same name again, with time enough: it joins the query in flight
	if _, err := r.LookupTXT(context.Background(), "hang.example"); !errors.Is(err, ErrTempDNS) {
		t.Fatalf("%v", err)
	}
	if _, err := r.LookupTXT(context.Background(), "hang.example"); !errors.Is(err, ErrTempDNS) {
		t.Fatalf("%v", err)
	}
	if n := z.queries.Load(); n != 1 {
		t.Fatalf("%d queries, want 1", n)
	}
	if miss, hit := testutil.ToFloat64(m.DNS.WithLabelValues("miss", "failure")), testutil.ToFloat64(m.DNS.WithLabelValues("hit", "failure")); miss != 2 || hit != 1 {
		t.Fatalf("metric: %v misses, %v hits; want 2 and 1", miss, hit)
	}
}

// TestVerifyHangingResolver: concurrent verifications of messages from one
// signer, against a server that never answers, cost one query (one
// timeout) per name and FailureTTL, not one per message; and every one of
// them is a temporary fail, as before.
func TestVerifyHangingResolver(t *testing.T) {
	srv := newTestDNSServer(t)
	keys := mapResolver{}
	hs, body := parseMessage(plainMessage)
	m := mustSealHop(t, keys, hs, body, testKey(keys, "hop1"), t0, nil)
	z := srv.set("sel._domainkey.hop1.example", &dnsZone{silent: true})
	clock := &fakeClock{now: t0}
	res := NewDNSResolver(DNSOptions{Server: srv.addr, Timeout: 200 * time.Millisecond, Now: clock.Now})
	const sessions = 32
	batch := func() {
		var wg sync.WaitGroup
		for range sessions {
			wg.Go(func() {
				if r := verifyAt(res, m, body, t0); r.State != StateFail || !r.Temporary || !strings.Contains(r.Reason, "timeout") {
					t.Errorf("%+v", r)
				}
			})
		}
		wg.Wait()
	}
	batch()
	batch()
	if n := z.queries.Load(); n != 1 {
		t.Fatalf("%d queries for %d messages, want 1", n, 2*sessions)
	}
	clock.Add(DefaultFailureTTL)
	batch()
	if n := z.queries.Load(); n != 2 {
		t.Fatalf("%d queries after FailureTTL, want 2", n)
	}
	// the resolver is back: the first lookup after the period passes
	var parts []string
	for rec := keys["sel._domainkey.hop1.example"][0]; len(rec) > 0; {
		n := min(255, len(rec))
		parts, rec = append(parts, rec[:n]), rec[n:]
	}
	srv.set("sel._domainkey.hop1.example", &dnsZone{ttl: 300, txt: [][]string{parts}})
	clock.Add(DefaultFailureTTL)
	if r := verifyAt(res, m, body, t0); r.State != StatePass {
		t.Fatalf("%+v", r)
	}
}
