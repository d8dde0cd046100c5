package spf

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/dnstest"

	"github.com/miekg/dns"
	"go.yaml.in/yaml/v3"

	"github.com/tollgate/tollgate/internal/resolver"
)

// suiteSection is one YAML document of the RFC 7208 test suite.
type suiteSection struct {
	Description string               `yaml:"description"`
	Tests       map[string]suiteCase `yaml:"tests"`
	ZoneData    map[string][]yaml.Node
}

type suiteCase struct {
	Description string    `yaml:"description"`
	Comment     string    `yaml:"comment"`
	Spec        yaml.Node `yaml:"spec"`
	Helo        string    `yaml:"helo"`
	Host        string    `yaml:"host"`
	MailFrom    string    `yaml:"mailfrom"`
	Result      yaml.Node `yaml:"result"`
	Explanation string    `yaml:"explanation"`
	Strict      int       `yaml:"strict"`
}

// decidedDifferently are the suite's cases whose expected result we do not
// give, each with the reason (spf/README.md lists them too). Every other
// case must give exactly one of the results the suite accepts.
var decidedDifferently = map[string]string{
	// blitiri.com.ar/go/spf takes the first "/" after a:/mx: as the start
	// of the prefix length, so a domain-spec holding "/" (legal: any
	// visible character but "%") is a bad mask to it. Real records do not
	// put "/" in host names; rewriting the record cannot help.
	"a-colon-domain":            "a domain-spec with / is permerror (library)",
	"a-colon-domain-ip4mapped":  "a domain-spec with / is permerror (library)",
	"mx-colon-domain":           "a domain-spec with / is permerror (library)",
	"mx-colon-domain-ip4mapped": "a domain-spec with / is permerror (library)",
	// The p macro (validated PTR name) is deprecated (RFC 7208 §7.3: it
	// SHOULD NOT be used) and the library expands it to "unknown"; the
	// suite itself only says which validated name SHOULD be chosen.
	"p-macro-multiple": "the p macro expands to unknown (library; RFC 7208 §7.3 deprecates it)",
}

func loadSuite(t *testing.T) []suiteSection {
	t.Helper()
	data, err := os.ReadFile("testdata/rfc7208-tests.yml")
	if err != nil {
		t.Fatal(err)
	}
	var out []suiteSection
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var s suiteSection
		if err := dec.Decode(&s); err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// suiteZone is what the suite's DNS holds for one name.
type suiteZone struct {
	rrs     map[uint16][]dns.RR
	timeout bool   // a type without records times out (the suite's TIMEOUT)
	cname   string // an alias
}

// buildZones turns the suite's zonedata into records. A TXT of NONE means
// no TXT records; SPF records are served as TXT too when the name has no
// TXT entry at all (the suite's header asks drivers to do so).
func buildZones(t *testing.T, zd map[string][]yaml.Node) map[string]*suiteZone {
	zones := map[string]*suiteZone{}
	for name, items := range zd {
		owner := dns.Fqdn(name)
		z := &suiteZone{rrs: map[uint16][]dns.RR{}}
		zones[strings.ToLower(strings.TrimSuffix(name, "."))] = z
		hdr := func(typ uint16) dns.RR_Header {
			return dns.RR_Header{Name: owner, Rrtype: typ, Class: dns.ClassINET, Ttl: 300}
		}
		hasTXT := false
		var spf [][]string
		for _, it := range items {
			if it.Kind == yaml.ScalarNode {
				switch it.Value {
				case "TIMEOUT":
					z.timeout = true
				default:
					t.Fatalf("zone %s: unknown item %q", name, it.Value)
				}
				continue
			}
			var m map[string]yaml.Node
			if err := it.Decode(&m); err != nil {
				t.Fatalf("zone %s: %v", name, err)
			}
			for typ, v := range m {
				var strs []string
				if v.Kind == yaml.SequenceNode {
					if err := v.Decode(&strs); err != nil && typ != "MX" {
						t.Fatalf("zone %s %s: %v", name, typ, err)
					}
				} else {
					strs = []string{v.Value}
				}
				switch typ {
				case "TIMEOUT":
					z.timeout = true
				case "A", "AAAA":
					for _, s := range strs {
						ip := net.ParseIP(s)
						if typ == "A" {
							z.rrs[dns.TypeA] = append(z.rrs[dns.TypeA], &dns.A{Hdr: hdr(dns.TypeA), A: ip.To4()})
						} else {
							z.rrs[dns.TypeAAAA] = append(z.rrs[dns.TypeAAAA], &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: ip})
						}
					}
				case "MX":
					var mx []any
					if err := v.Decode(&mx); err != nil || len(mx) != 2 {
						t.Fatalf("zone %s MX: %v", name, v.Value)
					}
					z.rrs[dns.TypeMX] = append(z.rrs[dns.TypeMX], &dns.MX{Hdr: hdr(dns.TypeMX), Preference: uint16(mx[0].(int)), Mx: dns.Fqdn(fmt.Sprint(mx[1]))})
				case "PTR":
					for _, s := range strs {
						z.rrs[dns.TypePTR] = append(z.rrs[dns.TypePTR], &dns.PTR{Hdr: hdr(dns.TypePTR), Ptr: dns.Fqdn(s)})
					}
				case "CNAME":
					z.cname = strs[0]
				case "TXT":
					hasTXT = true
					if len(strs) == 1 && strs[0] == "NONE" {
						continue
					}
					z.rrs[dns.TypeTXT] = append(z.rrs[dns.TypeTXT], &dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: strs})
				case "SPF":
					z.rrs[dns.TypeSPF] = append(z.rrs[dns.TypeSPF], &dns.SPF{Hdr: hdr(dns.TypeSPF), Txt: strs})
					spf = append(spf, strs)
				default:
					t.Fatalf("zone %s: unknown type %s", name, typ)
				}
			}
		}
		if !hasTXT {
			for _, s := range spf {
				z.rrs[dns.TypeTXT] = append(z.rrs[dns.TypeTXT], &dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: s})
			}
		}
	}
	return zones
}

// serveZones answers from zones as a recursive resolver would: CNAME chains
// followed in the answer (a loop is SERVFAIL), NXDOMAIN for unknown names,
// and silence where the suite says TIMEOUT.
func serveZones(t *testing.T, zones map[string]*suiteZone) string {
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		q := req.Question[0]
		name := strings.ToLower(strings.TrimSuffix(presentedName(q.Name), "."))
		owner := q.Name
		seen := map[string]bool{}
		for {
			z := zones[name]
			if z == nil {
				if len(m.Answer) == 0 {
					m.Rcode = dns.RcodeNameError
				}
				break
			}
			if z.cname != "" && q.Qtype != dns.TypeCNAME {
				if seen[name] {
					m.Answer, m.Rcode = nil, dns.RcodeServerFailure
					break
				}
				seen[name] = true
				m.Answer = append(m.Answer, &dns.CNAME{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 300}, Target: dns.Fqdn(z.cname)})
				owner = dns.Fqdn(z.cname)
				name = strings.ToLower(strings.TrimSuffix(z.cname, "."))
				continue
			}
			rrs := z.rrs[q.Qtype]
			if len(rrs) == 0 && z.timeout {
				return // the suite's TIMEOUT: no answer at all
			}
			for _, rr := range rrs {
				rr = dns.Copy(rr)
				rr.Header().Name = owner
				m.Answer = append(m.Answer, rr)
			}
			break
		}
		if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
			m.Truncate(1232)
		}
		_ = w.WriteMsg(m)
	})
	pc, ln, err := dnstest.ListenBoth("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	udp := &dns.Server{PacketConn: pc, Handler: handler}
	tcp := &dns.Server{Listener: ln, Handler: handler}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = udp.ActivateAndServe() }()
	go func() { defer wg.Done(); _ = tcp.ActivateAndServe() }()
	t.Cleanup(func() {
		_ = udp.Shutdown()
		_ = tcp.Shutdown()
		wg.Wait()
	})
	return pc.LocalAddr().String()
}

// presentedName undoes miekg/dns's escapes in a name (\DDD, \X): the
// suite's names hold spaces.
func presentedName(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		if i+3 < len(s) && s[i+1] >= '0' && s[i+1] <= '9' {
			b.WriteByte((s[i+1]-'0')*100 + (s[i+2]-'0')*10 + (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i+1])
		i++
	}
	return b.String()
}

func expected(t *testing.T, n yaml.Node) []string {
	var out []string
	if n.Kind == yaml.SequenceNode {
		if err := n.Decode(&out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	return []string{n.Value}
}

// TestRFC7208Suite runs every case of the openspf RFC 7208 suite through
// Check, the shared resolver and a DNS server on loopback that serves the
// suite's zone data (its TIMEOUTs are real timeouts of the resolver).
func TestRFC7208Suite(t *testing.T) {
	sections := loadSuite(t)
	total, differ := 0, 0
	seenDiffer := map[string]bool{}
	for _, sec := range sections {
		zones := buildZones(t, sec.ZoneData)
		addr := serveZones(t, zones)
		res := resolver.New(resolver.Options{Server: addr, Timeout: 500 * time.Millisecond})
		names := make([]string, 0, len(sec.Tests))
		for n := range sec.Tests {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, name := range names {
			tc := sec.Tests[name]
			total++
			ip, err := netip.ParseAddr(tc.Host)
			if err != nil {
				t.Fatalf("%s: host %q: %v", name, tc.Host, err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			got := Check(ctx, res, Request{IP: ip, Helo: tc.Helo, Sender: tc.MailFrom, Identity: IdentityMailFrom, Receiver: "mx.example.org"})
			cancel()
			want := expected(t, tc.Result)
			if why, ok := decidedDifferently[name]; ok {
				seenDiffer[name] = true
				differ++
				if slices.Contains(want, got.Result) {
					t.Errorf("%s (%s): listed as decided differently (%s) but gives the expected %s: remove it from the list", name, sec.Description, why, got.Result)
				}
				continue
			}
			if !slices.Contains(want, got.Result) {
				t.Errorf("%s (%s): got %s (%s), want %v; %s", name, sec.Description, got.Result, got.Problem, want, strings.TrimSpace(tc.Description))
			}
		}
	}
	for name := range decidedDifferently {
		if !seenDiffer[name] {
			t.Errorf("decidedDifferently names %q, which is not a case of the suite", name)
		}
	}
	if total < 200 {
		t.Errorf("ran %d cases; the suite has more", total)
	}
	t.Logf("%d cases, %d decided differently", total, differ)
}
