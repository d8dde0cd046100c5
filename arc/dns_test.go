package arc

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/dnstest"
	"github.com/tollgate/tollgate/internal/resolver"

	"github.com/miekg/dns"
)

// TestVerifyThroughDNS runs a whole verification against the loopback
// server: several TXT records at the key name, one of them the key.
func TestVerifyThroughDNS(t *testing.T) {
	srv := dnstest.Start(t)
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
	srv.Set("sel._domainkey.hop1.example", &dnstest.Zone{TTL: 300, TXT: [][]string{{"google-site-verification=abc"}, parts}})
	res := resolver.New(resolver.Options{Server: srv.Addr, Timeout: time.Second})
	if r := verifyAt(res, m, body, t0); r.State != StatePass {
		t.Fatalf("%+v", r)
	}
	srv.Set("sel._domainkey.hop1.example", &dnstest.Zone{Rcode: dns.RcodeServerFailure})
	res = resolver.New(resolver.Options{Server: srv.Addr, Timeout: time.Second})
	if r := verifyAt(res, m, body, t0); r.State != StateFail || !r.Temporary {
		t.Fatalf("%+v", r)
	}
}

// TestVerifyHangingResolver: concurrent verifications of messages from one
// signer, against a server that never answers, cost one query (one
// timeout) per name and FailureTTL, not one per message; and every one of
// them is a temporary fail, as before.
func TestVerifyHangingResolver(t *testing.T) {
	srv := dnstest.Start(t)
	keys := mapResolver{}
	hs, body := parseMessage(plainMessage)
	m := mustSealHop(t, keys, hs, body, testKey(keys, "hop1"), t0, nil)
	z := srv.Set("sel._domainkey.hop1.example", &dnstest.Zone{Silent: true})
	clock := dnstest.NewClock(t0)
	res := resolver.New(resolver.Options{Server: srv.Addr, Timeout: 200 * time.Millisecond, Now: clock.Now})
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
	if n := z.Queries(); n != 1 {
		t.Fatalf("%d queries for %d messages, want 1", n, 2*sessions)
	}
	clock.Add(resolver.DefaultFailureTTL)
	batch()
	if n := z.Queries(); n != 2 {
		t.Fatalf("%d queries after FailureTTL, want 2", n)
	}
	// the resolver is back: the first lookup after the period passes
	var parts []string
	for rec := keys["sel._domainkey.hop1.example"][0]; len(rec) > 0; {
		n := min(255, len(rec))
		parts, rec = append(parts, rec[:n]), rec[n:]
	}
	srv.Set("sel._domainkey.hop1.example", &dnstest.Zone{TTL: 300, TXT: [][]string{parts}})
	clock.Add(resolver.DefaultFailureTTL)
	if r := verifyAt(res, m, body, t0); r.State != StatePass {
		t.Fatalf("%+v", r)
	}
}
