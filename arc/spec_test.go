package arc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/feature"
	"github.com/tollgate/tollgate/milter"
	"github.com/tollgate/tollgate/policy"
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

func arcKey(t *testing.T, mode os.FileMode) string {
	t.Helper()
	_, pemBytes, _, err := GenerateKey("ed25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "arc.key")
	os.WriteFile(path, pemBytes, 0o600)
	os.Chmod(path, mode)
	return path
}

func TestARCConfigAndCondition(t *testing.T) {
	key := arcKey(t, 0o600)
	p := mustParse(t, `
authserv_id: mx.example.org
dns: {server: "127.0.0.1:53", timeout: 2s, failure_ttl: 10s}
arc:
  sign:
    - {domain: example.org, selector: s1, key: `+key+`, options: [timestamps, "expire=+86400"]}
    - {domain: example.net, selector: s1, key: `+key+`}
acl:
  data:
    - deny:   {name: broken, arc: [fail], sender_domains: [bank.example], message: "550 5.7.1 ARC chain broken"}
    - accept: {name: ok, arc: ["!fail"], add_header: "X-ARC: $arc_state $arc_oldest_pass $arc_domains", control: [arc_sign]}
    - accept: {}
`)
	if sec := p.Section("arc").(*section); len(sec.seal) != 2 || !sec.seal[0].Timestamps || sec.seal[0].Expire != "+86400" || sec.authServID != "mx.example.org" {
		t.Errorf("%+v", sec)
	}
	rt, err := policy.NewEnv(nil, prometheus.NewRegistry()).Runtime(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(rt.Modules()) != 1 || rt.Modules()[0].Name() != "arc" {
		t.Errorf("modules %v", rt.Modules())
	}
	s := &milter.Session{Vars: map[string]string{}}
	for _, tc := range []struct {
		facts  Facts
		sender string
		rule   string
	}{
		{Facts{State: "fail"}, "x@bank.example", "broken"},
		{Facts{State: "fail"}, "x@other.example", "data/3"},
		{Facts{State: "pass", OldestPass: 2, Domains: []string{"a.example", "b.example"}}, "x@bank.example", "ok"},
		{Facts{State: "none"}, "x@bank.example", "ok"},
	} {
		tx := &milter.Txn{Session: s, Sender: tc.sender}
		tx.SetFact("arc", &tc.facts)
		d, _ := rt.Evaluate(t.Context(), milter.StageData, s, tx, nil)
		if d.Rule != tc.rule {
			t.Errorf("%+v: rule %s want %s", tc.facts, d.Rule, tc.rule)
		}
		if tc.rule == "ok" && tc.facts.State == "pass" && (len(tx.Mutations.Append) != 1 || tx.Mutations.Append[0].Value != "pass 2 a.example:b.example" || !tx.Controls["arc_sign"]) {
			t.Errorf("modifiers %+v %v", tx.Mutations.Append, tx.Controls)
		}
	}
}

func TestARCConfigErrors(t *testing.T) {
	loose := arcKey(t, 0o644)
	good := arcKey(t, 0o600)
	for _, tc := range []struct{ yml, want string }{
		{"arc: {sign: []}\n", "t.yaml:1: arc needs authserv_id (top level)"},
		{"authserv_id: mx.example.org\narc: {authserv_id: mx.example.org}\n", "t.yaml:2: arc.authserv_id moved to the top level: write authserv_id: mx.example.org"},
		{"authserv_id: mx.example.org\narc:\n  dns: {server: \"127.0.0.1:53\"}\n", "t.yaml:3: arc.dns moved to the top level"},
		{"authserv_id: mx.example.org\narc:\n  add_authresults: false\n", "t.yaml:3: arc.add_authresults moved to the top level"},
		{"authserv_id: mx.example.org\narc: {sign: [{domain: example.org, selector: s, key: " + loose + "}]}\n", "t.yaml:2: arc.sign.key:"},
		{"authserv_id: mx.example.org\narc: {sign: [{domain: example.org, selector: s}]}\n", "key: is required"},
		{"authserv_id: mx.example.org\narc: {sign: [{domain: example.org, selector: s, key: " + good + ", options: [sometimes]}]}\n", `"sometimes"`},
		{"authserv_id: mx.example.org\narc: {sign: [{domain: \"bad domain\", selector: s, key: " + good + "}]}\n", "bad signing domain"},
		{"authserv_id: mx.example.org\narc: {headers: [from, arc-seal], sign: [{domain: example.org, selector: s, key: " + good + "}]}\n", "ARC-Seal must not be signed"},
		{"authserv_id: mx.example.org\narc: {}\nacl:\n  data:\n    - accept: {control: [arc_sign]}\n", "t.yaml:5: control: arc_sign: needs a signing key (arc.sign)"},
		{"authserv_id: mx.example.org\narc: {}\ndns:\n  failure_ttl: 1h\n", "t.yaml:4: dns.failure_ttl: 1h0m0s is more than 5m"},
		{"authserv_id: mx.example.org\narc: {}\ndns:\n  failure_ttl: -1s\n", "t.yaml:4: duration \"-1s\" must not be negative"},
		{"authserv_id: mx.example.org\narc: {}\nacl:\n  rcpt:\n    - accept: {arc: [pass]}\n", "acl.rcpt: arc is not available at rcpt"},
		{"authserv_id: mx.example.org\narc: {}\nacl:\n  data:\n    - accept: {arc: [passed]}\n", `"passed" is not pass, fail or none`},
	} {
		if _, err := policy.Parse("t.yaml", []byte(tc.yml), specs...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yml, err, tc.want)
		}
	}
}
