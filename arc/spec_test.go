package arc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
arc:
  authserv_id: mx.example.org
  dns: {server: "127.0.0.1:53", timeout: 2s, failure_ttl: 10s}
  sign:
    - {domain: example.org, selector: s1, key: `+key+`, options: [timestamps, "expire=+86400"]}
    - {domain: example.net, selector: s1, key: `+key+`}
acl:
  data:
    - deny:   {name: broken, arc: [fail], sender_domains: [bank.example], message: "550 5.7.1 ARC chain broken"}
    - accept: {name: ok, arc: ["!fail"], add_header: "X-ARC: $arc_state $arc_oldest_pass $arc_domains", control: [arc_sign]}
    - accept: {}
`)
	if sec := p.Section("arc").(*section); len(sec.seal) != 2 || !sec.seal[0].Timestamps || sec.seal[0].Expire != "+86400" || sec.dns.Server != "127.0.0.1:53" || sec.dns.FailureTTL != 10*time.Second || !sec.removeForged {
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
		{"arc: {sign: []}\n", "t.yaml:1: arc.authserv_id is required"},
		{"arc: {authserv_id: mx.example.org, sign: [{domain: example.org, selector: s, key: " + loose + "}]}\n", "t.yaml:1: arc.sign.key:"},
		{"arc: {authserv_id: mx.example.org, sign: [{domain: example.org, selector: s}]}\n", "key: is required"},
		{"arc: {authserv_id: mx.example.org, sign: [{domain: example.org, selector: s, key: " + good + ", options: [sometimes]}]}\n", `"sometimes"`},
		{"arc: {authserv_id: mx.example.org, sign: [{domain: \"bad domain\", selector: s, key: " + good + "}]}\n", "bad signing domain"},
		{"arc: {authserv_id: mx.example.org, headers: [from, arc-seal], sign: [{domain: example.org, selector: s, key: " + good + "}]}\n", "ARC-Seal must not be signed"},
		{"arc: {authserv_id: mx.example.org}\nacl:\n  data:\n    - accept: {control: [arc_sign]}\n", "t.yaml:4: control: arc_sign: needs a signing key (arc.sign)"},
		{"arc:\n  authserv_id: mx.example.org\n  dns:\n    failure_ttl: 1h\n", "t.yaml:4: arc.dns.failure_ttl: 1h0m0s is more than 5m"},
		{"arc:\n  authserv_id: mx.example.org\n  dns:\n    failure_ttl: -1s\n", "t.yaml:4: duration \"-1s\" must not be negative"},
		{"arc: {authserv_id: mx.example.org}\nacl:\n  rcpt:\n    - accept: {arc: [pass]}\n", "acl.rcpt: arc is not available at rcpt"},
		{"arc: {authserv_id: mx.example.org}\nacl:\n  data:\n    - accept: {arc: [passed]}\n", `"passed" is not pass, fail or none`},
	} {
		if _, err := policy.Parse("t.yaml", []byte(tc.yml), specs...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yml, err, tc.want)
		}
	}
}

func TestARCFailureTTLZeroDisables(t *testing.T) {
	p := mustParse(t, "arc:\n  authserv_id: mx.example.org\n  dns: {failure_ttl: 0s}\n")
	if got := p.Section("arc").(*section).dns.FailureTTL; got >= 0 {
		t.Fatalf("failure_ttl 0s compiled to %v, want negative (no caching)", got)
	}
	p = mustParse(t, "arc:\n  authserv_id: mx.example.org\n")
	r := NewDNSResolver(p.Section("arc").(*section).dns)
	if r.opts.FailureTTL != DefaultFailureTTL {
		t.Fatalf("default failure_ttl %v", r.opts.FailureTTL)
	}
}
