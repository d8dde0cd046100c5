//go:build e2e

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/arc"
	"github.com/tollgate/tollgate/internal/dnstest"
)

// readmeDMARCExample is the first configuration the README's DMARC section
// prints: the newcomer's first try, run as printed but for the resolver's
// address.
func readmeDMARCExample(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n### DMARC\n")
	if !ok {
		t.Fatal("README has no DMARC section")
	}
	m := yamlBlock.FindStringSubmatch(section)
	if m == nil {
		t.Fatal("README's DMARC section has no YAML block")
	}
	return m[1]
}

// Through a real Postfix: a message from a p=reject domain that nothing
// authenticates is refused with the README's message, one from a p=none
// domain leaves with the dmarc= result in the one Authentication-Results,
// and the status is counted and tagged.
func TestPostfixDMARC(t *testing.T) {
	dns := dnstest.Start(t)
	dns.Set("_dmarc.rej.example", &dnstest.Zone{RRs: []string{`TXT "v=DMARC1; p=reject"`}})
	dns.Set("_dmarc.none.example", &dnstest.Zone{RRs: []string{`TXT "v=DMARC1; p=none; sp=reject"`}})
	dns.Set("_dmarc.pass.example", &dnstest.Zone{RRs: []string{`TXT "v=DMARC1; p=reject"`}})
	// the envelope senders' SPF: the test's Postfix relays from 127.0.0.1
	dns.Set("sender.example", &dnstest.Zone{RRs: []string{`TXT "v=spf1 ip4:127.0.0.1 -all"`}})
	dns.Set("pass.example", &dnstest.Zone{RRs: []string{`TXT "v=spf1 ip4:127.0.0.1 -all"`}})
	config := readmeDMARCExample(t)
	for _, want := range []string{`"127.0.0.1:53"`, "\nspf: {}\n", "\ndkim: {}\n", "\ndmarc: {}\n"} {
		if !strings.Contains(config, want) {
			t.Fatalf("the README's first DMARC example no longer has %q:\n%s", want, config)
		}
	}
	pf, d := startPostfixWithTollgate(t, strings.Replace(config, `"127.0.0.1:53"`, `"`+dns.Addr+`"`, 1))

	res := pf.Swaks(t, "--from", "bounce@sender.example", "--to", "bob@example.org", "--header", "From: Alice <alice@rej.example>",
		"--header", "Subject: spoofed")
	if !strings.Contains(res.Output, "550 5.7.1 DMARC policy of rej.example") {
		t.Errorf("not refused by DMARC:\n%s", res.Output)
	}
	res = pf.Swaks(t, "--from", "bounce@sender.example", "--to", "bob@example.org", "--header", "From: Carol <carol@none.example>",
		"--header", "Subject: monitored")
	if res.ExitCode != 0 {
		t.Fatalf("swaks exit %d:\n%s", res.ExitCode, res.Output)
	}
	// aligned SPF passes DMARC, p=reject or not
	res = pf.Swaks(t, "--from", "bounce@pass.example", "--to", "bob@example.org", "--header", "From: Dave <dave@pass.example>",
		"--header", "Subject: aligned")
	if res.ExitCode != 0 {
		t.Fatalf("swaks exit %d:\n%s", res.ExitCode, res.Output)
	}
	// one Authentication-Results with every method, in method order
	want := map[string][]string{
		"monitored": {"mx.example.org; spf=pass (", " smtp.mailfrom=bounce@sender.example; dkim=none; ",
			"; dmarc=fail (p=none sp=reject dis=none) header.from=none.example policy.dmarc=none"},
		"aligned": {"mx.example.org; spf=pass (", " smtp.mailfrom=bounce@pass.example; dkim=none; ",
			"; dmarc=pass (p=reject dis=none) header.from=pass.example"},
	}
	for _, msg := range pf.WaitMessages(t, 2, 30*time.Second) {
		subject := strings.TrimSpace(strings.Join(msg.Header("Subject"), ""))
		ar := msg.Header("Authentication-Results")
		if len(ar) != 1 {
			t.Errorf("%s: Authentication-Results %q, want one", subject, ar)
			continue
		}
		value := strings.Join(strings.Fields(ar[0]), " ")
		for _, part := range want[subject] {
			if !strings.Contains(value, part) {
				t.Errorf("%s: Authentication-Results %q has no %q", subject, value, part)
			}
		}
		if !strings.HasPrefix(value, want[subject][0]) {
			t.Errorf("%s: Authentication-Results %q does not start %q", subject, value, want[subject][0])
		}
	}
	d.waitLog(t, "DMARC=reject")
	for _, line := range []string{`tollgate_dmarc_results_total{status="reject"} 1`, `tollgate_dmarc_results_total{status="none"} 1`,
		`tollgate_dmarc_results_total{status="accept"} 1`, `tollgate_spf_results_total{result="pass"} 3`} {
		if !d.waitMetric(t, line) {
			t.Errorf("no %s", line)
		}
	}
}

// The ARC seal a forwarder adds carries the dmarc= result in its AAR:
// DMARC runs before ARC seals.
func TestPostfixDMARCInSeal(t *testing.T) {
	dir := t.TempDir()
	_, pemBytes, _, err := arc.GenerateKey("rsa", 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "arc.key")
	if err := os.WriteFile(keyFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	dns := dnstest.Start(t)
	dns.Set("_dmarc.none.example", &dnstest.Zone{RRs: []string{`TXT "v=DMARC1; p=none"`}})
	pf, _ := startPostfixWithTollgate(t, `
authserv_id: mx.example.org
dns: {server: "`+dns.Addr+`"}
dmarc: {}
arc:
  sign: [{domain: example.org, selector: s1, key: `+keyFile+`}]
acl:
  data:
    - accept: {control: [arc_sign]}
`)
	res := pf.Swaks(t, "--from", "bounce@sender.example", "--to", "bob@example.org", "--header", "From: carol@none.example")
	if res.ExitCode != 0 {
		t.Fatalf("swaks exit %d:\n%s", res.ExitCode, res.Output)
	}
	msg := pf.WaitMessages(t, 1, 30*time.Second)[0]
	aar := msg.Header("ARC-Authentication-Results")
	if len(aar) != 1 || !strings.Contains(aar[0], "dmarc=fail (p=none dis=none) header.from=none.example") || !strings.Contains(aar[0], "arc=none") {
		t.Errorf("ARC-Authentication-Results %q", aar)
	}
}
