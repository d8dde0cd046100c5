//go:build e2e

package arc

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tollgate/tollgate/internal/sigcrypto"
)

// Interop with two independent ARC implementations from Debian, driven as
// subprocesses through the scripts in testdata/, with DNS served from a
// file: dkimpy (python3-dkim) and Mail::DKIM (libmail-dkim-perl). A
// missing one fails the test: CI installs them with
// scripts/install-test-deps.sh.

const python = "/usr/bin/python3"

var checkPeersOnce sync.Once
var peersErr string

func requirePeers(t *testing.T) {
	t.Helper()
	checkPeersOnce.Do(func() {
		var missing []string
		if err := exec.Command(python, "-c", "import dkim, authres").Run(); err != nil {
			missing = append(missing, "python3-dkim and python3-authres (/usr/bin/python3 -c 'import dkim, authres': "+err.Error()+")")
		}
		if err := exec.Command("perl", "-MMail::DKIM::ARC::Verifier", "-MMail::DKIM::ARC::Signer", "-e1").Run(); err != nil {
			missing = append(missing, "libmail-dkim-perl ("+err.Error()+")")
		}
		if err := exec.Command("perl", "-MNet::DNS::Resolver::Mock", "-e1").Run(); err != nil {
			missing = append(missing, "libnet-dns-resolver-mock-perl ("+err.Error()+")")
		}
		peersErr = strings.Join(missing, "; ")
	})
	if peersErr != "" {
		t.Fatalf("interop peers missing, install the Debian packages (scripts/install-test-deps.sh): %s", peersErr)
	}
}

// hop is one ARC intermediary of a test chain.
type hop struct {
	impl    string // "tollgate", "dkimpy", "maildkim"
	domain  string
	sel     string
	keyFile string
	signer  sigcrypto.Signer
}

type interopEnv struct {
	dir   string
	dns   mapResolver
	dnsJS string
	hops  []hop
}

func newInteropEnv(t *testing.T) *interopEnv {
	t.Helper()
	requirePeers(t)
	e := &interopEnv{dir: t.TempDir(), dns: mapResolver{}}
	for i, name := range []string{"hop1", "hop2", "hop3"} {
		data, err := os.ReadFile(filepath.Join("testdata", "keys", name+".pem"))
		if err != nil {
			t.Fatal(err)
		}
		k, err := ParsePrivateKey(data)
		if err != nil {
			t.Fatal(err)
		}
		// the peers read the key from a file; LoadKeyFile wants 0600
		keyFile := filepath.Join(e.dir, name+".pem")
		if err := os.WriteFile(keyFile, data, 0o600); err != nil {
			t.Fatal(err)
		}
		h := hop{domain: fmt.Sprintf("hop%d.example", i+1), sel: "s" + name, keyFile: keyFile, signer: k}
		der, _ := x509.MarshalPKIXPublicKey(k.Public())
		e.dns[h.sel+"._domainkey."+h.domain] = []string{"v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)}
		e.hops = append(e.hops, h)
	}
	js, _ := json.Marshal(e.dns)
	e.dnsJS = filepath.Join(e.dir, "dns.json")
	if err := os.WriteFile(e.dnsJS, js, 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

const interopMessage = "From: Alice <alice@origin.example>\r\n" +
	"To: list@hop1.example\r\n" +
	"Subject: ARC interop\r\n" +
	"Date: Tue, 3 Jan 2017 12:22:54 -0800\r\n" +
	"Message-ID: <interop@origin.example>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Hello,  this  body has\tspaces and\r\n" +
	"trailing blanks   \r\n" +
	"\r\n" +
	"and empty lines at the end.\r\n\r\n\r\n"

func (e *interopEnv) run(t *testing.T, stdin string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

// verifyAll returns the verdict of each implementation on msg, and
// tollgate's full result.
func (e *interopEnv) verifyAll(t *testing.T, msg string) (map[string]string, *Result, map[string]bool) {
	t.Helper()
	got := map[string]string{}
	var py struct {
		CV       string          `json:"cv"`
		Reason   string          `json:"reason"`
		AMSValid map[string]bool `json:"ams_valid"`
	}
	if err := json.Unmarshal([]byte(e.run(t, msg, python, "testdata/dkimpy_arc.py", "verify", e.dnsJS)), &py); err != nil {
		t.Fatal(err)
	}
	got["dkimpy"] = py.CV
	var pl struct{ Result, Detail string }
	if err := json.Unmarshal([]byte(e.run(t, msg, "perl", "testdata/mail_dkim_arc.pl", "verify", e.dnsJS)), &pl); err != nil {
		t.Fatal(err)
	}
	got["maildkim"] = pl.Result
	hs, body := parseMessage(msg)
	_, r := verifyMessage(VerifyOptions{Resolver: e.dns}, hs, body, 1000)
	got["tollgate"] = string(r.State)
	if t.Failed() || testing.Verbose() {
		t.Logf("dkimpy: %s %q ams_valid=%v; Mail::DKIM: %s %q; tollgate: %s %q oldest-pass=%d",
			py.CV, py.Reason, py.AMSValid, pl.Result, pl.Detail, r.State, r.Reason, r.OldestPass)
	}
	return got, r, py.AMSValid
}

// seal runs message msg through one ARC hop. modify, if set, changes the
// message after the hop verified it and before it seals, as a mailing
// list does.
func (e *interopEnv) seal(t *testing.T, h hop, msg string, modify func(string) string) string {
	t.Helper()
	srvid := "mx." + h.domain
	if h.impl != "tollgate" {
		// the scripts verify with their own implementation, then seal
		if modify != nil {
			// verify first, modify, then seal with the verdict taken
			// before the change
			var cv string
			switch h.impl {
			case "dkimpy":
				var py struct{ CV string }
				json.Unmarshal([]byte(e.run(t, msg, python, "testdata/dkimpy_arc.py", "verify", e.dnsJS)), &py)
				cv = py.CV
			case "maildkim":
				var pl struct{ Result string }
				json.Unmarshal([]byte(e.run(t, msg, "perl", "testdata/mail_dkim_arc.pl", "verify", e.dnsJS)), &pl)
				cv = pl.Result
			}
			if cv != "pass" && cv != "none" {
				t.Fatalf("%s saw %q before the change", h.impl, cv)
			}
			msg = modify(msg)
			return e.sealWithCV(t, h, msg, cv)
		}
		return e.sealWithCV(t, h, msg, "")
	}
	hs, body := parseMessage(msg)
	v, r := verifyMessage(VerifyOptions{Resolver: e.dns}, hs, body, 777)
	if modify != nil {
		hs, _ = parseMessage(modify(msg))
	}
	ar := Header{"Authentication-Results", " " + srvid + "; arc=" + string(r.State)}
	if r.State == StatePass {
		ar.Value += fmt.Sprintf(" header.oldest-pass=%d", r.HeaderOldestPass())
	}
	out := append([]Header{ar}, hs...)
	set, err := v.Seal(SealOptions{
		Key:        Key{Domain: h.domain, Selector: h.sel, Signer: h.signer},
		AuthServID: srvid, Timestamps: true, Expire: DefaultExpire,
	}, out, []string{ar.Value})
	if err != nil {
		t.Fatalf("tollgate seal: %v", err)
	}
	return formatMessage(append(set, out...), body)
}

func (e *interopEnv) sealWithCV(t *testing.T, h hop, msg, cv string) string {
	t.Helper()
	args := []string{"seal", e.dnsJS, h.keyFile, h.domain, h.sel, "mx." + h.domain}
	if cv != "" {
		args = append(args, cv)
	}
	switch h.impl {
	case "dkimpy":
		return e.run(t, msg, python, append([]string{"testdata/dkimpy_arc.py"}, args...)...)
	case "maildkim":
		return e.run(t, msg, "perl", append([]string{"testdata/mail_dkim_arc.pl"}, args...)...)
	}
	t.Fatalf("unknown implementation %q", h.impl)
	return ""
}

func prefixSubject(msg string) string {
	return strings.Replace(msg, "\r\nSubject: ", "\r\nSubject: [list] ", 1)
}

func TestInteropOneHop(t *testing.T) {
	e := newInteropEnv(t)
	for _, impl := range []string{"tollgate", "dkimpy", "maildkim"} {
		t.Run(impl, func(t *testing.T) {
			h := e.hops[0]
			h.impl = impl
			msg := e.seal(t, h, interopMessage, nil)
			got, r, _ := e.verifyAll(t, msg)
			for peer, cv := range got {
				if cv != "pass" {
					t.Errorf("%s sealed, %s says %q", impl, peer, cv)
				}
			}
			if r.OldestPass != 1 || r.Instances != 1 || strings.Join(r.Domains, ":") != h.domain {
				t.Errorf("tollgate result %+v", r)
			}
			// a body changed after sealing fails everywhere
			got, _, _ = e.verifyAll(t, strings.Replace(msg, "Hello,", "Hullo,", 1))
			for peer, cv := range got {
				if cv != "fail" {
					t.Errorf("body modified after %s sealed: %s says %q, want fail", impl, peer, cv)
				}
			}
		})
	}
}

func TestInteropThreeHops(t *testing.T) {
	e := newInteropEnv(t)
	orders := [][3]string{
		{"tollgate", "dkimpy", "maildkim"},
		{"dkimpy", "maildkim", "tollgate"},
		{"maildkim", "tollgate", "dkimpy"},
		{"dkimpy", "tollgate", "maildkim"},
	}
	for _, order := range orders {
		t.Run(strings.Join(order[:], "-"), func(t *testing.T) {
			msg := interopMessage
			for i, impl := range order {
				h := e.hops[i]
				h.impl = impl
				var modify func(string) string
				if i == 1 {
					// the second hop is a mailing list: it tags the
					// subject after validating, which breaks AMS 1
					modify = prefixSubject
				}
				msg = e.seal(t, h, msg, modify)
			}
			got, r, amsValid := e.verifyAll(t, msg)
			for peer, cv := range got {
				if cv != "pass" {
					t.Errorf("%s says %q, want pass", peer, cv)
				}
			}
			if r.Instances != 3 || r.OldestPass != 2 || r.HeaderOldestPass() != 2 {
				t.Errorf("tollgate: instances %d oldest-pass %d, want 3 and 2 (AMS 1 broken by the subject tag)", r.Instances, r.OldestPass)
			}
			if amsValid["1"] || !amsValid["2"] || !amsValid["3"] {
				t.Errorf("dkimpy AMS validity %v, want 1 false, 2 and 3 true", amsValid)
			}
			want := "hop1.example:hop2.example:hop3.example"
			if d := strings.Join(r.Domains, ":"); d != want {
				t.Errorf("domains %q, want %q", d, want)
			}
			got, _, _ = e.verifyAll(t, strings.Replace(msg, "Hello,", "Hullo,", 1))
			for peer, cv := range got {
				if cv != "fail" {
					t.Errorf("body modified after the last seal: %s says %q, want fail", peer, cv)
				}
			}
		})
	}
}

// TestInteropFailedChain: a chain broken before the second hop is sealed
// cv=fail by tollgate over its own set only (RFC 8617 §5.1.2); both peers
// must read the result as fail, and a third hop must not extend it.
func TestInteropFailedChain(t *testing.T) {
	e := newInteropEnv(t)
	h1 := e.hops[0]
	h1.impl = "dkimpy"
	msg := e.seal(t, h1, interopMessage, nil)
	msg = prefixSubject(msg) // breaks AMS 1, the newest: the chain fails
	h2 := e.hops[1]
	h2.impl = "tollgate"
	msg = e.seal(t, h2, msg, nil)
	if !strings.Contains(msg, "cv=fail") {
		t.Fatalf("second hop did not seal cv=fail:\n%s", msg)
	}
	got, r, _ := e.verifyAll(t, msg)
	if got["dkimpy"] == "pass" || got["maildkim"] != "fail" || got["tollgate"] != "fail" {
		t.Errorf("verdicts %v, want fail (dkimpy may say '' for a terminated chain)", got)
	}
	if r.ArrivedCV != "fail" {
		t.Errorf("ArrivedCV %q", r.ArrivedCV)
	}
	hs, body := parseMessage(msg)
	v, _ := verifyMessage(VerifyOptions{Resolver: e.dns}, hs, body, 0)
	if _, err := v.Seal(SealOptions{Key: Key{Domain: "hop3.example", Selector: "shop3", Signer: e.hops[2].signer}, AuthServID: "mx.hop3.example"}, hs, nil); err == nil {
		t.Fatal("a chain that arrived with cv=fail was extended")
	}
}

func TestPeerFailSealScope(t *testing.T) {
	e := newInteropEnv(t)
	h1 := e.hops[0]
	h1.impl = "tollgate"
	broken := prefixSubject(e.seal(t, h1, interopMessage, nil))
	for _, impl := range []string{"dkimpy", "maildkim"} {
		t.Run(impl, func(t *testing.T) {
			h2 := e.hops[1]
			h2.impl = impl
			hs, body := parseMessage(e.seal(t, h2, broken, nil))
			v, r := verifyMessage(VerifyOptions{Resolver: e.dns}, hs, body, 0)
			if r.ArrivedCV != "fail" {
				t.Fatalf("%s sealed cv=%q", impl, r.ArrivedCV)
			}
			if f := v.verifyAS(context.Background(), 2, 2); f != nil {
				t.Errorf("%s's cv=fail seal over its own set: %s", impl, f.reason)
			}
		})
	}
}
