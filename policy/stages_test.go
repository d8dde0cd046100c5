package policy

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tollgate/tollgate/arc"
	"github.com/tollgate/tollgate/milter"
)

// matrixHeader configures every feature, so that only the stage decides
// whether a use is refused.
func matrixHeader(t *testing.T) string {
	t.Helper()
	_, key, _, err := arc.GenerateKey("ed25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "arc.key")
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	return "srs: {domain: fwd.example.org, secrets: [s3cret]}\n" +
		"dcc: {address: 127.0.0.1:1}\n" +
		"authserv_id: mx.example.org\ndmarc: {}\nspf: {}\niprev: {}\ndkim: {}\narc: {sign: [{domain: example.org, selector: s1, key: " + keyFile + "}]}\n" +
		"dkim_sign: {keys: [{domain: example.org, selector: s1, key: " + keyFile + "}]}\n" +
		"bmi: {backend: {spamd: {address: 127.0.0.1:1}}, rules: [{id: 1, when: {score_above: 5}, outcome: drop}]}\n"
}

// matrixContext is what each stage really has: no message before mail, a
// current recipient only at rcpt, and feature facts only where their
// modules wrote them.
func matrixContext(stage milter.Stage) (*milter.Session, *milter.Txn, *milter.Recipient) {
	s := &milter.Session{Vars: map[string]string{}, Identity: milter.Identity{ClientAddr: netip.MustParseAddr("192.0.2.1"), Helo: "client.example"}}
	if stage == milter.StageConnect || stage == milter.StageHelo {
		return s, nil, nil
	}
	tx := &milter.Txn{Session: s, Sender: "a@example.net"}
	if stage == milter.StageMail {
		return s, tx, nil
	}
	r := &milter.Recipient{Addr: "b@example.org"}
	tx.Rcpts = []*milter.Recipient{r}
	if stage == milter.StageRcpt {
		return s, tx, r
	}
	tx.Headers = []milter.Header{{Name: "Subject", Value: "hello"}}
	tx.HeaderBytes, tx.BodyBytes = 20, 10
	return s, tx, nil
}

// runMatrixCell loads one policy with probe as the first rule of stage and
// either expects check to refuse it at the probe's line, or evaluates it in
// that stage's real context and expects no panic.
func runMatrixCell(t *testing.T, header string, stage milter.Stage, probe string, allowed bool, want string) {
	t.Helper()
	src := header + "acl:\n  " + stage.String() + ":\n    - " + probe + "\n    - accept: {}\n"
	line := strings.Count(header, "\n") + 3
	p, err := Parse("m.yaml", []byte(src), testFeatures...)
	if !allowed {
		if err == nil {
			t.Errorf("%s at %s: check accepted it, want a refusal at m.yaml:%d", probe, stage, line)
			return
		}
		prefix := fmt.Sprintf("m.yaml:%d: ", line)
		for _, e := range err.(ErrorList) {
			if !strings.HasPrefix(e.Error(), prefix) || !strings.Contains(e.Msg, want) {
				t.Errorf("%s at %s: %v, want only %s...%s...", probe, stage, e, prefix, want)
			}
		}
		return
	}
	if err != nil {
		t.Errorf("%s at %s: refused, want it to load: %v", probe, stage, err)
		return
	}
	s, tx, r := matrixContext(stage)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	metrics := milter.NewMetrics(prometheus.NewRegistry())
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Errorf("%s at %s: evaluation panicked: %v", probe, stage, p)
			}
		}()
		p.evaluate(log, metrics, stage, s, tx, r)
	}()
	if n := testutil.ToFloat64(metrics.PolicyUnknownValues.WithLabelValues(stage.String())); n != 0 {
		t.Errorf("%s at %s: loaded, but %v variables had no value", probe, stage, n)
	}
}

// Every variable in every stage: check refuses it with file:line, or it
// evaluates to a value without panicking (the reproducer of issue 13 is
// $recipient at data).
func TestMatrixVariablesInEveryStage(t *testing.T) {
	header := matrixHeader(t)
	vocab := vocabulary(t)
	names := []string{"acl_c_probe", "acl_m_probe"}
	for name := range vocab.vars {
		names = append(names, name)
	}
	slices.Sort(names)
	stagesOf := func(name string) milter.Stages {
		switch name {
		case "acl_c_probe":
			return milter.AllStages
		case "acl_m_probe":
			return fromMail
		}
		return vocab.vars[name].stages
	}
	for _, name := range names {
		for _, stage := range milter.PolicyStages {
			probe := fmt.Sprintf(`warn: {set: {acl_c_out: "[$%s]"}}`, name)
			runMatrixCell(t, header, stage, probe, stagesOf(name).Has(stage), "$"+name)
		}
	}
}

// conditionProbes writes each condition (and stage-bound modifier) as a rule.
var conditionProbes = map[string]string{
	"hosts":             `warn: {hosts: [192.0.2.1]}`,
	"proxied":           `warn: {proxied: true}`,
	"proxy_hosts":       `warn: {proxy_hosts: [127.0.0.1]}`,
	"authenticated":     `warn: {authenticated: "*"}`,
	"senders":           `warn: {senders: [a@example.net]}`,
	"sender_domains":    `warn: {sender_domains: [example.net]}`,
	"recipients":        `warn: {recipients: [b@example.org]}`,
	"recipient_domains": `warn: {recipient_domains: [example.org]}`,
	"header":            `warn: {header: {name: Subject, regex: hel}}`,
	"message_size":      `warn: {message_size: "> 1"}`,
	"dnslists":          `warn: {dnslists: [zen.example.org]}`,
	"add_header":        `warn: {add_header: "X-Probe: 1"}`,
	"remove_header":     `warn: {remove_header: X-Probe}`,
	"discard":           `discard: {}`,
}

// Every condition in every stage, as the variables above.
func TestMatrixConditionsInEveryStage(t *testing.T) {
	header := matrixHeader(t)
	// A condition added to the rule syntax without a stage set (or without a
	// probe here) fails this test rather than going unchecked.
	plain := map[string]bool{"name": true, "message": true, "log_message": true, "set": true, "control": true}
	rt := reflect.TypeFor[RuleBody]()
	for i := range rt.NumField() {
		key, _, _ := strings.Cut(rt.Field(i).Tag.Get("yaml"), ",")
		if key == "-" || plain[key] || !rt.Field(i).IsExported() {
			continue
		}
		if _, ok := conditionStages[key]; !ok {
			t.Errorf("condition %s has no stage set in conditionStages", key)
		}
	}
	for key := range conditionProbes {
		if _, ok := conditionStages[key]; !ok {
			t.Errorf("probe for %s, which is no core condition", key)
		}
	}
	for key, stages := range conditionStages {
		probe, ok := conditionProbes[key]
		if !ok {
			t.Errorf("condition %s has no probe in the matrix", key)
			continue
		}
		for _, stage := range milter.PolicyStages {
			runMatrixCell(t, header, stage, probe, stages.Has(stage), key)
		}
	}
	// The features' conditions and modifiers, with the example each gives.
	for key, k := range vocabulary(t).ruleKeys {
		example := ""
		if k.cond != nil {
			example = k.cond.Example
		} else {
			example = k.mod.Example
		}
		if example == "" {
			t.Errorf("feature %s: %s has no example", k.feature, key)
			continue
		}
		for _, stage := range milter.PolicyStages {
			runMatrixCell(t, header, stage, fmt.Sprintf("warn: {%s: %s}", key, example), k.stages().Has(stage), key)
		}
	}
}

// vocabulary is the core's and the features' words, as the loader knows them.
func vocabulary(t *testing.T) *decoder {
	t.Helper()
	d := &decoder{file: "m.yaml"}
	newFeatureSet(d, testFeatures)
	if err := d.errs.Err(); err != nil {
		t.Fatal(err)
	}
	return d
}

// Every control in every stage.
func TestMatrixControlsInEveryStage(t *testing.T) {
	header := matrixHeader(t)
	for name, c := range vocabulary(t).controls {
		for _, stage := range milter.PolicyStages {
			runMatrixCell(t, header, stage, fmt.Sprintf("warn: {control: [%s]}", name), c.stages.Has(stage), name)
		}
	}
}

// The reproducer is refused by check at the line that uses it.
func TestRecipientInDataRefused(t *testing.T) {
	_, err := LoadFile("testdata/policies/recipient_in_data.yaml", testFeatures...)
	want := "testdata/policies/recipient_in_data.yaml:3: add_header: $recipient has no value at data (only at rcpt)"
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	if _, err := LoadFile("testdata/policies/every_stage.yaml", testFeatures...); err != nil {
		t.Errorf("the every-stage seed does not load: %v", err)
	}
}

// Should a use slip past check (a template built for another stage), the
// value is empty, evaluation goes on, a metric counts it and one log line
// says so however often it happens.
func TestUnknownValueLastLineOfDefence(t *testing.T) {
	d := &decoder{file: "t.yaml"}
	tpl := compileTemplate(d, Str{Value: "for <$recipient> from <$sender_address> via $domain", Line: 1}, milter.StageRcpt, "test")
	if err := d.errs.Err(); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	metrics := milter.NewMetrics(prometheus.NewRegistry())
	s, tx, _ := matrixContext(milter.StageData)
	e := &evalCtx{stage: milter.StageData, s: s, t: tx, log: slog.New(slog.NewTextHandler(&logs, nil)), metrics: metrics, limit: &logLimiter{}}
	for range 3 {
		if got := tpl.expand(e); got != "for <> from <a@example.net> via " {
			t.Errorf("expanded to %q", got)
		}
	}
	if n := testutil.ToFloat64(metrics.PolicyUnknownValues.WithLabelValues("data")); n != 6 {
		t.Errorf("counted %v unknown values, want 6", n)
	}
	if n := strings.Count(logs.String(), "has no value here"); n != 2 {
		t.Errorf("%d log lines, want one per variable:\n%s", n, logs.String())
	}
	// A value function that fails anyway (a fact missing where the stage set
	// promised one) is contained the same way.
	e = &evalCtx{stage: milter.StageRcpt, s: s, t: tx, log: e.log, metrics: metrics, limit: e.limit}
	if got := tpl.expand(e); got != "for <> from <a@example.net> via " {
		t.Errorf("with no current recipient at rcpt: %q", got)
	}
}
