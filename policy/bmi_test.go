package policy

import (
	"strings"
	"testing"

	"github.com/tollgate/tollgate/milter"
)

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
	if p.bmi.backend.Name() != "spamd" || len(p.bmi.rules) != 3 || p.bmi.spoolMemory != 2<<20 || p.bmi.profiles.Default != "normal" {
		t.Fatalf("%+v", p.bmi)
	}
	rt := NewRuntime(p, nil, milter.NewMetrics(newRegistry()))
	if n := len(rt.Modules()); n != 1 || rt.Modules()[0].Name() != "bmi" {
		t.Fatalf("modules %v", rt.Modules())
	}
	s := &milter.Session{Vars: map[string]string{}}
	tx := &milter.Txn{Session: s}
	r := &milter.Recipient{Addr: "bob@example.org", BMI: &milter.BMIRcpt{}}
	tx.Rcpts = []*milter.Recipient{r}
	rt.Evaluate(t.Context(), milter.StageRcpt, s, tx, r)
	if !tx.Controls["bmi_run"] || strings.Join(r.BMI.Optins, ":") != "strict:x:bob" {
		t.Errorf("rcpt: controls %v optins %q", tx.Controls, r.BMI.Optins)
	}
	// At data the conditions hold when any recipient satisfies them.
	r.BMI = &milter.BMIRcpt{Scanned: true, Outcome: "drop", Fired: []int{5, 11}}
	other := &milter.Recipient{Addr: "carol@example.org", BMI: &milter.BMIRcpt{Scanned: true, Deliver: true, Outcome: "deliver"}}
	tx.Rcpts = append(tx.Rcpts, other)
	d, _ := rt.Evaluate(t.Context(), milter.StageData, s, tx, nil)
	if d.Rule != "data/2" || len(tx.Logs) != 1 || len(tx.Mutations.Append) != 1 {
		t.Errorf("data: %+v logs %v", d, tx.Logs)
	}
	r.BMI = &milter.BMIRcpt{Deliver: true, Outcome: "deliver"} // not scanned: bmi_rule is false
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
		{"bmi: {backend: {spamd: {address: a:1}}}\nacl:\n  data:\n    - accept: {bmi_optin: x}\n", "bmi_optin is not available at data"},
	} {
		if _, err := Parse("t.yaml", []byte(tc.yml), testFeatures...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yml, err, tc.want)
		}
	}
}
