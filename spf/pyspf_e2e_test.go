//go:build e2e

package spf

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tollgate/tollgate/internal/dnstest"
	"github.com/tollgate/tollgate/internal/e2e"
	"github.com/tollgate/tollgate/internal/resolver"
)

// pyspfZones are records for every kind of term: both implementations must
// give the same result for each case below.
func pyspfZones(srv *dnstest.Server) {
	txt := func(name, rec string, more ...string) {
		srv.Set(name, &dnstest.Zone{TXT: [][]string{{rec}}, RRs: more})
	}
	txt("pass.test", "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all")
	txt("soft.test", "v=spf1 ip4:192.0.2.1 ~all")
	txt("neutral.test", "v=spf1 ?all")
	txt("include.test", "v=spf1 include:pass.test include:soft.test -all")
	txt("redirect.test", "v=spf1 ip4:203.0.113.9 redirect=pass.test")
	txt("mx.test", "v=spf1 mx -all", "MX 10 mail.mx.test.", "MX 20 backup.mx.test.")
	srv.Set("mail.mx.test", &dnstest.Zone{RRs: []string{"A 198.51.100.20"}})
	srv.Set("backup.mx.test", &dnstest.Zone{RRs: []string{"AAAA 2001:db8:1::20"}})
	txt("a.test", "v=spf1 a a:host.a.test/28 -all", "A 198.51.100.40")
	srv.Set("host.a.test", &dnstest.Zone{RRs: []string{"A 198.51.100.1"}})
	txt("exists.test", "v=spf1 exists:%{ir}.allowed.exists.test -all")
	srv.Set("5.2.0.192.allowed.exists.test", &dnstest.Zone{RRs: []string{"A 127.0.0.2"}})
	txt("macros.test", "v=spf1 exists:%{l1r-}.%{d2}.users.%{o} -all")
	srv.Set("john.macros.test.users.macros.test", &dnstest.Zone{RRs: []string{"A 127.0.0.2"}})
	txt("void.test", "v=spf1 a:nx1.void.test a:nx2.void.test a:nx3.void.test ip4:192.0.2.5 -all")
	txt("twovoid.test", "v=spf1 a:nx1.void.test a:nx2.void.test ip4:192.0.2.5 -all")
	txt("syntax.test", "v=spf1 ip4:192.0.2.300 -all")
	txt("unknownmod.test", "v=spf1 foo=bar ip4:192.0.2.5 -all")
	txt("twospf.test", "v=spf1 -all", `TXT "v=spf1 +all"`)
	txt("loop.test", "v=spf1 include:loop.test -all")
	srv.Set("servfail.test", &dnstest.Zone{Rcode: dns.RcodeServerFailure})
	txt("helo.mx.test", "v=spf1 ip4:198.51.100.30 -all")
	txt("ptr.test", "v=spf1 ptr -all")
	srv.Set("mail.ptr.test", &dnstest.Zone{RRs: []string{"A 192.0.2.80"}})
	srv.Set("80.2.0.192.in-addr.arpa", &dnstest.Zone{RRs: []string{"PTR mail.ptr.test."}})
	srv.Set("81.2.0.192.in-addr.arpa", &dnstest.Zone{RRs: []string{"PTR other.test.", "PTR mail.ptr.test."}})
}

var pyspfCases = []struct{ ip, sender, helo string }{
	{"192.0.2.5", "a@pass.test", "client.test"},
	{"2001:db8::5", "a@pass.test", "client.test"},
	{"198.51.100.5", "a@pass.test", "client.test"},
	{"198.51.100.5", "a@soft.test", "client.test"},
	{"192.0.2.1", "a@soft.test", "client.test"},
	{"198.51.100.5", "a@neutral.test", "client.test"},
	{"192.0.2.5", "a@include.test", "client.test"},
	{"198.51.100.5", "a@include.test", "client.test"},
	{"192.0.2.5", "a@redirect.test", "client.test"},
	{"198.51.100.5", "a@redirect.test", "client.test"},
	{"198.51.100.20", "a@mx.test", "client.test"},
	{"2001:db8:1::20", "a@mx.test", "client.test"},
	{"198.51.100.21", "a@mx.test", "client.test"},
	{"198.51.100.40", "a@a.test", "client.test"},
	{"198.51.100.14", "a@a.test", "client.test"},
	{"198.51.100.16", "a@a.test", "client.test"},
	{"192.0.2.5", "a@exists.test", "client.test"},
	{"192.0.2.6", "a@exists.test", "client.test"},
	{"192.0.2.5", "john-smith@macros.test", "client.test"},
	{"192.0.2.5", "jane-smith@macros.test", "client.test"},
	{"192.0.2.5", "a@void.test", "client.test"},
	{"192.0.2.5", "a@twovoid.test", "client.test"},
	{"192.0.2.5", "a@syntax.test", "client.test"},
	{"192.0.2.5", "a@unknownmod.test", "client.test"},
	{"192.0.2.5", "a@twospf.test", "client.test"},
	{"192.0.2.5", "a@loop.test", "client.test"},
	{"192.0.2.5", "a@servfail.test", "client.test"},
	{"192.0.2.5", "a@nowhere.test", "client.test"},
	{"198.51.100.30", "", "helo.mx.test"},
	{"192.0.2.80", "a@ptr.test", "client.test"},
	{"192.0.2.81", "a@ptr.test", "client.test"},
	{"198.51.100.31", "", "helo.mx.test"},
}

// TestPySPFAgrees runs the same cases through our SPF and pyspf (Debian's
// python3-spf), both asking one DNS server on 127.0.0.2:53; pyspf reads it
// from a private /etc/resolv.conf in its own mount namespace.
func TestPySPFAgrees(t *testing.T) {
	python := e2e.RequireProgram(t, "/usr/bin/python3", "python3")
	unshare := e2e.RequireProgram(t, "unshare", "util-linux")
	if _, err := os.Stat("/usr/lib/python3/dist-packages/spf.py"); err != nil {
		t.Fatalf("pyspf is missing (%v): install the Debian package \"python3-spf\", e.g. by running scripts/install-test-deps.sh as root", err)
	}
	srv := dnstest.StartOn(t, "127.0.0.2:53")
	pyspfZones(srv)
	dir := t.TempDir()
	resolvConf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolvConf, []byte("nameserver 127.0.0.2\noptions timeout:2 attempts:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs("testdata/pyspf_check.py")
	if err != nil {
		t.Fatal(err)
	}
	type pyCase struct {
		I string `json:"i"`
		S string `json:"s"`
		H string `json:"h"`
	}
	var in []pyCase
	for _, c := range pyspfCases {
		in = append(in, pyCase{c.ip, c.sender, c.helo})
	}
	stdin, _ := json.Marshal(in)
	cmd := exec.Command(unshare, "-m", "sh", "-c", `mount --bind "$0" /etc/resolv.conf && exec "$1" "$2"`, resolvConf, python, script)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pyspf: %v\n%s", err, stderr.String())
	}
	var theirs []string
	if err := json.Unmarshal(out, &theirs); err != nil || len(theirs) != len(pyspfCases) {
		t.Fatalf("pyspf said %s (%v)", out, err)
	}
	res := resolver.New(resolver.Options{Server: srv.Addr, Timeout: 2 * time.Second, FailureTTL: -1})
	seen := map[string]bool{}
	for i, c := range pyspfCases {
		ours := Check(t.Context(), res, Request{IP: netip.MustParseAddr(c.ip), Helo: c.helo, Sender: c.sender, Identity: IdentityMailFrom})
		seen[ours.Result] = true
		t.Logf("%s from %s (HELO %s): %s", c.sender, c.ip, c.helo, theirs[i])
		if ours.Result != theirs[i] {
			t.Errorf("%s from %s (HELO %s): we say %s (%s), pyspf says %s", c.sender, c.ip, c.helo, ours.Result, ours.Problem, theirs[i])
		}
	}
	for _, r := range Results {
		if !seen[r] {
			t.Errorf("no case gives %s", r)
		}
	}
}
