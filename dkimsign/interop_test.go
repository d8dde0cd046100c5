//go:build e2e

package dkimsign

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/dnstest"
	"github.com/tollgate/tollgate/internal/e2e"
)

// Interop: what tollgate signs, three independent verifiers from Debian
// accept: dkimpy (python3-dkim; RSA and Ed25519), Mail::DKIM
// (libmail-dkim-perl; RSA: Debian's build lacks CryptX for Ed25519) and
// OpenDKIM's opendkim-testmsg (opendkim-tools), which resolves through the
// system resolver: it runs in a private mount namespace whose
// /etc/resolv.conf points at a test DNS server on loopback. A missing
// peer fails the test (scripts/install-test-deps.sh installs them).

const python = "/usr/bin/python3"

// opendkimDNS is where OpenDKIM's resolver is pointed; resolv.conf has no
// port, so the server takes port 53 on an address of its own.
const opendkimDNS = "127.0.15.1"

var interopMessages = map[string]string{
	"plain": "From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: interop\r\n" +
		"Date: Thu, 3 Dec 2026 10:00:00 +0000\r\nMessage-ID: <interop@example.org>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
		"Hello,  this  body has\tspaces and\r\ntrailing blanks   \r\n\r\nand empty lines at the end.\r\n\r\n\r\n",
	"folded headers": "From: \"Alice Example\"\r\n  <alice@example.org>\r\nTo: bob@example.net,\r\n\tcarol@example.net\r\n" +
		"Subject:   many   spaces\t and a\r\n fold  \r\nDate: Thu, 3 Dec 2026 10:00:00 +0000\r\n\r\nshort\r\n",
	// opendkim-testmsg refuses ("dkim_chunk(): Syntax error") a message
	// without the fields RFC 5322 §3.6 requires: these have Date.
	"empty body":  "From: alice@example.org\r\nSubject: nothing\r\nDate: Thu, 3 Dec 2026 10:00:00 +0000\r\n\r\n",
	"blank lines": "From: alice@example.org\r\nSubject: blank\r\nDate: Thu, 3 Dec 2026 10:00:00 +0000\r\n\r\n\r\n \t \r\n\r\n",
}

type peerResult struct {
	D, S, A string
	OK      bool   `json:"ok"`
	Result  string `json:"result"`
	Error   string `json:"error"`
	Detail  string `json:"detail"`
}

func runPeer(t *testing.T, msg []byte, name string, args ...string) []peerResult {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(msg)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, errb.String())
	}
	var res []peerResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%s: %v: %s", name, err, out.String())
	}
	return res
}

// splitMessage cuts a message into header fields (values after the colon)
// and body, as the milter hands them.
func splitMessage(msg string) ([]Header, string) {
	head, body, _ := strings.Cut(msg, "\r\n\r\n")
	var hs []Header
	for _, line := range strings.Split(head, "\r\n") {
		if line[0] == ' ' || line[0] == '\t' {
			hs[len(hs)-1].Value += "\r\n" + line
			continue
		}
		n, v, _ := strings.Cut(line, ":")
		hs = append(hs, Header{Name: n, Value: v})
	}
	return hs, body
}

func signMessage(t *testing.T, keys []Key, msg string, o Options) []byte {
	t.Helper()
	hs, body := splitMessage(msg)
	sigs, err := Sign(keys, hs, bodyHash(canonOr(o.BodyCanon), body, 5), o)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, s := range sigs {
		b.WriteString("DKIM-Signature: " + s + "\r\n")
	}
	return []byte(b.String() + msg)
}

// openDKIMVerify runs opendkim-testmsg on msg with DNS from srv's address
// (opendkimDNS): no output and exit 0 when every signature verifies.
func openDKIMVerify(t *testing.T, msg []byte) (bool, string) {
	t.Helper()
	testmsg := e2e.RequireProgram(t, "opendkim-testmsg", "opendkim-tools")
	unshare := e2e.RequireProgram(t, "unshare", "util-linux")
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver "+opendkimDNS+"\noptions timeout:2 attempts:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(unshare, "-m", "sh", "-c", `mount --bind "$1" /etc/resolv.conf && exec "$2" -t "$3"`, "sh", resolv, testmsg, t.TempDir())
	cmd.Stdin = bytes.NewReader(msg)
	out, err := cmd.CombinedOutput()
	return err == nil && len(bytes.TrimSpace(out)) == 0, fmt.Sprintf("%v: %s", err, out)
}

func TestInteropVerifiers(t *testing.T) {
	e2e.RequireProgram(t, python, "python3")
	keys, dns := testKeys(t)
	dnsFile := filepath.Join(t.TempDir(), "dns.json")
	js := map[string][]string{}
	srv := dnstest.StartOn(t, opendkimDNS+":53")
	for name, txt := range dns {
		js[name] = []string{txt}
		var parts []string
		for v := txt; len(v) > 0; v = v[min(255, len(v)):] {
			parts = append(parts, v[:min(255, len(v))])
		}
		srv.Set(name, &dnstest.Zone{TXT: [][]string{parts}})
	}
	data, _ := json.Marshal(js)
	if err := os.WriteFile(dnsFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	rsaOnly := keys[:1]
	for msgName, msg := range interopMessages {
		for _, canon := range []string{"relaxed/relaxed", "simple/simple", "relaxed/simple", "simple/relaxed"} {
			hc, bc, _ := strings.Cut(canon, "/")
			o := Options{HeaderCanon: hc, BodyCanon: bc, Headers: []string{"+From", "=To", "+Subject", "Date", "Message-ID", "Cc"}, Expire: 24 * time.Hour}
			t.Run(msgName+"/"+canon, func(t *testing.T) {
				dual := signMessage(t, keys, msg, o)
				py := runPeer(t, dual, python, "testdata/dkimpy_verify.py", dnsFile)
				if len(py) != 2 {
					t.Fatalf("dkimpy saw %d signatures: %+v", len(py), py)
				}
				for _, r := range py {
					if !r.OK {
						t.Errorf("dkimpy: %s %s: %s\n%s", r.A, r.S, r.Error, dual)
					}
				}
				pl := runPeer(t, dual, "perl", "testdata/mail_dkim_verify.pl", dnsFile)
				found := false
				for _, r := range pl {
					if r.A == AlgRSASHA256 {
						found = true
						if r.Result != "pass" {
							t.Errorf("Mail::DKIM: %s: %s %s\n%s", r.S, r.Result, r.Detail, dual)
						}
					}
				}
				if !found {
					t.Errorf("Mail::DKIM found no RSA signature: %+v", pl)
				}
				if ok, why := openDKIMVerify(t, signMessage(t, rsaOnly, msg, o)); !ok {
					t.Errorf("OpenDKIM: %s", why)
				}
				// and a change is noticed by all three
				bad := bytes.Replace(signMessage(t, rsaOnly, msg, o), []byte("\r\n\r\n"), []byte("\r\nSubject: added\r\n\r\n"), 1)
				if r := runPeer(t, bad, python, "testdata/dkimpy_verify.py", dnsFile); len(r) != 1 || r[0].OK {
					t.Errorf("dkimpy passed an added Subject: %+v", r)
				}
				if r := runPeer(t, bad, "perl", "testdata/mail_dkim_verify.pl", dnsFile); len(r) != 1 || r[0].Result == "pass" {
					t.Errorf("Mail::DKIM passed an added Subject: %+v", r)
				}
				if ok, _ := openDKIMVerify(t, bad); ok {
					t.Errorf("OpenDKIM passed an added Subject")
				}
			})
		}
	}
}
