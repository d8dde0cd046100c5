//go:build e2e

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/dnstest"
	"github.com/tollgate/tollgate/internal/e2e"
	"github.com/tollgate/tollgate/internal/keyfile"
)

// dkimsignDNS serves the keys to OpenDKIM, which reads resolv.conf (no
// port): an address of its own, apart from dkimsign's interop test.
const dkimsignDNS = "127.0.15.2"

// TestPostfixDKIMSignUnderARCSeal: outbound mail through a real Postfix
// (and Sendmail, below) leaves with two DKIM-Signatures (RSA and Ed25519)
// and an ARC set whose AMS signs them; dkimpy, Mail::DKIM and OpenDKIM
// verify the signatures, dkimpy the seal.
func TestPostfixDKIMSignUnderARCSeal(t *testing.T) {
	// simple/simple signs the header fields as Postfix writes them, folds
	// and spacing exactly: it checks that the milter sees them so.
	for _, canon := range []string{"relaxed/relaxed", "simple/simple"} {
		t.Run(strings.ReplaceAll(canon, "/", "_"), func(t *testing.T) {
			testDKIMSign(t, canon, func(config string) (mtaSend, *daemonProc) {
				pf, d := startPostfixWithTollgate(t, config)
				return mtaSend{pf.Swaks, func() e2e.Message { return pf.WaitMessages(t, 1, 30*time.Second)[0] }}, d
			})
		})
	}
}

// The same through Sendmail, which hands header values to milters in its
// own way (no leading-space option): simple/simple checks it.
func TestSendmailDKIMSignUnderARCSeal(t *testing.T) {
	for _, canon := range []string{"relaxed/relaxed", "simple/simple"} {
		t.Run(strings.ReplaceAll(canon, "/", "_"), func(t *testing.T) {
			testDKIMSign(t, canon, func(config string) (mtaSend, *daemonProc) {
				milterAddr, d := startTollgateInet(t, config)
				host, port, _ := strings.Cut(milterAddr, ":")
				flags, macros := sendmailSnippet(t, "../../deploy/sendmail/sendmail.mc")
				sm := e2e.StartSendmail(t, e2e.SendmailOptions{Milter: "inet:" + port + "@" + host, MilterFlags: flags, MilterMacros: macros})
				swaks := func(t testing.TB, args ...string) e2e.SwaksResult {
					return e2e.SwaksFrom(t, "127.0.0.2", append([]string{"--server", sm.Addr}, args...)...)
				}
				return mtaSend{swaks, func() e2e.Message { return sm.WaitMessages(t, 1, 30*time.Second)[0] }}, d
			})
		})
	}
}

// mtaSend submits a message to an MTA under test and waits for it at the sink.
type mtaSend struct {
	swaks func(t testing.TB, args ...string) e2e.SwaksResult
	wait  func() e2e.Message
}

func testDKIMSign(t *testing.T, canon string, start func(config string) (mtaSend, *daemonProc)) {
	python := e2e.RequireProgram(t, "/usr/bin/python3", "python3-dkim")
	testmsg := e2e.RequireProgram(t, "opendkim-testmsg", "opendkim-tools")
	unshare := e2e.RequireProgram(t, "unshare", "util-linux")
	dir := t.TempDir()
	records := map[string][]string{}
	srv := dnstest.StartOn(t, dkimsignDNS+":53")
	key := func(kind, selector string) string {
		_, pemBytes, txt, err := keyfile.Generate(kind, 0)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, selector+".key")
		if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
			t.Fatal(err)
		}
		name := selector + "._domainkey.example.org"
		records[name] = []string{txt}
		var parts []string
		for v := txt; len(v) > 0; v = v[min(255, len(v)):] {
			parts = append(parts, v[:min(255, len(v))])
		}
		srv.Set(name, &dnstest.Zone{TXT: [][]string{parts}})
		return path
	}
	rsaKey, edKey, arcKey := key("rsa", "rsa2026"), key("ed25519", "ed2026"), key("rsa", "arc2026")
	dnsFile := filepath.Join(dir, "dns.json")
	dnsJSON, _ := json.Marshal(records)
	if err := os.WriteFile(dnsFile, dnsJSON, 0o644); err != nil {
		t.Fatal(err)
	}

	mta, d := start(`
authserv_id: mx.tollgate.test
dkim_sign:
  keys:
    - {domain: example.org, selector: rsa2026, key: ` + rsaKey + `}
    - {domain: example.org, selector: ed2026, key: ` + edKey + `, algorithm: ed25519-sha256}
  expire: 720h
  canonicalization: ` + canon + `
arc:
  sign: [{domain: example.org, selector: arc2026, key: ` + arcKey + `}]
acl:
  rcpt:
    - accept: {name: outbound, control: [dkim_sign, arc_sign]}
`)
	res := mta.swaks(t, "--from", "alice@example.org", "--to", "bob@example.net", "--header", "Subject:   signed\n\t and  sealed ",
		"--body", "Hello Bob,  \r\n\r\nthis leaves signed.\r\n\r\n")
	if res.ExitCode != 0 {
		t.Fatalf("exit %d:\n%s", res.ExitCode, res.Output)
	}
	msg := mta.wait()
	raw := bytes.ReplaceAll(msg.Raw, []byte("\n"), []byte("\r\n"))
	var names []string
	for _, h := range msg.Headers[:6] {
		names = append(names, h.Name)
	}
	if got := strings.Join(names, " "); got != "ARC-Seal ARC-Message-Signature ARC-Authentication-Results Authentication-Results DKIM-Signature DKIM-Signature" {
		t.Errorf("top header fields: %s", got)
	}
	for _, h := range msg.Headers {
		if h.Name == "Subject" && !strings.Contains(h.Value, "\n\t and  sealed ") {
			t.Errorf("the Subject did not arrive folded as sent: %q", h.Value)
		}
	}
	sigs := msg.Header("DKIM-Signature")
	if len(sigs) != 2 || !strings.Contains(sigs[0], "c="+canon+";") || !strings.Contains(sigs[0], "a=rsa-sha256;") || !strings.Contains(sigs[1], "a=ed25519-sha256;") ||
		!regexp.MustCompile(`\bt=\d+; x=\d+;`).MatchString(sigs[0]) {
		t.Errorf("DKIM-Signatures %q", sigs)
	}
	ams := msg.Header("ARC-Message-Signature")
	if len(ams) != 1 || strings.Count(strings.ReplaceAll(ams[0], "\t", ""), "dkim-signature") != 2 {
		t.Errorf("the AMS does not sign both DKIM-Signatures: %q", ams)
	}
	if as := msg.Header("ARC-Seal"); len(as) != 1 || !regexp.MustCompile(`\bt=\d+`).MatchString(as[0]) {
		t.Errorf("ARC-Seal without t= (the default now): %q", as)
	}

	peer := func(name string, args ...string) []byte {
		cmd := exec.Command(name, args...)
		cmd.Stdin = bytes.NewReader(raw)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return out
	}
	var py []struct {
		A, S  string
		OK    bool `json:"ok"`
		Error string
	}
	if err := json.Unmarshal(peer(python, "../../dkimsign/testdata/dkimpy_verify.py", dnsFile), &py); err != nil || len(py) != 2 {
		t.Fatalf("dkimpy: %v %+v", err, py)
	}
	for _, r := range py {
		if !r.OK {
			t.Errorf("dkimpy: %s %s: %s\n%s", r.A, r.S, r.Error, raw)
		}
	}
	var pl []struct{ A, S, Result, Detail string }
	if err := json.Unmarshal(peer("perl", "../../dkimsign/testdata/mail_dkim_verify.pl", dnsFile), &pl); err != nil {
		t.Fatal(err)
	}
	rsaPass := false
	for _, r := range pl {
		rsaPass = rsaPass || (r.A == "rsa-sha256" && r.Result == "pass")
	}
	if !rsaPass {
		t.Errorf("Mail::DKIM: %+v", pl)
	}
	// OpenDKIM reads the system resolver: a private mount namespace gets a
	// resolv.conf that points at the test server.
	resolv := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver "+dkimsignDNS+"\noptions timeout:2 attempts:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(unshare, "-m", "sh", "-c", `mount --bind "$1" /etc/resolv.conf && exec "$2" -t "$3"`, "sh", resolv, testmsg, t.TempDir())
	cmd.Stdin = bytes.NewReader(raw)
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("OpenDKIM: %v: %s", err, out)
	}
	arcOut := peer(python, "../../arc/testdata/dkimpy_arc.py", "verify", dnsFile)
	var verdict struct{ CV, Reason string }
	if err := json.Unmarshal(arcOut, &verdict); err != nil || verdict.CV != "pass" {
		t.Errorf("dkimpy ARC: %s (%v)", arcOut, err)
	}
	d.waitLog(t, "DKIM-Sign=example.org")
	if !d.waitMetric(t, `tollgate_dkim_sign_total{result="signed"} 1`) {
		_, body := d.get(t, "/metrics")
		t.Errorf("metrics:\n%s", grepLines(body, "tollgate_dkim"))
	}
}
