package spf

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
)

// zoneResolver answers from a map, as the shared resolver would: unknown
// names are NXDOMAIN.
type zoneResolver struct {
	txt  map[string][]string
	ip   map[string][]net.IPAddr
	mx   map[string][]*net.MX
	ptr  map[string][]string
	asks int
}

func notFound(name string) error { return &net.DNSError{Err: "NXDOMAIN", Name: name, IsNotFound: true} }

func key(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

func (z *zoneResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	z.asks++
	if v, ok := z.txt[key(name)]; ok {
		return v, nil
	}
	return nil, notFound(name)
}

func (z *zoneResolver) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	z.asks++
	if v, ok := z.mx[key(name)]; ok {
		return v, nil
	}
	return nil, notFound(name)
}

func (z *zoneResolver) LookupIPAddr(_ context.Context, name string) ([]net.IPAddr, error) {
	z.asks++
	if v, ok := z.ip[key(name)]; ok {
		return v, nil
	}
	return nil, notFound(name)
}

func (z *zoneResolver) LookupAddr(_ context.Context, addr string) ([]string, error) {
	z.asks++
	if v, ok := z.ptr[addr]; ok {
		return v, nil
	}
	return nil, notFound(addr)
}

// FuzzRecord feeds any TXT record to the grammar check and, through a
// resolver that loops back on itself (every include, redirect, a, mx and
// exists lands on names that exist), to the whole evaluation: no panic,
// a known result, and the lookups bounded by RFC 7208 §4.6.4's limits.
func FuzzRecord(f *testing.F) {
	for _, seed := range []string{
		"v=spf1 -all", "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ~all",
		"v=spf1 a mx ptr include:loop.example exists:%{ir}.%{l1r+-}._spf.%{d} redirect=loop.example",
		"v=spf1 a:foo:bar/baz.example.com/24//64 mx/0 -all", "v=spf1 exp=%{c}.example moo.cow-2_3=%{d} ?all",
		"v=spf1 include:loop.example include:loop.example include:loop.example include:loop.example include:loop.example include:loop.example include:loop.example include:loop.example include:loop.example include:loop.example include:loop.example",
		"v=spf1 mx:mx.example mx:mx.example mx:mx.example mx:mx.example -all",
		"v=spf1 a:%{i}.%{h}.%{s}.%{o}.%{v}.%{p}.example -all", "v=spf1 \x80a:x -all", "v=spf1 ip4:1.2.3.4/033",
	} {
		f.Add(seed)
	}
	ip := netip.MustParseAddr("192.0.2.1")
	f.Fuzz(func(t *testing.T, record string) {
		if rec, err := ParseRecord(record); err == nil {
			again, err := ParseRecord(rec)
			if err != nil || again != rec {
				t.Fatalf("ParseRecord(%q) = %q, which parses to %q, %v", record, rec, again, err)
			}
		}
		mxs := make([]*net.MX, 12)
		for i := range mxs {
			mxs[i] = &net.MX{Host: "loop.example.", Pref: uint16(i)}
		}
		z := &zoneResolver{
			txt: map[string][]string{"loop.example": {record}, "mx.example": {record}},
			ip:  map[string][]net.IPAddr{"loop.example": {{IP: net.ParseIP("198.51.100.1")}}, "mx.example": {{IP: net.ParseIP("198.51.100.2")}}},
			mx:  map[string][]*net.MX{"loop.example": mxs, "mx.example": mxs},
			ptr: map[string][]string{"192.0.2.1": {"loop.example.", "mx.example."}},
		}
		o := Check(t.Context(), z, Request{IP: ip, Helo: "loop.example", Sender: "a@loop.example", Identity: IdentityMailFrom, Receiver: "mx.example.org"})
		known := false
		for _, r := range Results {
			known = known || o.Result == r
		}
		if !known {
			t.Fatalf("result %q", o.Result)
		}
		// 10 terms that look up, each MX or PTR at most 10 names more,
		// and the first record: well under 200 questions.
		if z.asks > 200 || o.Lookups != z.asks {
			t.Fatalf("%d questions (%d counted) for %q", z.asks, o.Lookups, record)
		}
		if o.ReceivedSPF(Request{IP: ip, Sender: "a@loop.example", Receiver: "mx.example.org"}) == "" {
			t.Fatal("no Received-SPF")
		}
	})
}

// FuzzReceivedSPF: whatever the client sends as sender and HELO, the
// Received-SPF value and the header comment stay one line, and the comment
// cannot be closed early by the client's bytes.
func FuzzReceivedSPF(f *testing.F) {
	f.Add("alice@example.org", "mail.example.org", uint8(0))
	f.Add(`a")(\@x`, "x\r\nX-Evil: 1", uint8(1))
	f.Add("", "[192.0.2.1]", uint8(4))
	f.Add("\\", "(", uint8(5))
	f.Fuzz(func(t *testing.T, sender, helo string, which uint8) {
		result := Results[int(which)%len(Results)]
		req := Request{IP: netip.MustParseAddr("192.0.2.1"), Helo: helo, Sender: sender, Receiver: "mx.example.org"}
		o := Outcome{Result: result, Identity: IdentityMailFrom, Address: sender, Problem: helo}
		got := o.ReceivedSPF(req)
		if strings.ContainsAny(got, "\r\n") {
			t.Fatalf("line break in %q", got)
		}
		// the comment: from " (" after the result to its matching ")"
		rest, ok := strings.CutPrefix(got, result+" (")
		if !ok {
			t.Fatalf("%q", got)
		}
		depth := 1
		for i := 0; i < len(rest) && depth > 0; i++ {
			switch rest[i] {
			case '\\':
				i++
			case '(':
				depth++
			case ')':
				depth--
				if depth == 0 && !strings.HasPrefix(rest[i:], ") client-ip=192.0.2.1;") {
					t.Fatalf("the comment ends early: %q", got)
				}
			}
		}
	})
}
