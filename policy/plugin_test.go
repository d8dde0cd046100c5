package policy

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	gomilter "github.com/d--j/go-milter"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/feature"
	"github.com/tollgate/tollgate/internal/miltertest"
	"github.com/tollgate/tollgate/milter"
)

// tally is a feature that exists only in this test, to prove that adding a
// feature needs no change in package policy: it counts the body bytes of
// messages whose policy switched on control tally_on, offers the count as
// $tally and the condition tally_over, and adds a header once accepted.

type tallyConfig struct {
	Pos    feature.Pos `yaml:"-"`
	Header feature.Str `yaml:"header"`
}

type tallySpec struct{}

func (tallySpec) Name() string                         { return "tally" }
func (tallySpec) NewConfig() any                       { return &tallyConfig{} }
func (tallySpec) Order() feature.Order                 { return feature.Order{} }
func (tallySpec) NewMetrics(prometheus.Registerer) any { return nil }

func (tallySpec) Compile(cfg any, env *feature.CompileEnv) feature.Section {
	in := cfg.(*tallyConfig)
	if in.Header.Value == "" {
		env.Report.Errorf(in.Pos.Line, "tally.header is required")
		return nil
	}
	return &tallySection{header: in.Header.Value}
}

func (tallySpec) Vocabulary() feature.Vocabulary {
	data := milter.StageSet(milter.StageData)
	return feature.Vocabulary{
		Conditions: []feature.Condition{{Key: "tally_over", Stages: data, Example: "5",
			NewValue: func() any { return new(int) },
			Compile: func(v any, line int, _ feature.Section, r feature.Reporter) feature.Test {
				n := *v.(*int)
				if n < 0 {
					r.Errorf(line, "tally_over: %d is negative", n)
				}
				return tallyOver(n)
			}}},
		Variables: []feature.Variable{{Name: "tally", Stages: data, Value: func(e *feature.Eval) string {
			if n, ok := e.Txn.Fact("tally").(*int); ok {
				return strconv.Itoa(*n)
			}
			return ""
		}}},
		Controls: []feature.Control{{Name: "tally_on", Stages: milter.StageSet(milter.StageMail, milter.StageRcpt)}},
	}
}

type tallyOver int

func (n tallyOver) Match(e *feature.Eval) (bool, *milter.Decision) {
	c, ok := e.Txn.Fact("tally").(*int)
	return ok && *c > int(n), nil
}

type tallySection struct{ header string }

func (s *tallySection) ControlError(string) error { return nil }
func (s *tallySection) Module(*feature.ModuleEnv) (milter.Module, error) {
	return &tallyModule{header: s.header}, nil
}

type tallyModule struct{ header string }

func (m *tallyModule) Name() string { return "tally" }
func (m *tallyModule) Needs() milter.Needs {
	return milter.Needs{Body: true, Actions: milter.ActAddHeader}
}
func (m *tallyModule) Body(_ context.Context, t *milter.Txn, chunk []byte) error {
	if t.Controls["tally_on"] {
		n, _ := t.Fact("tally").(*int)
		if n == nil {
			n = new(int)
			t.SetFact("tally", n)
		}
		*n += len(chunk)
	}
	return nil
}
func (m *tallyModule) Finalize(_ context.Context, t *milter.Txn, d milter.Decision) error {
	if n, ok := t.Fact("tally").(*int); ok && d.Verdict == milter.Accept {
		t.Mutations.Append = append(t.Mutations.Append, milter.HeaderField{Name: m.header, Value: strconv.Itoa(*n)})
	}
	return nil
}

func TestFeatureFromOutsidePolicy(t *testing.T) {
	specs := append([]feature.Spec{tallySpec{}}, testFeatures...)
	const config = `tally: {header: X-Tally}
acl:
  rcpt:
    - accept: {control: [tally_on]}
  data:
    - deny: {tally_over: 10, message: "550 5.7.1 $tally bytes is too many"}
    - accept: {add_header: "X-Counted: $tally"}
`
	// check proves the feature's words like the core's.
	for _, bad := range []struct{ src, want string }{
		{strings.Replace(config, "accept: {control: [tally_on]}", "accept: {tally_over: 1}", 1), "t.yaml:4: acl.rcpt: tally_over is not available at rcpt (only at data)"},
		{strings.Replace(config, "tally_over: 10", "tally_over: -1", 1), "t.yaml:6: tally_over: -1 is negative"},
		{strings.Replace(config, "control: [tally_on]", "set: {acl_c_x: $tally}", 1), "t.yaml:4: set acl_c_x: $tally has no value at rcpt (only at data)"},
		{strings.Replace(config, "tally: {header: X-Tally}", "tally: {}", 1), "tally.header is required"},
		{strings.Replace(config, "tally: {header: X-Tally}\n", "", 1), "t.yaml:3: control: tally_on needs a valid tally: section"},
	} {
		if _, err := Parse("t.yaml", []byte(bad.src), specs...); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("got %v, want %s", err, bad.want)
		}
	}
	// A typo is suggested the feature's word.
	if _, err := Parse("t.yaml", []byte(strings.Replace(config, "tally_over: 10", "taly_over: 10", 1)), specs...); err == nil ||
		!strings.Contains(err.Error(), `t.yaml:6: unknown key "taly_over" (did you mean "tally_over"?)`) {
		t.Errorf("typo: %v", err)
	}
	if _, err := Parse("t.yaml", []byte(strings.Replace(config, "tally: {", "taly: {", 1)), specs...); err == nil ||
		!strings.Contains(err.Error(), `t.yaml:1: unknown key "taly" (did you mean "tally"?)`) {
		t.Errorf("typo: %v", err)
	}
	// Without the spec, its section is an unknown key.
	if _, err := Parse("t.yaml", []byte(config), testFeatures...); err == nil || !strings.Contains(err.Error(), `unknown key "tally"`) {
		t.Errorf("without the feature: %v", err)
	}

	p, err := Parse("t.yaml", []byte(config), specs...)
	if err != nil {
		t.Fatal(err)
	}
	env := NewEnv(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	rt, err := env.Runtime(p)
	if err != nil {
		t.Fatal(err)
	}
	// What the module needs is negotiated: it sees the body.
	if n := milter.RuntimeNeeds(rt); !n.Body || n.Actions&milter.ActAddHeader == 0 {
		t.Errorf("needs %+v", n)
	}
	sock := miltertest.Serve(t, rt, 0, 0)
	for _, tc := range []struct {
		body string
		want string
	}{
		{"short\r\n", "accept X-Counted=7 X-Tally=7"},
		{"a body of more than ten bytes\r\n", "reject 550 5.7.1 31 bytes is too many"},
	} {
		c, macros := miltertest.Client(sock)
		s, err := c.Session(macros)
		if err != nil {
			t.Fatal(err)
		}
		s.Conn("client.example", gomilter.FamilyInet, 40000, "203.0.113.5")
		s.Helo("client.example")
		s.Mail("a@example.net", "")
		s.Rcpt("b@example.org", "")
		s.DataStart()
		s.HeaderField("Subject", " x", nil)
		s.HeaderEnd()
		s.BodyChunk([]byte(tc.body))
		mods, act, err := s.End()
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		got := "accept"
		if act.Type == gomilter.ActionRejectWithCode {
			got = "reject " + strings.TrimSpace(act.SMTPReply)
		}
		for _, m := range mods {
			if m.Type == gomilter.ActionAddHeader || m.Type == gomilter.ActionInsertHeader {
				got += " " + m.HeaderName + "=" + strings.TrimSpace(m.HeaderValue)
			}
		}
		if got != tc.want {
			t.Errorf("body %q: %s, want %s", tc.body, got, tc.want)
		}
	}
}
