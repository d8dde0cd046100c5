package spf

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/dnstest"
	"github.com/tollgate/tollgate/internal/resolver"
)

// BenchmarkCheckCached is one message's SPF check with every answer in the
// resolver's cache (the common case for busy senders): a record with an
// include, an mx and an ip4 list, the grammar check of both records included.
func BenchmarkCheckCached(b *testing.B) {
	srv := dnstest.Start(b)
	srv.Set("bench.example", &dnstest.Zone{RRs: []string{`TXT "v=spf1 mx include:_spf.bench.example ~all"`, "MX 10 mx.bench.example."}})
	srv.Set("mx.bench.example", &dnstest.Zone{RRs: []string{"A 198.51.100.1"}})
	srv.Set("_spf.bench.example", &dnstest.Zone{RRs: []string{`TXT "v=spf1 ip4:203.0.113.0/24 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all"`}})
	res := resolver.New(resolver.Options{Server: srv.Addr, Timeout: time.Second})
	req := Request{IP: netip.MustParseAddr("192.0.2.7"), Helo: "client.example", Sender: "a@bench.example", Identity: IdentityMailFrom, Receiver: "mx.example.org"}
	if o := Check(b.Context(), res, req); o.Result != ResultPass {
		b.Fatalf("%+v", o)
	}
	b.ReportAllocs()
	for b.Loop() {
		if o := Check(b.Context(), res, req); o.Result != ResultPass {
			b.Fatalf("%+v", o)
		}
	}
}
