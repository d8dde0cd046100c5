package bmi_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/bmi"
	"github.com/tollgate/tollgate/feature"
	"github.com/tollgate/tollgate/milter"
	"github.com/tollgate/tollgate/policy"
)

var specs = []feature.Spec{bmi.Spec}

func mustParse(t *testing.T, yml string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("test.yaml", []byte(yml), specs...)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return p
}

func rcptWith(addr string, f *bmi.RcptFacts) *milter.Recipient {
	r := &milter.Recipient{Addr: addr}
	r.SetFact("bmi", f)
	return r
}

const bmiTestPolicy = `
bmi:
  backend: {spamd: {address: "127.0.0.1:783", timeout: 20s, max_size: 1M}}
  spool: {memory: 2M}
  profiles: {strict: strict}
  default_profile: normal
  rules:
    - {id: 5, when: {score_above: 10}, outcome: drop}
    - {id: 8, when: {is_spam: true, symbols_any: [GTUBE]}, outcome: alternate, alt_location: "redirect:quarantine@example.org"}
    - {id: 11, when: {is_spam: true}}
acl:
  rcpt:
    - accept: {recipients: ["*@example.org"], control: [bmi_run], bmi_optin: "strict:x:$local_part"}
    - accept: {}
  data:
    - warn:   {bmi_rule: [5, 8], log_message: "dropped or redirected for someone"}
    - accept: {bmi_dont_deliver: true, add_header: "X-Some-Dropped: yes"}
    - accept: {}
`

func TestBMIConfigAndConditions(t *testing.T) {
	p := mustParse(t, bmiTestPolicy)
	rt, err := policy.NewEnv(nil, prometheus.NewRegistry()).Runtime(p)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rt.Modules()); n != 1 || rt.Modules()[0].Name() != "bmi" {
		t.Fatalf("modules %v", rt.Modules())
	}
	s := &milter.Session{Vars: map[string]string{}}
	tx := &milter.Txn{Session: s}
	r := rcptWith("bob@example.org", &bmi.RcptFacts{})
	tx.Rcpts = []*milter.Recipient{r}
	rt.Evaluate(t.Context(), milter.StageRcpt, s, tx, r)
	if !tx.Controls["bmi_run"] || strings.Join(bmi.RcptFactsOf(r).Optins, ":") != "strict:x:bob" {
		t.Errorf("rcpt: controls %v optins %q", tx.Controls, bmi.RcptFactsOf(r).Optins)
	}
	// At data the conditions hold when any recipient satisfies them.
	r.SetFact("bmi", &bmi.RcptFacts{Scanned: true, Outcome: "drop", Fired: []int{5, 11}})
	other := rcptWith("carol@example.org", &bmi.RcptFacts{Scanned: true, Deliver: true, Outcome: "deliver"})
	tx.Rcpts = append(tx.Rcpts, other)
	d, _ := rt.Evaluate(t.Context(), milter.StageData, s, tx, nil)
	if d.Rule != "data/2" || len(tx.Logs) != 1 || len(tx.Mutations.Append) != 1 {
		t.Errorf("data: %+v logs %v", d, tx.Logs)
	}
	r.SetFact("bmi", &bmi.RcptFacts{Deliver: true, Outcome: "deliver"}) // not scanned: bmi_rule is false
	tx.Logs = nil
	if d, _ := rt.Evaluate(t.Context(), milter.StageData, s, tx, nil); d.Rule != "data/3" || len(tx.Logs) != 0 {
		t.Errorf("unscanned: %+v %v", d, tx.Logs)
	}
}

func TestBMIConfigErrors(t *testing.T) {
	for _, tc := range []struct{ yml, want string }{
		{"bmi: {}\n", "bmi.backend needs spamd"},
		{"bmi: {backend: {spamd: {address: a:1}, rspamd: {address: b:2}}}\n", "not both"},
		{"bmi: {backend: {spamd: {address: a:1}}, rules: [{id: 0}]}\n", "t.yaml:1: bmi.rules:"},
		{"bmi: {backend: {spamd: {address: a:1}}, rules: [{id: 2, outcome: alternate}]}\n", "bmi.rules:"},
		{"bmi: {backend: {spamd: {address: a:1}}, on_error: panic}\n", "bmi.on_error"},
		{"bmi: {backend: {spamd: {address: a:1}}, profiles: {x: \"../etc\"}}\n", "bmi.profiles"},
		{"acl:\n  rcpt:\n    - accept: {control: [bmi_run]}\n", "control: bmi_run needs a valid bmi: section"},
		{"bmi: {backend: {spamd: {address: a:1}}}\nacl:\n  data:\n    - accept: {control: [bmi_run]}\n", "control: bmi_run is not available at data (only at mail, rcpt)"},
		{"bmi: {backend: {spamd: {address: a:1}}}\nacl:\n  data:\n    - accept: {bmi_optin: x}\n", "acl.data: bmi_optin is not available at data (only at rcpt)"},
	} {
		if _, err := policy.Parse("t.yaml", []byte(tc.yml), specs...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yml, err, tc.want)
		}
	}
}
