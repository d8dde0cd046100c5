package resolver

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tollgate/tollgate/internal/dnstest"
)

var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

func isTemporary(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && (de.IsTemporary || de.IsTimeout)
}

func TestResolver(t *testing.T) {
	srv := dnstest.Start(t)
	srv.UDPSize = 512 // the truncation case below
	clock := dnstest.NewClock(t0)
	r := New(Options{Server: srv.Addr, Timeout: 300 * time.Millisecond, Now: clock.Now})
	ctx := context.Background()

	t.Run("strings of a record are joined, records kept apart", func(t *testing.T) {
		srv.Set("multi.example", &dnstest.Zone{TTL: 60, TXT: [][]string{{"v=DKIM1; ", "p=abc"}, {"second"}}})
		got, err := r.LookupTXT(ctx, "multi.example")
		if err != nil || len(got) != 2 || got[0] != "v=DKIM1; p=abc" || got[1] != "second" {
			t.Fatalf("%q %v", got, err)
		}
	})
	t.Run("TXT strings come back as the bytes sent", func(t *testing.T) {
		// miekg/dns writes \DDD, \" and \\ for these; a parser must see the bytes
		srv.Set("bytes.example", &dnstest.Zone{TTL: 60, TXT: [][]string{{"v=spf1 \x80a:x \r\"q\" \\\\ \\065", "\xef\xbb\xbf"}}})
		got, err := r.LookupTXT(ctx, "bytes.example")
		if want := "v=spf1 \x80a:x \r\"q\" \\ A\xef\xbb\xbf"; err != nil || len(got) != 1 || got[0] != want {
			t.Fatalf("%q %v, want %q", got, err, want)
		}
	})
	t.Run("a name with a space is answered", func(t *testing.T) {
		// SPF macros put a sender's local part into names
		srv.Set(`a\ \ b%20c.example`, &dnstest.Zone{TTL: 60, RRs: []string{"A 192.0.2.9"}})
		got, err := r.LookupIP(ctx, "ip4", "a  b%20c.example")
		if err != nil || len(got) != 1 || !got[0].Equal(net.ParseIP("192.0.2.9")) {
			t.Fatalf("%v %v", got, err)
		}
	})
	t.Run("NXDOMAIN is permanent and cached for the SOA minimum", func(t *testing.T) {
		z := srv.Set("gone.example", &dnstest.Zone{Rcode: dns.RcodeNameError, SOATTL: 30})
		_, err := r.LookupTXT(ctx, "gone.example")
		if !isNotFound(err) || isTemporary(err) {
			t.Fatalf("%v", err)
		}
		r.LookupTXT(ctx, "gone.example")
		if n := z.Queries(); n != 1 {
			t.Fatalf("%d queries, want 1 (cached)", n)
		}
		clock.Add(31 * time.Second)
		r.LookupTXT(ctx, "gone.example")
		if n := z.Queries(); n != 2 {
			t.Fatalf("%d queries after the SOA minimum, want 2", n)
		}
	})
	t.Run("no data is permanent", func(t *testing.T) {
		srv.Set("empty.example", &dnstest.Zone{NoData: true})
		if _, err := r.LookupTXT(ctx, "empty.example"); !isNotFound(err) {
			t.Fatalf("%v", err)
		}
	})
	t.Run("SERVFAIL is temporary and cached for FailureTTL", func(t *testing.T) {
		z := srv.Set("broken.example", &dnstest.Zone{Rcode: dns.RcodeServerFailure})
		_, err := r.LookupTXT(ctx, "broken.example")
		if !isTemporary(err) || err.Error() != "lookup broken.example: SERVFAIL" {
			t.Fatalf("%v", err)
		}
		_, err = r.LookupTXT(ctx, "broken.example")
		if n := z.Queries(); n != 1 || !isTemporary(err) {
			t.Fatalf("%d queries, want 1; %v", n, err)
		}
		clock.Add(DefaultFailureTTL)
		r.LookupTXT(ctx, "broken.example")
		if n := z.Queries(); n != 2 {
			t.Fatalf("%d queries after FailureTTL, want 2", n)
		}
	})
	t.Run("NXDOMAIN without SOA is kept for NegativeTTL, a long SOA minimum capped by MaxTTL", func(t *testing.T) {
		bare := srv.Set("bare.example", &dnstest.Zone{Rcode: dns.RcodeNameError})
		long := srv.Set("long.example", &dnstest.Zone{NoData: true, SOATTL: 86400})
		for range 2 {
			r.LookupTXT(ctx, "bare.example")
			r.LookupTXT(ctx, "long.example")
		}
		clock.Add(59 * time.Second)
		r.LookupTXT(ctx, "bare.example")
		if bare.Queries() != 1 {
			t.Fatalf("bare NXDOMAIN asked %d times within a minute", bare.Queries())
		}
		clock.Add(time.Hour)
		r.LookupTXT(ctx, "bare.example")
		r.LookupTXT(ctx, "long.example")
		if bare.Queries() != 2 || long.Queries() != 2 {
			t.Fatalf("after an hour: bare asked %d times, long %d; want 2 each", bare.Queries(), long.Queries())
		}
	})
	t.Run("timeout is temporary", func(t *testing.T) {
		srv.Set("slow.example", &dnstest.Zone{Silent: true})
		start := time.Now()
		_, err := r.LookupTXT(ctx, "slow.example")
		if !isTemporary(err) || !strings.Contains(err.Error(), "timeout") {
			t.Fatalf("%v", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("took %v", d)
		}
	})
	t.Run("a timeout is cached too", func(t *testing.T) {
		z := srv.Set("hang.example", &dnstest.Zone{Silent: true})
		for range 3 {
			if _, err := r.LookupTXT(ctx, "hang.example"); !isTemporary(err) {
				t.Fatalf("%v", err)
			}
		}
		if n := z.Queries(); n != 1 {
			t.Fatalf("%d queries, want 1", n)
		}
	})
	t.Run("the caller's deadline wins", func(t *testing.T) {
		srv.Set("slow2.example", &dnstest.Zone{Silent: true})
		slow := New(Options{Server: srv.Addr, Timeout: time.Minute})
		cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		if _, err := slow.LookupTXT(cctx, "slow2.example"); !isTemporary(err) {
			t.Fatalf("%v", err)
		}
	})
	t.Run("answers live for their TTL", func(t *testing.T) {
		z := srv.Set("ttl.example", &dnstest.Zone{TTL: 100, TXT: [][]string{{"one"}}})
		for range 3 {
			r.LookupTXT(ctx, "ttl.example")
		}
		if n := z.Queries(); n != 1 {
			t.Fatalf("%d queries, want 1", n)
		}
		clock.Add(99 * time.Second)
		r.LookupTXT(ctx, "TTL.example.")
		if n := z.Queries(); n != 1 {
			t.Fatalf("%d queries before expiry, want 1", n)
		}
		clock.Add(2 * time.Second)
		r.LookupTXT(ctx, "ttl.example")
		if n := z.Queries(); n != 2 {
			t.Fatalf("%d queries after expiry, want 2", n)
		}
	})
	t.Run("truncated answers are fetched over TCP", func(t *testing.T) {
		long := strings.Repeat("x", 250)
		srv.Set("big.example", &dnstest.Zone{TTL: 60, TXT: [][]string{{long, long, long}}})
		got, err := r.LookupTXT(ctx, "big.example")
		if err != nil || len(got) != 1 || len(got[0]) != 750 || srv.TCPQueries() == 0 {
			t.Fatalf("%d records, %v, tcp queries %d", len(got), err, srv.TCPQueries())
		}
	})
	t.Run("CNAME", func(t *testing.T) {
		srv.Set("alias.example", &dnstest.Zone{TTL: 60, CNAME: "target.example", TXT: [][]string{{"via cname"}}})
		got, err := r.LookupTXT(ctx, "alias.example")
		if err != nil || len(got) != 1 || got[0] != "via cname" {
			t.Fatalf("%q %v", got, err)
		}
	})
}

func TestCacheBounded(t *testing.T) {
	srv := dnstest.Start(t)
	r := New(Options{Server: srv.Addr, CacheSize: 2})
	zs := map[string]*dnstest.Zone{}
	for _, n := range []string{"a.example", "b.example", "c.example"} {
		zs[n] = srv.Set(n, &dnstest.Zone{TTL: 3600, TXT: [][]string{{n}}})
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
	if zs["a.example"].Queries() != 2 || zs["c.example"].Queries() != 1 {
		t.Fatalf("a asked %d times (want 2: evicted), c %d (want 1)", zs["a.example"].Queries(), zs["c.example"].Queries())
	}
}

func TestResolvConf(t *testing.T) {
	r := New(Options{ResolvConf: filepath.Join(t.TempDir(), "missing")})
	_, err := r.LookupTXT(context.Background(), "x.example")
	if !isTemporary(err) {
		t.Fatalf("%v", err)
	}
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(conf, []byte("nameserver 127.0.0.1\nnameserver ::1\n"), 0o644)
	r = New(Options{ResolvConf: conf})
	if len(r.servers) != 2 || r.servers[0] != "127.0.0.1:53" || r.servers[1] != "[::1]:53" {
		t.Fatalf("servers %q", r.servers)
	}
}

// TestDNSFailureCacheOff: FailureTTL < 0 asks again every time.
func TestFailureCacheOff(t *testing.T) {
	srv := dnstest.Start(t)
	z := srv.Set("broken.example", &dnstest.Zone{Rcode: dns.RcodeServerFailure})
	r := New(Options{Server: srv.Addr, FailureTTL: -1})
	for range 3 {
		r.LookupTXT(context.Background(), "broken.example")
	}
	if n := z.Queries(); n != 3 {
		t.Fatalf("%d queries, want 3", n)
	}
}

// TestDNSFlightOutlivesCaller: a caller that gives up early does not cut
// the shared query short; the next caller finds its answer cached.
func TestFlightOutlivesCaller(t *testing.T) {
	srv := dnstest.Start(t)
	z := srv.Set("hang.example", &dnstest.Zone{Silent: true})
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	r := New(Options{Server: srv.Addr, Timeout: 300 * time.Millisecond, Metrics: m})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := r.LookupTXT(ctx, "hang.example"); !isTemporary(err) {
		t.Fatalf("%v", err)
	}
	// the same name again, with time enough: it joins the query in flight
	if _, err := r.LookupTXT(context.Background(), "hang.example"); !isTemporary(err) {
		t.Fatalf("%v", err)
	}
	if _, err := r.LookupTXT(context.Background(), "hang.example"); !isTemporary(err) {
		t.Fatalf("%v", err)
	}
	if n := z.Queries(); n != 1 {
		t.Fatalf("%d queries, want 1", n)
	}
	if miss, hit := testutil.ToFloat64(m.Lookups.WithLabelValues("TXT", "miss", "failure")), testutil.ToFloat64(m.Lookups.WithLabelValues("TXT", "hit", "failure")); miss != 2 || hit != 1 {
		t.Fatalf("metric: %v misses, %v hits; want 2 and 1", miss, hit)
	}
}

// TestRecordTypes: every type the features ask for, with net.Resolver's
// result shapes and *net.DNSError errors.
func TestRecordTypes(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Set("example.org", &dnstest.Zone{RRs: []string{"MX 20 mx2.example.org.", "MX 10 mx1.example.org.", "A 192.0.2.1", "AAAA 2001:db8::1"}})
	srv.Set("v4only.example.org", &dnstest.Zone{RRs: []string{"A 192.0.2.2"}})
	srv.Set("1.2.0.192.in-addr.arpa", &dnstest.Zone{RRs: []string{"PTR mail.example.org."}})
	srv.Set("broken6.example.org", &dnstest.Zone{Rcode: dns.RcodeServerFailure})
	r := New(Options{Server: srv.Addr, Timeout: time.Second})
	ctx := context.Background()

	mx, err := r.LookupMX(ctx, "example.org")
	if err != nil || len(mx) != 2 || mx[0].Host != "mx1.example.org." || mx[0].Pref != 10 {
		t.Fatalf("MX %v %v", mx, err)
	}
	ips, err := r.LookupIP(ctx, "ip", "example.org")
	if err != nil || len(ips) != 2 || !ips[0].Equal(net.ParseIP("192.0.2.1")) || !ips[1].Equal(net.ParseIP("2001:db8::1")) {
		t.Fatalf("ip %v %v", ips, err)
	}
	if ips, err := r.LookupIP(ctx, "ip6", "v4only.example.org"); err == nil || !isNotFound(err) {
		t.Fatalf("ip6 of a v4-only name: %v %v", ips, err)
	}
	if addrs, err := r.LookupIPAddr(ctx, "v4only.example.org"); err != nil || len(addrs) != 1 {
		t.Fatalf("both types, one present: %v %v", addrs, err)
	}
	names, err := r.LookupAddr(ctx, "192.0.2.1")
	if err != nil || len(names) != 1 || names[0] != "mail.example.org." {
		t.Fatalf("PTR %v %v", names, err)
	}
	if _, err := r.LookupAddr(ctx, "not-an-ip"); err == nil {
		t.Fatal("PTR of a non-address")
	}
	if _, err := r.LookupIP(ctx, "ip4", "broken6.example.org"); !isTemporary(err) {
		t.Fatalf("SERVFAIL: %v", err)
	}
	if _, err := r.LookupMX(ctx, "missing.example.org"); !isNotFound(err) {
		t.Fatalf("NXDOMAIN: %v", err)
	}
	// a type is cached apart from another of the same name
	z := srv.Set("two.example.org", &dnstest.Zone{RRs: []string{"A 192.0.2.3", `TXT "hello"`}})
	for range 2 {
		if _, err := r.LookupIP(ctx, "ip4", "two.example.org"); err != nil {
			t.Fatal(err)
		}
		if txt, err := r.LookupTXT(ctx, "two.example.org"); err != nil || txt[0] != "hello" {
			t.Fatalf("%v %v", txt, err)
		}
	}
	if z.Queries() != 2 {
		t.Fatalf("%d queries, want 2 (one a type)", z.Queries())
	}
}

// TestNetResolverFits: the standard library's resolver is a Resolver, so
// a feature can be handed either.
func TestNetResolverFits(t *testing.T) {
	var _ Resolver = net.DefaultResolver
	var _ Resolver = (*Cached)(nil)
}
