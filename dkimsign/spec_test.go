package dkimsign

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/keyfile"
	"github.com/tollgate/tollgate/milter"
	"github.com/tollgate/tollgate/policy"
)

func keyFile(t *testing.T, kind string, mode os.FileMode) string {
	t.Helper()
	_, pemBytes, _, err := keyfile.Generate(kind, 0)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), kind+".key")
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfig(t *testing.T) {
	rsaKey, edKey := keyFile(t, "rsa", 0o600), keyFile(t, "ed25519", 0o400)
	p, err := policy.Parse("t.yaml", []byte(`
dkim_sign:
  keys:
    - {domain: example.org, selector: rsa2026, key: `+rsaKey+`, algorithm: rsa-sha256}
    - {domain: example.org, selector: ed2026, key: `+edKey+`}
  headers: [+From, =To, Subject]
  canonicalization: relaxed/simple
  timestamps: false
  expire: 72h
acl:
  rcpt:
    - accept: {authenticated: "*", control: [dkim_sign]}
`), Spec)
	if err != nil {
		t.Fatal(err)
	}
	sec := p.Section(name).(*section)
	if len(sec.keys) != 2 || !sec.signRule || sec.opts.HeaderCanon != "relaxed" || sec.opts.BodyCanon != "simple" ||
		!sec.opts.NoTimestamp || sec.opts.Expire != 72*time.Hour || strings.Join(sec.opts.Headers, ":") != "+From:=To:Subject" {
		t.Errorf("%+v", sec)
	}
	rt, err := policy.NewEnv(nil, prometheus.NewRegistry()).Runtime(p)
	if err != nil {
		t.Fatal(err)
	}
	mods := rt.Modules()
	if len(mods) != 1 || mods[0].Name() != name {
		t.Fatalf("modules %v", mods)
	}
	if n := mods[0].(milter.NeedsDeclarer).Needs(); !n.Body || !n.Headers || n.Actions&milter.ActAddHeader == 0 {
		t.Errorf("needs %+v", n)
	}
	// no rule sets the control: no body hashing, nothing negotiated
	p, err = policy.Parse("t.yaml", []byte("dkim_sign: {keys: [{domain: example.org, selector: s, key: "+rsaKey+"}]}\n"), Spec)
	if err != nil {
		t.Fatal(err)
	}
	rt, err = policy.NewEnv(nil, prometheus.NewRegistry()).Runtime(p)
	if err != nil {
		t.Fatal(err)
	}
	if n := rt.Modules()[0].(milter.NeedsDeclarer).Needs(); n.Body || n.Headers {
		t.Errorf("needs without a rule: %+v", n)
	}
}

func TestConfigErrors(t *testing.T) {
	good, loose := keyFile(t, "ed25519", 0o600), keyFile(t, "ed25519", 0o644)
	k := func(extra string) string {
		return "dkim_sign:\n  keys: [{domain: example.org, selector: s, key: " + good + extra + "}]\n"
	}
	for _, tc := range []struct{ yml, want string }{
		{"dkim_sign: {keys: [{domain: example.org, selector: s, key: " + loose + "}]}\n", "t.yaml:1: dkim_sign.keys.key: " + loose + " is accessible by group or others (mode 0644); chmod 600 it"},
		{"dkim_sign: {keys: [{domain: example.org, selector: s, key: /nonexistent/k}]}\n", "no such file"},
		{"dkim_sign: {keys: [{domain: example.org, selector: s}]}\n", "key: is required"},
		{"dkim_sign: {keys: [{domain: example.org, key: " + good + "}]}\n", "domain: and selector: are required"},
		{"dkim_sign: {keys: [{domain: \"bad domain\", selector: s, key: " + good + "}]}\n", "bad signing domain"},
		{"dkim_sign: {keys: [{domain: example.org, selector: s, key: " + good + "}, {domain: Example.org, selector: S, key: " + good + "}]}\n", "listed already (line 1)"},
		{k(", algorithm: rsa-sha256"), `dkim_sign.keys.algorithm: "rsa-sha256", but`},
		{k("") + "  headers: [To, Subject]\n", "t.yaml:3: dkim_sign: the header list must include From"},
		{k("") + "  headers: [From, \"Bad:Name\"]\n", "t.yaml:3: dkim_sign.headers: dkimsign: bad header name"},
		{k("") + "  canonicalization: nofws\n", "t.yaml:3: dkim_sign: canonicalization \"nofws\" is not relaxed or simple"},
		{k("") + "  expire: 10ms\n", "t.yaml:3: dkim_sign.expire: 10ms is less than a second"},
		{k("") + "  unknown: 1\n", "unknown"},
		{"dkim_sign: {}\nacl:\n  rcpt:\n    - accept: {control: [dkim_sign]}\n", "t.yaml:4: control: dkim_sign: needs a signing key (dkim_sign.keys)"},
		{k("") + "acl:\n  connect:\n    - accept: {control: [dkim_sign]}\n", "not available at connect"},
	} {
		if _, err := policy.Parse("t.yaml", []byte(tc.yml), Spec); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q:\n%v\nwant %q", tc.yml, err, tc.want)
		}
	}
}
