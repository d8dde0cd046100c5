//go:build e2e

package dmarc

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/tollgate/tollgate/internal/authres"
	"github.com/tollgate/tollgate/internal/dnstest"
	"github.com/tollgate/tollgate/internal/e2e"
	"github.com/tollgate/tollgate/internal/mta"
	"github.com/tollgate/tollgate/internal/resolver"
	"github.com/tollgate/tollgate/milter"
)

// The records of the matrix; OpenDMARC and tollgate read them from one DNS
// server.
var matrixRecords = map[string]string{
	"none.com":   "v=DMARC1; p=none",
	"quar.com":   "v=DMARC1; p=quarantine",
	"rej.com":    "v=DMARC1; p=reject",
	"strict.com": "v=DMARC1; p=reject; aspf=s; adkim=s",
	"sp.com":     "v=DMARC1; p=reject; sp=none",
	"sp2.com":    "v=DMARC1; p=none; sp=reject",
	"spq.com":    "v=DMARC1; p=reject; sp=quarantine",
	"pct0.com":   "v=DMARC1; p=reject; pct=0",
	"pct100.com": "v=DMARC1; p=quarantine; pct=100",
	"bad.com":    "v=DMARC1; p=bogus",
}

// startOpenDMARC runs Debian's OpenDMARC as a milter on loopback, in a
// private mount namespace whose /etc/resolv.conf names the test's DNS
// server (the machine's resolver is never touched). It trusts the
// Authentication-Results of "trusted.test" for SPF and DKIM, as it would a
// verifier in front of it.
func startOpenDMARC(t *testing.T) (addr string, dnsAddr string) {
	t.Helper()
	prog := e2e.RequireProgram(t, "/usr/sbin/opendmarc", "opendmarc")
	e2e.RequireProgram(t, "/usr/bin/unshare", "util-linux")
	dir := t.TempDir()

	// A DNS server on a loopback address of its own (resolv.conf has no
	// port, so it must be 53; other tests may hold 127.0.0.2:53).
	var srv *dnstest.Server
	for try := 0; srv == nil; try++ {
		a := fmt.Sprintf("127.0.53.%d:53", 2+rand.IntN(250))
		if c, err := net.ListenPacket("udp", a); err == nil {
			c.Close()
			srv = dnstest.StartOn(t, a)
		} else if try > 20 {
			t.Fatalf("no free loopback address for DNS: %v", err)
		}
	}
	for domain, rec := range matrixRecords {
		srv.Set("_dmarc."+domain, &dnstest.Zone{RRs: []string{`TXT "` + rec + `"`}})
	}
	srv.Set("_dmarc.servfail.com", &dnstest.Zone{Rcode: 2})
	host, _, _ := net.SplitHostPort(srv.Addr)
	resolv := filepath.Join(dir, "resolv.conf")
	// A public suffix list with the matrix's top-level domains only: the
	// test reads nothing outside the repository and its temporary files.
	psl := filepath.Join(dir, "psl.dat")
	ignore := filepath.Join(dir, "ignore.hosts")
	port := e2e.FreePort(t)
	conf := filepath.Join(dir, "opendmarc.conf")
	for name, content := range map[string]string{
		resolv: "nameserver " + host + "\noptions timeout:1 attempts:1\n",
		psl:    "com\nnet\norg\n",
		ignore: "192.0.2.254\n",
		conf: fmt.Sprintf("Socket inet:%d@127.0.0.1\nBackground false\nAuthservID opendmarc.test\n"+
			"TrustedAuthservIDs trusted.test\nPublicSuffixList %s\nIgnoreHosts %s\nSPFSelfValidate false\n"+
			"SPFIgnoreResults false\nRejectFailures true\nHoldQuarantinedMessages true\nSyslog false\nPidFile %s\n",
			port, psl, ignore, filepath.Join(dir, "opendmarc.pid")),
	} {
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("/usr/bin/unshare", "-m", "sh", "-c",
		`mount --bind "$1" /etc/resolv.conf && exec "$2" -f -c "$3"`, "sh", resolv, prog, conf)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, srv.Addr
		}
		select {
		case <-exited:
			t.Fatalf("opendmarc exited:\n%s", out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("opendmarc not listening on %s:\n%s", addr, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// openDMARCVerdict sends one message to OpenDMARC, which enforces what it
// decides (RejectFailures, HoldQuarantinedMessages), and returns its dmarc=
// result and disposition: the Authentication-Results it adds, or
// "dmarc=fail (dis=reject)" when it rejects (it adds none then).
func openDMARCVerdict(t *testing.T, addr, from, mailFrom, trustedAR string) string {
	t.Helper()
	c := mta.NewClient("tcp", addr)
	macros := gomilter.NewMacroBag()
	for k, v := range map[string]string{"j": "mx.example.org", "i": "4XkT2c0Zz3z9t", "{daemon_name}": "mx.example.org"} {
		macros.Set(gomilter.MacroName(k), v)
	}
	s, err := c.Session(macros)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	step := func(act *gomilter.Action, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if act.Type != gomilter.ActionContinue && act.Type != gomilter.ActionAccept {
			t.Fatalf("opendmarc: %+v", act)
		}
	}
	step(s.Conn("client.example.net", gomilter.FamilyInet, 40000, "192.0.2.1"))
	step(s.Helo("client.example.net"))
	step(s.Mail(mailFrom, ""))
	step(s.Rcpt("bob@example.org", ""))
	step(s.DataStart())
	if trustedAR != "" {
		step(mta.Header(s, "Authentication-Results", " "+trustedAR))
	}
	for _, f := range strings.Split(from, "|") { // "|" separates From fields
		step(mta.Header(s, "From", " "+f))
	}
	step(mta.Header(s, "To", " bob@example.org"))
	step(mta.Header(s, "Subject", " matrix"))
	step(s.HeaderEnd())
	if act, err := mta.Body(s, []byte("hello\r\n")); err != nil || act != nil {
		step(act, err)
	}
	mods, act, err := s.End()
	if err == nil && (act.Type == gomilter.ActionReject || act.Type == gomilter.ActionRejectWithCode) {
		return "dmarc=fail (dis=reject)"
	}
	if err == nil && act.Type == gomilter.ActionTempFail {
		return "dmarc=temperror (dis=tempfail)"
	}
	step(act, err)
	for _, m := range mods {
		if (m.Type == gomilter.ActionInsertHeader || m.Type == gomilter.ActionAddHeader) && strings.EqualFold(m.HeaderName, "Authentication-Results") {
			v := strings.Join(strings.Fields(m.HeaderValue), " ")
			if strings.HasPrefix(v, "opendmarc.test;") {
				_, rest, _ := authres.Split(v)
				return strings.TrimSpace(rest)
			}
		}
	}
	return noAuthResults
}

const noAuthResults = "(no Authentication-Results)"

// TestOpenDMARCAgrees runs the matrix through OpenDMARC 1.4.2 and through
// the dmarc module with the same SPF and DKIM results and the same DNS:
// the DMARC result and the disposition must agree.
func TestOpenDMARCAgrees(t *testing.T) {
	addr, dnsAddr := startOpenDMARC(t)
	dns := resolver.New(resolver.Options{Server: dnsAddr, Timeout: time.Second})
	m, _ := newTestModule(t, dns)
	m.o.Roll = func() int { return 99 } // pct=0 never selects, pct=100 always does

	spf := func(mailfrom string) string { return "spf=pass smtp.mailfrom=" + mailfrom }
	dkim := func(d string) string { return "dkim=pass header.d=" + d + " header.s=s1" }
	// A deviation is a row where OpenDMARC 1.4.2 is known to answer
	// otherwise than RFC 7489: both answers are asserted.
	type deviation struct{ theirs, ours, why string }
	pctDown := &deviation{"fail/none", "fail/quarantine",
		"pct sampled out: RFC 7489 §6.6.4 applies the next policy down (reject to quarantine); OpenDMARC applies none"}
	strictBug := &deviation{"pass/none", "fail/reject",
		"adkim=s/aspf=s: OpenDMARC 1.4.2 consults the public suffix list in strict mode (upstream PRs #268, #354)"}
	servfail := &deviation{"none/none", "temperror/none",
		"SERVFAIL for the record: OpenDMARC takes it for no record; RFC 7489 §11.2 says temperror, which a policy can defer on"}
	twoFrom := &deviation{"fail/reject", "permerror/none",
		"two From fields: OpenDMARC judges the first only, which lets the second through unjudged; tollgate says error (RFC 7489 §6.6.1 leaves it to local policy)"}
	unjudged := &deviation{"unjudged/", "permerror/none",
		"no single From domain: OpenDMARC writes no result at all; tollgate says nofrom or error, which a policy can act on"}
	type row struct {
		from, spf, dkim string
		dev             *deviation
	}
	var rows []row
	for _, d := range []string{"none.com", "quar.com", "rej.com", "pct0.com", "pct100.com"} {
		var failDev *deviation
		if d == "pct0.com" {
			failDev = pctDown
		}
		rows = append(rows,
			row{"alice@" + d, spf("b@" + d), "", nil},                         // aligned SPF
			row{"alice@" + d, "", dkim(d), nil},                               // aligned DKIM
			row{"alice@" + d, spf("b@mail." + d), "", nil},                    // relaxed SPF
			row{"alice@" + d, "", dkim("mail." + d), nil},                     // relaxed DKIM
			row{"alice@" + d, spf("b@other.net"), dkim("other.net"), failDev}, // unaligned
			row{"alice@" + d, "", "", failDev},                                // nothing passed
		)
	}
	rows = append(rows,
		row{"alice@strict.com", spf("b@mail.strict.com"), dkim("mail.strict.com"), strictBug}, // relaxed only
		row{"alice@strict.com", spf("b@strict.com"), "", nil},
		row{"alice@strict.com", "", dkim("strict.com"), nil},
		row{"alice@strict.com", spf("b@other.net"), "", nil},
		row{"alice@sub.sp.com", "", "", nil},  // sp=none for a subdomain
		row{"alice@sp.com", "", "", nil},      // p=reject for the domain itself
		row{"alice@sub.sp2.com", "", "", nil}, // sp=reject
		row{"alice@sp2.com", "", "", nil},     // p=none
		row{"alice@a.b.spq.com", "", "", nil}, // sp=quarantine two levels down
		row{"alice@sub.sp.com", spf("b@sp.com"), "", nil},
		row{"alice@sub.rej.com", "", dkim("rej.com"), nil},
		row{"alice@sub.rej.com", spf("b@other.net"), "", nil},
		row{"alice@norecord.com", spf("b@norecord.com"), "", nil},
		row{"alice@norecord.com", "", "", nil},
		row{"alice@bad.com", spf("b@bad.com"), "", nil},
		row{"alice@servfail.com", spf("b@servfail.com"), "", servfail},
		row{"alice@rej.com|mallory@none.com", "", "", twoFrom},
		row{"alice@rej.com, mallory@none.com", "", "", unjudged},
		row{"undisclosed-recipients:;", "", "", unjudged},
	)
	agreed := 0
	for _, r := range rows {
		name := fmt.Sprintf("%s/%s/%s", r.from, r.spf, r.dkim)
		var ourResults []authres.Result
		var theirParts []string
		mailFrom := "bounce@client.example.net"
		for _, s := range []string{r.spf, r.dkim} {
			if s == "" {
				continue
			}
			res, err := ParseResult(s)
			if err != nil {
				t.Fatal(err)
			}
			ourResults = append(ourResults, res)
			if res.Method == "spf" {
				// SPF checks MAIL FROM, so the envelope is the address SPF
				// passed for. OpenDMARC 1.4.2 takes the whole
				// smtp.mailfrom value for the domain: it gets the domain
				// form (RFC 8601 allows both; ours reads either).
				mailFrom = prop(res, "smtp", "mailfrom")
				s = "spf=pass smtp.mailfrom=" + addrDomain(mailFrom)
			}
			theirParts = append(theirParts, s)
		}
		trusted := ""
		if len(theirParts) > 0 {
			trusted = "trusted.test; " + strings.Join(theirParts, "; ")
		}
		theirs := openDMARCVerdict(t, addr, r.from, mailFrom, trusted)
		var headers []milter.Header
		for _, f := range strings.Split(r.from, "|") {
			headers = append(headers, milter.Header{Name: "From", Value: " " + f})
		}
		tx := hop(t, []milter.Module{m}, headers, "hello\r\n", func(tx *milter.Txn) {
			for _, res := range ourResults {
				tx.AddAuthResult(res)
			}
		})
		ours := FactsOf(tx).AuthResult
		theirResult, theirDis := verdictOf(theirs)
		ourResult, ourDis := verdictOf(ours)
		gotTheirs, gotOurs := theirResult+"/"+theirDis, ourResult+"/"+ourDis
		switch {
		case r.dev != nil && (gotTheirs != r.dev.theirs || gotOurs != r.dev.ours):
			t.Errorf("%s: known deviation (%s) not as expected:\n  opendmarc: %s (want %s)\n  tollgate:  %s (want %s)", name, r.dev.why, theirs, r.dev.theirs, ours, r.dev.ours)
		case r.dev != nil:
			t.Logf("%s: opendmarc %s, tollgate %s: %s", name, gotTheirs, gotOurs, r.dev.why)
		case gotTheirs != gotOurs:
			t.Errorf("%s:\n  opendmarc: %s\n  tollgate:  %s", name, theirs, ours)
		default:
			agreed++
			t.Logf("%s: dmarc=%s (both)", name, gotOurs)
		}
	}
	t.Logf("%d of %d rows agree; %d are known OpenDMARC deviations", agreed, len(rows), len(rows)-agreed)
}

// verdictOf reads the dmarc= result and the dis= of its comment.
func verdictOf(ar string) (result, dis string) {
	if ar == noAuthResults {
		return "unjudged", ""
	}
	res, err := ParseResult(ar)
	if err != nil {
		return "unparsable: " + ar, ""
	}
	result = res.Result
	dis = "none" // no record: nothing to apply
	if i := strings.Index(strings.ToLower(ar), "dis="); i >= 0 {
		dis = strings.ToLower(strings.FieldsFunc(ar[i+4:], func(r rune) bool { return r == ' ' || r == ')' || r == ';' })[0])
	}
	return result, dis
}
