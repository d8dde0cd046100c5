package policy

import (
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tollgate/tollgate/internal/dnstest"
	"github.com/tollgate/tollgate/milter"
)

func TestParseDNSListItem(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // String() of the parsed item; "" for an error
		err  string
	}{
		{in: "zen.example.org", want: "zen.example.org"},
		{in: "ZEN.Example.org", want: "zen.example.org"},
		{in: "bl.example.net=127.0.0.2", want: "bl.example.net=127.0.0.2"},
		{in: "bl.example.net=127.0.0.2, 127.0.0.3", want: "bl.example.net=127.0.0.2,127.0.0.3"},
		{in: "bl.example.net==127.0.0.2,127.0.0.3", want: "bl.example.net==127.0.0.2,127.0.0.3"},
		{in: "bits.example.net&0.0.0.4", want: "bits.example.net&0.0.0.4"},
		{in: "bits.example.net=&0.0.0.4", want: "bits.example.net=&0.0.0.4"},
		{in: "a.example!=127.0.0.1", want: "a.example!=127.0.0.1"},
		{in: "a.example!&0.0.0.2", want: "a.example!&0.0.0.2"},
		{in: "txt.example,zone.example=127.0.0.2", want: "txt.example,zone.example=127.0.0.2"},
		{in: "dbl.example/$sender_address_domain", want: "dbl.example/$sender_address_domain"},
		{in: "zen.example.org=127.0.0.4/192.0.2.5", want: "zen.example.org=127.0.0.4/192.0.2.5"},
		{in: "!allow.example.org", err: "cannot be negated as a whole"},
		{in: "+bogus_unknown", err: "unknown flag"},
		{in: "zone.example=", err: "no address"},
		{in: "zone.example!=", err: "no address"},
		{in: "zone.example=127.0.0.x", err: "not an IPv4 address"},
		{in: "zone.example=::1", err: "not an IPv4 address"},
		{in: "zone.example/", err: "nothing after '/'"},
		{in: "zone..example", err: "empty or over-long label"},
		{in: "", err: "empty"},
		{in: "zone example", err: "not allowed"},
		{in: ",zone.example", err: "TXT domain"},
		{in: "zone.example&=0.0.0.1", err: "not allowed"},
	} {
		item, _, isFlag, err := parseDNSListItem(tc.in)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want one saying %q", tc.in, err, tc.err)
			}
		case err != nil || isFlag:
			t.Errorf("%q: %v (flag %v)", tc.in, err, isFlag)
		case item.String() != tc.want:
			t.Errorf("%q parsed as %q, want %q", tc.in, item.String(), tc.want)
		}
	}
	for in, want := range map[string]dnsListUnknown{"+include_unknown": unknownInclude, "+EXCLUDE_unknown": unknownExclude, "+defer_unknown": unknownDefer} {
		if _, flag, isFlag, err := parseDNSListItem(in); err != nil || !isFlag || flag != want {
			t.Errorf("%q: flag %v %v %v", in, flag, isFlag, err)
		}
	}
}

func TestReverseAddr(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":   "1.2.0.192",
		"127.0.0.1":   "1.0.0.127",
		"2001:db8::1": "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2",
	} {
		if got := reverseAddr(netip.MustParseAddr(in)); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
		// The same name as the PTR tree's, zone left out.
		rev, _ := dns.ReverseAddr(in)
		rev = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(rev, "."), ".in-addr.arpa"), ".ip6.arpa")
		if rev != want {
			t.Errorf("%s: miekg/dns reverses to %s", in, rev)
		}
	}
}

// dnsListEnv is a DNS server with the lists the tests ask, and a function
// that evaluates a connect ACL (the given items in a deny rule with a
// message that shows every variable) against it for one client.
type dnsListEnv struct {
	srv     *dnstest.Server
	lookups *prometheus.CounterVec
}

func newDNSListEnv(t *testing.T) *dnsListEnv {
	srv := dnstest.Start(t)
	setDNSListZones(srv)
	return &dnsListEnv{srv: srv, lookups: newDNSListMetrics(prometheus.NewRegistry())}
}

// setDNSListZones are the lists the tests ask.
func setDNSListZones(srv *dnstest.Server) {
	// 192.0.2.1 is listed in zen with a reason; 192.0.2.2 nowhere.
	srv.Set("1.2.0.192.zen.example.org", &dnstest.Zone{RRs: []string{"A 127.0.0.2", `TXT "see https://zen.example.org/192.0.2.1"`}})
	srv.Set("1.2.0.192.bl.example.net", &dnstest.Zone{RRs: []string{"A 127.0.0.2", "A 127.0.0.3"}})
	srv.Set("1.2.0.192.bits.example.net", &dnstest.Zone{RRs: []string{"A 127.0.0.6"}})
	srv.Set("1.2.0.192.wild.example.net", &dnstest.Zone{RRs: []string{"A 192.0.2.99"}})
	srv.Set("1.2.0.192.slow.example.net", &dnstest.Zone{Silent: true})
	srv.Set("1.2.0.192.broken.example.net", &dnstest.Zone{Rcode: dns.RcodeServerFailure})
	srv.Set("1.2.0.192.txt.example.net", &dnstest.Zone{RRs: []string{"A 127.0.0.10", `TXT "from the TXT zone"`}})
	srv.Set("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.example.org", &dnstest.Zone{RRs: []string{"A 127.0.0.3", `TXT "v6 listed"`}})
	srv.Set("spam.example.com.dbl.example.net", &dnstest.Zone{RRs: []string{"A 127.0.1.2", `TXT "domain listed"`}})
	srv.Set("5.2.0.192.zen.example.org", &dnstest.Zone{RRs: []string{"A 127.0.0.4"}})
	srv.Set("2.2.0.192.broken.example.net", &dnstest.Zone{RRs: []string{"A 127.0.0.2"}})
}

func (de *dnsListEnv) policy(t *testing.T, items string) *Policy {
	t.Helper()
	return mustParse(t, `
dns: {server: `+de.srv.Addr+`, timeout: 300ms}
acl:
  connect:
    - deny: {dnslists: `+items+`, message: "550 5.7.1 listed at $dnslist_domain: $dnslist_text [$dnslist_value] key $dnslist_matched"}
    - accept: {}
`)
}

// run evaluates the connect ACL for client; a new Env each time, so the
// resolver's cache starts empty.
func (de *dnsListEnv) run(t *testing.T, p *Policy, client string) milter.Decision {
	t.Helper()
	env := NewEnv(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	env.dnsLists = de.lookups
	rt, err := env.Runtime(p)
	if err != nil {
		t.Fatal(err)
	}
	s := &milter.Session{Vars: map[string]string{}}
	if client != "" {
		s.Identity.ClientAddr = netip.MustParseAddr(client)
	}
	d, err := rt.Evaluate(t.Context(), milter.StageConnect, s, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDNSListsAgainstDNSServer(t *testing.T) {
	de := newDNSListEnv(t)
	const accept = "accept"
	for _, tc := range []struct {
		name   string
		items  string
		client string
		want   string // the reply text, or accept, or the 451 text
	}{
		{"listed", `[zen.example.org]`, "192.0.2.1",
			"listed at zen.example.org: see https://zen.example.org/192.0.2.1 [127.0.0.2] key 192.0.2.1"},
		{"not listed (NXDOMAIN)", `[zen.example.org]`, "192.0.2.2", accept},
		{"value matches", `["bl.example.net=127.0.0.3"]`, "192.0.2.1",
			"listed at bl.example.net:  [127.0.0.2, 127.0.0.3] key 192.0.2.1"},
		{"value matches one of several", `["bl.example.net=127.0.0.9,127.0.0.2"]`, "192.0.2.1",
			"listed at bl.example.net:  [127.0.0.2, 127.0.0.3] key 192.0.2.1"},
		{"value does not match", `["bl.example.net=127.0.0.9"]`, "192.0.2.1", accept},
		{"== needs every answer in the list", `["bl.example.net==127.0.0.2"]`, "192.0.2.1", accept},
		{"== with every answer", `["bl.example.net==127.0.0.3,127.0.0.2"]`, "192.0.2.1",
			"listed at bl.example.net:  [127.0.0.2, 127.0.0.3] key 192.0.2.1"},
		{"bitmask matches", `["bits.example.net&0.0.0.4"]`, "192.0.2.1",
			"listed at bits.example.net:  [127.0.0.6] key 192.0.2.1"},
		{"bitmask needs every bit", `["bits.example.net&0.0.0.12"]`, "192.0.2.1", accept},
		{"bitmask does not match", `["bits.example.net&0.0.0.8"]`, "192.0.2.1", accept},
		{"!= with an answer in the list", `["bl.example.net!=127.0.0.2"]`, "192.0.2.1", accept},
		{"!= with no answer in the list", `["bl.example.net!=127.0.0.9"]`, "192.0.2.1",
			"listed at bl.example.net:  [127.0.0.2, 127.0.0.3] key 192.0.2.1"},
		{"!& with the bit", `["bits.example.net!&0.0.0.2"]`, "192.0.2.1", accept},
		{"!& without the bit", `["bits.example.net!&0.0.0.8"]`, "192.0.2.1",
			"listed at bits.example.net:  [127.0.0.6] key 192.0.2.1"},
		{"!= when not listed at all", `["bl.example.net!=127.0.0.9"]`, "192.0.2.2", accept},
		{"answer outside 127/8 is no listing", `[wild.example.net]`, "192.0.2.1", accept},
		{"IPv6 client", `[zen.example.org]`, "2001:db8::1",
			"listed at zen.example.org: v6 listed [127.0.0.3] key 2001:db8::1"},
		{"IPv4-mapped client is its IPv4 address", `[zen.example.org]`, "::ffff:192.0.2.1",
			"listed at zen.example.org: see https://zen.example.org/192.0.2.1 [127.0.0.2] key 192.0.2.1"},
		{"the first list that lists wins", `[zen.example.net, "bl.example.net=127.0.0.2", zen.example.org]`, "192.0.2.1",
			"listed at bl.example.net:  [127.0.0.2, 127.0.0.3] key 192.0.2.1"},
		{"TXT domain", `["txt.example.net,bl.example.net=127.0.0.2"]`, "192.0.2.1",
			"listed at txt.example.net: from the TXT zone [127.0.0.10] key 192.0.2.1"},
		{"literal domain key", `[dbl.example.net/spam.example.com]`, "192.0.2.2",
			"listed at dbl.example.net: domain listed [127.0.1.2] key spam.example.com"},
		{"literal address key", `["zen.example.org=127.0.0.4/192.0.2.5"]`, "192.0.2.2",
			"listed at zen.example.org:  [127.0.0.4] key 192.0.2.5"},
		{"no client address", `[zen.example.org]`, "", accept},
		{"key list: the first key listed wins", `["zen.example.org/<;192.0.2.2;192.0.2.1;192.0.2.5"]`, "192.0.2.2",
			"listed at zen.example.org: see https://zen.example.org/192.0.2.1 [127.0.0.2] key 192.0.2.1"},
		{"key list: an IPv6 key", `["zen.example.org/<|192.0.2.2|2001:db8::1"]`, "192.0.2.2",
			"listed at zen.example.org: v6 listed [127.0.0.3] key 2001:db8::1"},
		{"key list with +defer_unknown: a later key lists", `[+defer_unknown, "broken.example.net/<;192.0.2.1;192.0.2.2"]`, "192.0.2.9",
			"listed at broken.example.net:  [127.0.0.2] key 192.0.2.2"},
		{"key list with +defer_unknown: none lists, one failed", `[+defer_unknown, "broken.example.net/<;192.0.2.1;192.0.2.3", zen.example.org]`, "192.0.2.1",
			"451 4.4.3 temporary DNS failure, try again later"},
		{"timeout: not listed by default", `[slow.example.net]`, "192.0.2.1", accept},
		{"timeout, then a list that lists", `[slow.example.net, zen.example.org]`, "192.0.2.1",
			"listed at zen.example.org: see https://zen.example.org/192.0.2.1 [127.0.0.2] key 192.0.2.1"},
		{"timeout with +include_unknown", `[+include_unknown, slow.example.net]`, "192.0.2.1",
			"listed at slow.example.net:  [] key 192.0.2.1"},
		{"timeout with +defer_unknown", `[+defer_unknown, slow.example.net, zen.example.org]`, "192.0.2.1",
			"451 4.4.3 temporary DNS failure, try again later"},
		{"flags apply to the items after them", `[slow.example.net, +defer_unknown, "bl.example.net=127.0.0.9"]`, "192.0.2.1", accept},
		{"SERVFAIL: not listed by default", `[broken.example.net]`, "192.0.2.1", accept},
		{"SERVFAIL with +defer_unknown", `[+defer_unknown, broken.example.net]`, "192.0.2.1",
			"451 4.4.3 temporary DNS failure, try again later"},
		{"SERVFAIL with +include_unknown", `[+include_unknown, broken.example.net]`, "192.0.2.1",
			"listed at broken.example.net:  [] key 192.0.2.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := de.run(t, de.policy(t, tc.items), tc.client)
			var got string
			switch d.Verdict {
			case milter.Accept:
				got = accept
			case milter.Reject:
				if d.Reply.Code != 550 || d.Reply.Enhanced != "5.7.1" {
					t.Errorf("reply %+v", d.Reply)
				}
				got = d.Reply.Text
			case milter.TempFail:
				got = d.Reply.String()
				if !strings.Contains(d.Reason, "dnslists: ") {
					t.Errorf("reason %q", d.Reason)
				}
			default:
				got = d.Verdict.String()
			}
			if !strings.HasPrefix(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDNSListsMetrics(t *testing.T) {
	de := newDNSListEnv(t)
	p := de.policy(t, `[slow.example.net, zen.example.org]`)
	de.run(t, p, "192.0.2.1") // error, listed
	de.run(t, p, "192.0.2.2") // not_listed twice (only 192.0.2.1 times out)
	p = de.policy(t, `["bl.example.net=127.0.0.9", "txt.example.net,bl.example.net"]`)
	de.run(t, p, "192.0.2.1") // not_listed (no value matches), listed, listed (the TXT zone's A)
	for result, want := range map[string]float64{dnsListListed: 3, dnsListNotListed: 3, dnsListError: 1} {
		if n := testutil.ToFloat64(de.lookups.WithLabelValues(result)); n != want {
			t.Errorf("tollgate_dnslist_lookups_total{result=%q} = %v, want %v", result, n, want)
		}
	}
}

// The variables stay with the connection, as in Exim: a warn at connect
// leaves them for the rcpt ACL; a key may be a $variable of the stage.
func TestDNSListsVariablesAcrossStages(t *testing.T) {
	de := newDNSListEnv(t)
	p := mustParse(t, `
dns: {server: `+de.srv.Addr+`, timeout: 300ms}
acl:
  connect:
    - warn: {dnslists: [zen.example.org], set: {acl_c_seen: "$dnslist_domain"}}
    - accept: {}
  mail:
    - deny: {dnslists: [dbl.example.net/$sender_address_domain], message: "550 5.7.1 sender domain $dnslist_matched listed: $dnslist_text"}
    - accept: {}
  rcpt:
    - deny: {recipients: [b@example.org], message: "550 5.7.1 $dnslist_domain said $dnslist_text ($acl_c_seen)"}
    - accept: {}
`)
	env := NewEnv(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	rt, err := env.Runtime(p)
	if err != nil {
		t.Fatal(err)
	}
	s := &milter.Session{Vars: map[string]string{}, Identity: milter.Identity{ClientAddr: netip.MustParseAddr("192.0.2.1")}}
	if d, _ := rt.Evaluate(t.Context(), milter.StageConnect, s, nil, nil); d.Verdict != milter.Accept {
		t.Fatalf("connect: %+v", d)
	}
	tx := &milter.Txn{Session: s, Sender: "a@example.net"}
	if d, _ := rt.Evaluate(t.Context(), milter.StageMail, s, tx, nil); d.Verdict != milter.Accept {
		t.Fatalf("mail from a domain not listed: %+v", d)
	}
	r := &milter.Recipient{Addr: "b@example.org"}
	tx.Rcpts = append(tx.Rcpts, r)
	d, _ := rt.Evaluate(t.Context(), milter.StageRcpt, s, tx, r)
	if want := "zen.example.org said see https://zen.example.org/192.0.2.1 (zen.example.org)"; d.Reply.Text != want {
		t.Errorf("rcpt: %q, want %q", d.Reply.Text, want)
	}
	// A sender domain no list can hold (a domain literal) is not looked up:
	// no lookup counted, no error.
	lookups := func() float64 {
		return testutil.ToFloat64(env.dnsLists.WithLabelValues(dnsListListed)) +
			testutil.ToFloat64(env.dnsLists.WithLabelValues(dnsListNotListed)) + testutil.ToFloat64(env.dnsLists.WithLabelValues(dnsListError))
	}
	before := lookups()
	tx3 := &milter.Txn{Session: s, Sender: "x@[192.0.2.7]"}
	if d, _ := rt.Evaluate(t.Context(), milter.StageMail, s, tx3, nil); d.Verdict != milter.Accept {
		t.Errorf("mail from a domain literal: %+v", d)
	}
	if n := lookups() - before; n != 0 {
		t.Errorf("%v lookups for a domain literal", n)
	}
	tx2 := &milter.Txn{Session: s, Sender: "x@Spam.Example.com"}
	d, _ = rt.Evaluate(t.Context(), milter.StageMail, s, tx2, nil)
	if want := "sender domain spam.example.com listed: domain listed"; d.Verdict != milter.Reject || d.Reply.Text != want {
		t.Errorf("mail from a listed domain: %+v, want %q", d, want)
	}
}

// check reports each bad item at its line, and a key's variable where it
// has no value.
func TestDNSListsCheckErrors(t *testing.T) {
	_, err := Parse("t.yaml", []byte(`acl:
  connect:
    - deny:
        dnslists:
          - zen.example.org
          - "!allow.example.org"
          - "bl.example.net=127.0.0.300"
          - +sometimes_unknown
          - dbl.example.net/$sender_address_domain
          - "dbl.example.net/not a domain"
    - deny: {dnslists: []}
    - accept: {}
`), testFeatures...)
	want := []string{
		`t.yaml:6: dnslists: "!allow.example.org": an item cannot be negated as a whole`,
		`t.yaml:7: dnslists: "bl.example.net=127.0.0.300": "127.0.0.300" is not an IPv4 address`,
		`t.yaml:8: dnslists: "+sometimes_unknown": unknown flag`,
		`t.yaml:9: dnslists key: $sender_address_domain has no value at connect (only at mail`,
		`t.yaml:10: dnslists: "dbl.example.net/not a domain": the key "not a domain" is neither an IP address nor a domain name`,
		`t.yaml:11: dnslists: no DNS list to look up`,
	}
	if err == nil {
		t.Fatal("loaded")
	}
	got := err.(ErrorList)
	if len(got) != len(want) {
		t.Errorf("%d errors, want %d:\n%v", len(got), len(want), err)
	}
	for i, w := range want {
		if i < len(got) && !strings.HasPrefix(got[i].Error(), w) {
			t.Errorf("error %d: %q, want %q...", i, got[i].Error(), w)
		}
	}
}

// As in Exim, a warn whose dnslists defers is skipped (the ACL goes on);
// any other verb defers the ACL, whatever it is.
func TestDNSListsDeferInWarnAndAccept(t *testing.T) {
	de := newDNSListEnv(t)
	p := mustParse(t, `
dns: {server: `+de.srv.Addr+`, timeout: 200ms}
acl:
  connect:
    - warn:   {dnslists: [+defer_unknown, broken.example.net], set: {acl_c_warned: "yes"}}
    - accept: {dnslists: [+defer_unknown, broken.example.net]}
    - deny:   {message: "550 5.7.1 not reached"}
`)
	env := NewEnv(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	rt, err := env.Runtime(p)
	if err != nil {
		t.Fatal(err)
	}
	s := &milter.Session{Vars: map[string]string{}, Identity: milter.Identity{ClientAddr: netip.MustParseAddr("192.0.2.1")}}
	d, _ := rt.Evaluate(t.Context(), milter.StageConnect, s, nil, nil)
	if d.Verdict != milter.TempFail || d.Rule != "connect/2" || d.Reply.Code != 451 {
		t.Errorf("decision %+v, want the accept rule to defer", d)
	}
	if s.Vars["acl_c_warned"] != "" || s.Vars[dnslistDomainVar] != "" {
		t.Errorf("the warn fired or variables were set: %v", s.Vars)
	}
}

// BenchmarkDNSListsCached is one connect ACL with three lists, none
// listing the client, answered from the resolver's cache: the cost a
// dnslists rule adds to every connection once the lists are warm.
func BenchmarkDNSListsCached(b *testing.B) {
	srv := dnstest.Start(b)
	p, err := Parse("b.yaml", []byte(`
dns: {server: `+srv.Addr+`}
acl:
  connect:
    - deny: {dnslists: [zen.example.org, "bl.example.net=127.0.0.2", "bits.example.net&0.0.0.4"]}
    - accept: {}
`), testFeatures...)
	if err != nil {
		b.Fatal(err)
	}
	env := NewEnv(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	rt, err := env.Runtime(p)
	if err != nil {
		b.Fatal(err)
	}
	s := &milter.Session{Vars: map[string]string{}, Identity: milter.Identity{ClientAddr: netip.MustParseAddr("192.0.2.2")}}
	ctx := b.Context()
	for b.Loop() {
		if d, _ := rt.Evaluate(ctx, milter.StageConnect, s, nil, nil); d.Verdict != milter.Accept {
			b.Fatalf("%+v", d)
		}
	}
}
