package srsspec

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/feature"
	"github.com/tollgate/tollgate/milter"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/srs"
)

var specs = []feature.Spec{Spec}

func mustParse(t *testing.T, yml string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("test.yaml", []byte(yml), specs...)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return p
}

func newEnv() *policy.Env { return policy.NewEnv(nil, prometheus.NewRegistry()) }

func rcptWith(addr string, f *srs.RcptFacts) *milter.Recipient {
	r := &milter.Recipient{Addr: addr}
	r.SetFact("srs", f)
	return r
}

func secretsFile(t *testing.T, mode os.FileMode, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "srs.secrets")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), mode); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, mode)
	return path
}

func TestSRSConfig(t *testing.T) {
	secrets := secretsFile(t, 0o600, "new-secret", "old-secret")
	p := mustParse(t, `
srs: {domain: fwd.example.org, secrets_file: `+secrets+`, hash_length: 6, max_age: 21d, local_domains: [example.org], exclude_domains: ["*.lists.example"]}
acl:
  rcpt:
    - deny:   {srs: [invalid, expired], message: "550 5.1.1 bad bounce address"}
    - accept: {srs: [valid], add_header: "X-SRS: $srs_status $srs_orig_recipient -> $srs_recipient"}
    - accept: {control: [srs_forward]}
`)
	s, err := Rewriter(p.Section("srs"))
	if err != nil || s.Domain() != "fwd.example.org" {
		t.Fatal(err)
	}
	if sec := p.Section("srs").(*section); !sec.local("example.org") || !sec.local("x.lists.example") || sec.local("example.net") {
		t.Error("local/exclude domains")
	}
	rt, err := newEnv().Runtime(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(rt.Modules()) != 1 || rt.Modules()[0].Name() != "srs" {
		t.Fatalf("modules %v", rt.Modules())
	}
	fwd, _ := s.Forward("alice@example.net")
	sess := &milter.Session{Vars: map[string]string{}}
	for _, tc := range []struct {
		r    *milter.Recipient
		rule string
	}{
		{rcptWith(fwd, &srs.RcptFacts{Status: "valid", Recipient: "alice@example.net"}), "rcpt/2"},
		{rcptWith("SRS0=x@fwd.example.org", &srs.RcptFacts{Status: "invalid"}), "rcpt/1"},
		{&milter.Recipient{Addr: "bob@example.org"}, "rcpt/3"},
	} {
		tx := &milter.Txn{Session: sess, Rcpts: []*milter.Recipient{tc.r}}
		d, _ := rt.Evaluate(t.Context(), milter.StageRcpt, sess, tx, tc.r)
		if d.Rule != tc.rule {
			t.Errorf("%s: rule %s want %s", tc.r.Addr, d.Rule, tc.rule)
		}
		if tc.rule == "rcpt/2" && (len(tx.Mutations.Append) != 1 || tx.Mutations.Append[0].Value != "valid "+fwd+" -> alice@example.net") {
			t.Errorf("variables: %+v", tx.Mutations.Append)
		}
		if tc.rule == "rcpt/3" && !tx.Controls["srs_forward"] {
			t.Error("control not set")
		}
	}
}

func TestSRSHashAlphabetConfig(t *testing.T) {
	for alphabet, punct := range map[string]string{"standard": "+/", "url": "-_"} {
		p := mustParse(t, "srs: {domain: fwd.example.org, secrets: [s3cret], hash_alphabet: "+alphabet+"}\n")
		s, err := Rewriter(p.Section("srs"))
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for i := 0; i < 200 && !found; i++ {
			a, err := s.Forward(fmt.Sprintf("u%d@example.net", i))
			if err != nil {
				t.Fatal(err)
			}
			found = strings.ContainsAny(a[5:11], punct)
		}
		if !found {
			t.Errorf("hash_alphabet %s: no hash with %q in 200 forwards", alphabet, punct)
		}
	}
}

func TestSRSSchemeConfig(t *testing.T) {
	p := mustParse(t, "srs: {domain: fwd.example, secrets: [tops3cr3t], scheme: exim}\n")
	s, err := Rewriter(p.Section("srs"))
	if err != nil || s.Scheme() != srs.SchemeExim {
		t.Fatal(s, err)
	}
	exim, _ := s.Forward("alice@example.com")
	if back, err := s.Reverse(exim); err != nil || back != "alice@example.com" {
		t.Errorf("exim scheme: %s reverses to %q, %v", exim, back, err)
	}
	// Guarded forward, both accepted: the migration from Exim.
	p = mustParse(t, "srs:\n  domain: fwd.example\n  secrets: [tops3cr3t]\n  scheme: guarded\n  accept: [guarded, exim]\n")
	m, _ := Rewriter(p.Section("srs"))
	guarded, _ := m.Forward("alice@example.com")
	for _, a := range []string{exim, guarded} {
		if back, err := m.Reverse(a); err != nil || back != "alice@example.com" {
			t.Errorf("accept both: %s reverses to %q, %v", a, back, err)
		}
	}
	if guarded == exim {
		t.Errorf("both schemes wrote %s", exim)
	}
}

func TestSRSConfigErrors(t *testing.T) {
	loose := secretsFile(t, 0o644, "s")
	for _, tc := range []struct{ yml, want string }{
		{"srs: {secrets: [a]}\n", "t.yaml:1: srs.domain is required"},
		{"srs: {domain: fwd.example.org}\n", "t.yaml:1: srs needs secrets_file"},
		{"srs: {domain: fwd.example.org, secrets_file: " + loose + "}\n", "t.yaml:1: srs.secrets_file:"},
		{"srs: {domain: fwd.example.org, secrets: [a], separator: \"#\"}\n", "srs.separator"},
		{"srs: {domain: fwd.example.org, secrets: [a], hash_length: 2}\n", "t.yaml:1: "},
		{"srs:\n  domain: fwd.example.org\n  secrets: [a]\n  hash_alphabet: base64\n", `t.yaml:4: srs: hash_alphabet "base64": must be standard or url`},
		{"srs:\n  domain: fwd.example.org\n  secrets: [a]\n  scheme: sendmail\n", `t.yaml:4: srs: scheme "sendmail": must be guarded or exim`},
		{"srs:\n  domain: fwd.example.org\n  secrets: [a]\n  accept: [guarded, postsrsd]\n", `t.yaml:4: srs: accept: "postsrsd" is not guarded or exim`},
		{"acl:\n  rcpt:\n    - accept: {control: [srs_forward]}\n", "t.yaml:3: control: srs_forward needs a valid srs: section"},
		{"srs: {domain: f.example, secrets: [a]}\nacl:\n  mail:\n    - accept: {srs: [valid]}\n", "t.yaml:4: acl.mail: srs is not available at mail"},
		{"srs: {domain: f.example, secrets: [a]}\nacl:\n  rcpt:\n    - accept: {srs: [bogus]}\n", `t.yaml:4: srs: "bogus" is not valid`},
	} {
		_, err := policy.Parse("t.yaml", []byte(tc.yml), specs...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yml, err, tc.want)
		}
	}
}

func TestSRSDatabaseConfig(t *testing.T) {
	dir := t.TempDir()
	yml := "srs: {domain: fwd.example.org, secrets: [k], database: {use: always, bolt: " + filepath.Join(dir, "srs.db") + "}}\n"
	p := mustParse(t, yml)
	env := newEnv()
	defer env.Close()
	if _, err := env.Runtime(p); err != nil {
		t.Fatal(err)
	}
	// A reload naming the same file reuses the open store (bolt locks it).
	if _, err := env.Runtime(mustParse(t, yml)); err != nil {
		t.Fatalf("second runtime: %v", err)
	}
	// tollgate check parses without opening the store.
	if _, err := os.Stat(filepath.Join(dir, "never.db")); !os.IsNotExist(err) {
		t.Fatal("setup")
	}
	mustParse(t, "srs: {domain: f.example, secrets: [k], database: {bolt: "+filepath.Join(dir, "never.db")+"}}\n")
	if _, err := os.Stat(filepath.Join(dir, "never.db")); !os.IsNotExist(err) {
		t.Error("parsing opened the store")
	}
	for _, tc := range []struct{ yml, want string }{
		{"srs: {domain: f.example, secrets: [k], database: {}}\n", "srs.database needs bolt"},
		{"srs: {domain: f.example, secrets: [k], database: {bolt: rel.db}}\n", "must be an absolute path"},
		{"srs: {domain: f.example, secrets: [k], database: {use: sometimes, bolt: /x.db}}\n", "srs.database.use"},
		{"srs: {domain: f.example, secrets: [k], database: {bolt: /x.db, redis: {address: 127.0.0.1:6379}}}\n", "not both"},
		{"srs: {domain: f.example, secrets: [k], database: {redis: {db: 2}}}\n", "redis.address is required"},
	} {
		if _, err := policy.Parse("t.yaml", []byte(tc.yml), specs...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v", tc.yml, err)
		}
	}
}

func TestSRSSocketmapConfig(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	yml := func(secret string) string {
		return "srs:\n  domain: fwd.example.org\n  secrets: [" + secret + "]\n  socketmap: {listen: \"inet:" + addr + "\", max_connections: 4, idle_timeout: 5s}\n"
	}
	env := newEnv()
	env.Serving = true // as tollgate run builds it
	query := func(req string) string {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "%d:%s,", len(req), req)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 200)
		n, _ := c.Read(b)
		return string(b[:n])
	}
	p1 := mustParse(t, yml("one"))
	rt1, err := env.Runtime(p1)
	if err != nil {
		t.Fatal(err)
	}
	rt1.Hold() // as the daemon's server does
	s1, _ := Rewriter(p1.Section("srs"))
	a1, _ := s1.Forward("alice@example.net")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := "forward alice@example.net"
	fmt.Fprintf(c, "%d:%s,", len(req), req)
	buf := make([]byte, 200)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ := c.Read(buf)
	if want := fmt.Sprintf("%d:OK %s,", 3+len(a1), a1); string(buf[:n]) != want {
		t.Errorf("forward: %q, want %q", buf[:n], want)
	}
	// A reload with another secret: the same server, the new rewriter.
	rt2, err := env.Runtime(mustParse(t, yml("two")))
	if err != nil {
		t.Fatal(err)
	}
	rt2.Hold()
	rt1.Release()
	req = "reverse " + a1
	if got := query(req); !strings.Contains(got, "NOTFOUND Hash invalid") {
		t.Errorf("after the reload: %q", got)
	}
	rt2.Release()
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Error("the socketmap still listens with no configuration using it")
	}
	for _, tc := range []struct{ yml, want string }{
		{"srs:\n  domain: f.example\n  secrets: [a]\n  socketmap: {listen: \"tcp:1.2.3.4:5\"}\n", `t.yaml:4: srs.socketmap.listen: "tcp:1.2.3.4:5"`},
		{"srs:\n  domain: f.example\n  secrets: [a]\n  socketmap:\n    listen: inet:127.0.0.1:10003\n    max_connections: 0\n", "t.yaml:6: srs.socketmap.max_connections"},
	} {
		if _, err := policy.Parse("t.yaml", []byte(tc.yml), specs...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yml, err, tc.want)
		}
	}
}

// tollgate srs forward asks this, so that it leaves the same senders alone
// as the daemon.
func TestLocalSender(t *testing.T) {
	p := mustParse(t, "srs: {domain: fwd.example.org, secrets: [k], local_domains: [example.org], exclude_domains: [\"*.lists.example\"]}\n")
	sec := p.Section("srs")
	for addr, want := range map[string]bool{"a@example.org": true, "a@x.lists.example": true, "a@example.net": false} {
		if got := LocalSender(sec, addr); got != want {
			t.Errorf("%s: %v, want %v", addr, got, want)
		}
	}
	if LocalSender(mustParse(t, "acl: {}\n").Section("srs"), "a@example.org") {
		t.Error("local without an srs: section")
	}
}

// tollgate test builds a runtime only to judge messages: it must not open
// the socketmap, which the running daemon holds on the same address.
func TestSocketmapNotOpenedWhenNotServing(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	p := mustParse(t, "srs:\n  domain: fwd.example.org\n  secrets: [k]\n  socketmap: {listen: \"inet:"+addr+"\"}\n")
	rt, err := newEnv().Runtime(p)
	if err != nil {
		t.Fatal(err)
	}
	rt.Hold()
	defer rt.Release()
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("a runtime that does not serve opened the socketmap on %s", addr)
	}
}
