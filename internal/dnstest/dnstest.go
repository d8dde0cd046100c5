// Package dnstest is an authoritative-looking DNS server for tests: it
// answers on loopback, over UDP and TCP on one port, from names set by the
// test, and can be made to fail (rcode), say nothing (timeouts) or truncate.
// Features test against it through the real resolver; peers (OpenDKIM,
// OpenDMARC, pyspf) are pointed at it with a private resolv.conf.
package dnstest

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// Zone is what the server answers for one name.
type Zone struct {
	// RRs are records in zone-file syntax with the owner left out, e.g.
	// "A 192.0.2.1", "MX 10 mx.example.org.", `TXT "v=spf1 -all"`. A type
	// asked for that none has is answered NOERROR without records.
	RRs []string
	// TXT are TXT records given as their character-strings (one record an
	// element), for long keys split as DNS requires.
	TXT    [][]string
	TTL    uint32
	Rcode  int    // non-zero: answer with this rcode
	NoData bool   // NOERROR without answers whatever the type
	Silent bool   // never answer (timeouts)
	SOATTL uint32 // non-zero: a SOA in negative answers, TTL and MINIMUM
	CNAME  string // the name is an alias of this one (its zone answers)

	queries atomic.Int32
}

// Queries is how many questions the server got for the name.
func (z *Zone) Queries() int { return int(z.queries.Load()) }

// Server answers from its zones; names without a zone get NXDOMAIN.
type Server struct {
	Addr string
	// UDPSize, if set, truncates UDP answers at this size whatever the
	// client offered, to make it retry over TCP.
	UDPSize int

	mu    sync.Mutex
	zones map[string]*Zone
	tcp   atomic.Int32
}

// Start serves on 127.0.0.1 on a free port, until the test ends.
func Start(t testing.TB) *Server { return StartOn(t, "127.0.0.1:0") }

// StartOn serves on addr ("127.0.0.2:53" for programs that read
// resolv.conf, which has no port).
func StartOn(t testing.TB, addr string) *Server {
	t.Helper()
	s := &Server{zones: map[string]*Zone{}}
	pc, ln, err := ListenBoth(addr)
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(s.serve)
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: ln, Handler: h}
	go func() { _ = udp.ActivateAndServe() }()
	go func() { _ = tcp.ActivateAndServe() }()
	t.Cleanup(func() {
		_ = udp.Shutdown()
		_ = tcp.Shutdown()
	})
	return s
}

// ListenBoth listens on UDP and TCP on the same port (for DNS servers of
// tests that answer in their own way). With port 0 the UDP
// port the kernel picks may be taken on TCP by another test running at the
// same time: then it tries another.
func ListenBoth(addr string) (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		lastErr = err
		if _, port, _ := net.SplitHostPort(addr); port != "0" {
			break
		}
	}
	return nil, nil, lastErr
}

// Set makes the server answer for name as z says, and returns z.
func (s *Server) Set(name string, z *Zone) *Zone {
	if z.TTL == 0 && !z.NoData {
		z.TTL = 300
	}
	for _, rr := range z.RRs { // fail at the test's line, not in the handler
		if _, err := dns.NewRR(dns.Fqdn(name) + " " + rr); err != nil {
			panic("dnstest: " + name + ": " + err.Error())
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.zones[strings.ToLower(dns.Fqdn(name))] = z
	return z
}

// TCPQueries is how many questions came over TCP.
func (s *Server) TCPQueries() int { return int(s.tcp.Load()) }

func (s *Server) zone(name string) *Zone {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.zones[strings.ToLower(name)]
}

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		s.tcp.Add(1)
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	z := s.zone(q.Name)
	if z == nil {
		m.Rcode = dns.RcodeNameError
		_ = w.WriteMsg(m)
		return
	}
	z.queries.Add(1)
	soa := &dns.SOA{Hdr: dns.RR_Header{Name: "example.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: z.SOATTL},
		Ns: "ns.example.", Mbox: "h.example.", Serial: 1, Refresh: 1, Retry: 1, Expire: 1, Minttl: z.SOATTL}
	switch {
	case z.Silent:
		return
	case z.Rcode != 0:
		m.Rcode = z.Rcode
		if z.Rcode == dns.RcodeNameError && z.SOATTL > 0 {
			m.Ns = append(m.Ns, soa)
		}
	case z.NoData:
		if z.SOATTL > 0 {
			m.Ns = append(m.Ns, soa)
		}
	default:
		owner := q.Name
		if z.CNAME != "" {
			m.Answer = append(m.Answer, &dns.CNAME{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: z.TTL}, Target: dns.Fqdn(z.CNAME)})
			owner = dns.Fqdn(z.CNAME)
			if target := s.zone(owner); target != nil {
				z = target
			}
		}
		m.Answer = append(m.Answer, z.records(owner, q.Qtype)...)
		if len(m.Answer) == 0 && z.SOATTL > 0 {
			m.Ns = append(m.Ns, soa)
		}
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := dnsUDPSize(req)
		if s.UDPSize > 0 {
			size = s.UDPSize
		}
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

func (z *Zone) records(owner string, qtype uint16) []dns.RR {
	var out []dns.RR
	if qtype == dns.TypeTXT || qtype == dns.TypeANY {
		for _, txt := range z.TXT {
			out = append(out, &dns.TXT{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: z.TTL}, Txt: txt})
		}
	}
	for _, s := range z.RRs {
		rr, err := dns.NewRR(owner + " " + s)
		if err != nil || (rr.Header().Rrtype != qtype && qtype != dns.TypeANY) {
			continue
		}
		rr.Header().Ttl = z.TTL
		out = append(out, rr)
	}
	return out
}

// dnsUDPSize is what the client said it takes (EDNS0), else 512.
func dnsUDPSize(req *dns.Msg) int {
	if o := req.IsEdns0(); o != nil && o.UDPSize() > 512 {
		return int(o.UDPSize())
	}
	return 512
}
