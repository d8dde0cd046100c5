//go:build e2e

package dkim

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/dnstest"
	"github.com/tollgate/tollgate/internal/e2e"
	"github.com/tollgate/tollgate/milter"
	"github.com/tollgate/tollgate/policy"
)

// peerKeys are the keys the peers sign with, as files they read, and their
// key records.
type peerKeys struct {
	rsaFile, edFile string // PKCS#1 PEM; base64 of the Ed25519 seed (dkimpy's format)
	rsaTXT, edTXT   string
}

func makePeerKeys(t *testing.T) peerKeys {
	t.Helper()
	dir := t.TempDir()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pk := peerKeys{rsaFile: filepath.Join(dir, "rsa.pem"), edFile: filepath.Join(dir, "ed25519.key"),
		rsaTXT: "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(pub),
		edTXT:  "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(edPub)}
	os.WriteFile(pk.rsaFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), 0o600)
	os.WriteFile(pk.edFile, []byte(base64.StdEncoding.EncodeToString(edPriv.Seed())+"\n"), 0o600)
	return pk
}

// crlf gives a message CRLF line ends, as it travels in SMTP.
func crlf(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}

func runPeer(t *testing.T, stdin string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, errOut.String())
	}
	return out.String()
}

// A peer signs a message (CRLF line ends) as example.org with one of the
// selectors, and returns it signed.
type peer struct {
	name     string
	selector string // rsa or ed
	canon    string // header/body
	sign     func(t *testing.T, k peerKeys, msg string) string
}

var insHeader = regexp.MustCompile(`(?s)### INSHEADER: idx=0 hname='DKIM-Signature' hvalue='(.*?)'\n`)

// openDKIMSign signs with the opendkim daemon's test mode (-t), which
// prints the header field it would add; opendkim-testmsg of Debian 12
// signs rsa-sha1 only and garbles b=, so it is not used.
func openDKIMSign(canon string) func(*testing.T, peerKeys, string) string {
	return func(t *testing.T, k peerKeys, msg string) string {
		bin := e2e.RequireProgram(t, "/usr/sbin/opendkim", "opendkim")
		dir := t.TempDir()
		conf := filepath.Join(dir, "opendkim.conf")
		os.WriteFile(conf, []byte("Mode s\nDomain example.org\nSelector rsa\nKeyFile "+k.rsaFile+
			"\nSignatureAlgorithm rsa-sha256\nCanonicalization "+canon+"\nSyslog no\nRequireSafeKeys no\n"+
			"SignHeaders From,To,Subject,Date,Message-ID,MIME-Version,Content-Type\n"), 0o644)
		file := filepath.Join(dir, "message.eml")
		os.WriteFile(file, []byte(msg), 0o644)
		out := runPeer(t, "", bin, "-x", conf, "-t", file, "-vv")
		m := insHeader.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("opendkim added no DKIM-Signature:\n%s", out)
		}
		return "DKIM-Signature: " + crlf(m[1]) + "\r\n" + msg
	}
}

func dkimpySign(algo, canon string) func(*testing.T, peerKeys, string) string {
	return func(t *testing.T, k peerKeys, msg string) string {
		bin := e2e.RequireProgram(t, "/usr/bin/dkimsign", "python3-dkim")
		hc, bc, _ := strings.Cut(canon, "/")
		key, sel := k.rsaFile, "rsa"
		if algo == "ed25519-sha256" {
			key, sel = k.edFile, "ed"
		}
		return runPeer(t, msg, bin, "--signalg", algo, "--hcanon", hc, "--bcanon", bc, sel, "example.org", key)
	}
}

func mailDKIMSign(canon string) func(*testing.T, peerKeys, string) string {
	return func(t *testing.T, k peerKeys, msg string) string {
		perl := e2e.RequireProgram(t, "/usr/bin/perl", "perl")
		if out, err := exec.Command(perl, "-MMail::DKIM::Signer", "-e", "1").CombinedOutput(); err != nil {
			t.Fatalf("Mail::DKIM is missing (%v: %s): install the Debian package libmail-dkim-perl", err, out)
		}
		return runPeer(t, msg, perl, "testdata/mail_dkim_sign.pl", k.rsaFile, "example.org", "rsa", "rsa-sha256", canon)
	}
}

var peers = []peer{
	{"opendkim", "rsa", "relaxed/relaxed", openDKIMSign("relaxed/relaxed")},
	{"opendkim", "rsa", "simple/simple", openDKIMSign("simple/simple")},
	{"dkimpy", "rsa", "relaxed/simple", dkimpySign("rsa-sha256", "relaxed/simple")},
	{"dkimpy", "rsa", "simple/relaxed", dkimpySign("rsa-sha256", "simple/relaxed")},
	{"dkimpy", "ed", "relaxed/relaxed", dkimpySign("ed25519-sha256", "relaxed/relaxed")},
	{"Mail::DKIM", "rsa", "relaxed/simple", mailDKIMSign("relaxed/simple")},
	{"Mail::DKIM", "rsa", "simple/simple", mailDKIMSign("simple/simple")},
}

// TestPeersSignTollgateVerifies: messages signed by OpenDKIM, dkimpy and
// Mail::DKIM pass through the module a policy builds, with the keys in a
// loopback DNS server; changing the body or a signed header fails them.
func TestPeersSignTollgateVerifies(t *testing.T) {
	keys := makePeerKeys(t)
	srv := dnstest.Start(t)
	publish(srv, "rsa._domainkey.example.org", keys.rsaTXT)
	publish(srv, "ed._domainkey.example.org", keys.edTXT)
	p, err := policy.Parse("t.yaml", []byte(`
authserv_id: mx.example.net
dns: {server: "`+srv.Addr+`", timeout: 2s}
dkim: {}
acl:
  data:
    - accept: {name: signed, dkim: [pass], dkim_signers: [example.org]}
    - accept: {name: other}
`), specs...)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := policy.NewEnv(nil, prometheus.NewRegistry()).Runtime(p)
	if err != nil {
		t.Fatal(err)
	}
	m := rt.Modules()[0].(*Module)
	files, _ := filepath.Glob("testdata/messages/*.eml")
	if len(files) < 3 {
		t.Fatalf("messages: %v", files)
	}
	for _, pr := range peers {
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			msg := crlf(string(data))
			t.Run(pr.name+"/"+pr.selector+"/"+pr.canon+"/"+filepath.Base(file), func(t *testing.T) {
				signed := pr.sign(t, keys, msg)
				if !strings.HasPrefix(signed, "DKIM-Signature:") {
					t.Fatalf("%s did not sign:\n%s", pr.name, signed)
				}
				verify := func(raw string) (*Facts, string, string) {
					hs, body := splitMessage(t, raw, "\r\n")
					tx := run(t, m, hs, body, 3000)
					s := &milter.Session{Vars: map[string]string{}}
					tx.Session = s
					d, err := rt.Evaluate(context.Background(), milter.StageData, s, tx, nil)
					if err != nil {
						t.Fatal(err)
					}
					r := dkimResults(tx)
					if len(r) != 1 {
						t.Fatalf("results %q", r)
					}
					return FactsOf(tx), r[0], d.Rule
				}
				f, ar, rule := verify(signed)
				want := "dkim=pass header.d=example.org header.s=" + pr.selector + " header.b="
				if f.Status != StatusPass || rule != "signed" || !strings.HasPrefix(ar, want) {
					t.Fatalf("%s's signature: %s, rule %s, facts %+v\n%s", pr.name, ar, rule, f, signed)
				}
				head, body, _ := strings.Cut(signed, "\r\n\r\n")
				tamperedBody := head + "\r\n\r\n" + strings.Replace(body, "e", "E", 1)
				if f, ar, rule := verify(tamperedBody); f.Status != StatusFail || f.Reason != "bodyhash_mismatch" || rule != "other" {
					t.Errorf("body changed: %s, rule %s, facts %+v", ar, rule, f)
				}
				tamperedHeader := strings.Replace(signed, "\r\nSubject: ", "\r\nSubject: Re: ", 1)
				if f, ar, _ := verify(tamperedHeader); f.Status != StatusFail || f.Reason != "signature_incorrect" {
					t.Errorf("Subject changed: %s, facts %+v", ar, f)
				}
			})
		}
	}
}
