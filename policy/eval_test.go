package policy

import (
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tollgate/tollgate/milter"
)

func mustParse(t *testing.T, yml string) *Policy {
	t.Helper()
	p, err := Parse("test.yaml", []byte(yml), testFeatures...)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return p
}

type probe struct {
	client string
	login  string
	helo   string
	sender string
	rcpt   string
	hdrs   []milter.Header
	body   int64
}

func (pr probe) run(t *testing.T, p *Policy, stage milter.Stage) (milter.Decision, *milter.Txn, *milter.Session) {
	t.Helper()
	s := &milter.Session{Vars: map[string]string{}}
	if pr.client != "" {
		s.Identity.ClientAddr = netip.MustParseAddr(pr.client)
	}
	s.Identity.AuthLogin, s.Identity.Helo, s.Identity.MTAName = pr.login, pr.helo, "mx.example.org"
	var tx *milter.Txn
	var r *milter.Recipient
	if stage != milter.StageConnect && stage != milter.StageHelo {
		tx = &milter.Txn{Session: s, Sender: pr.sender, Headers: pr.hdrs, BodyBytes: pr.body}
		for _, h := range pr.hdrs {
			tx.HeaderBytes += int64(len(h.Name) + len(h.Value) + 3)
		}
		if pr.rcpt != "" {
			r = &milter.Recipient{Addr: pr.rcpt}
			tx.Rcpts = append(tx.Rcpts, r)
		}
		if stage != milter.StageRcpt {
			r = nil
		}
	}
	metrics := milter.NewMetrics(prometheus.NewRegistry())
	rt := NewRuntime(p, slog.New(slog.NewTextHandler(io.Discard, nil)), metrics)
	d, err := rt.Evaluate(t.Context(), stage, s, tx, r)
	if err != nil {
		t.Fatal(err)
	}
	return d, tx, s
}

func TestVerbs(t *testing.T) {
	p := mustParse(t, `
acl:
  rcpt:
    - warn:    {recipients: [warn@example.org], add_header: "X-Warned: yes", set: {acl_m_seen: "1"}}
    - accept:  {recipients: [ok@example.org]}
    - deny:    {recipients: [deny@example.org], message: "550 5.1.1 $local_part does not exist"}
    - defer:   {recipients: [defer@example.org], message: "try later"}
    - discard: {recipients: [trap@example.org]}
    - drop:    {recipients: [drop@example.org]}
    - require: {name: must-be-local, recipient_domains: [example.org], message: "5.7.1 not ours"}
    - accept:  {}
`)
	for _, tc := range []struct {
		rcpt  string
		want  milter.Verdict
		reply string
		rule  string
	}{
		{"ok@example.org", milter.Accept, "", "rcpt/2"},
		{"deny@example.org", milter.Reject, "550 5.1.1 deny does not exist", "rcpt/3"},
		{"defer@example.org", milter.TempFail, "451 4.7.1 try later", "rcpt/4"},
		{"trap@example.org", milter.Discard, "", "rcpt/5"},
		{"drop@example.org", milter.Drop, "", "rcpt/6"},
		{"x@elsewhere.test", milter.Reject, "550 5.7.1 not ours", "must-be-local"},
		{"warn@example.org", milter.Accept, "", "rcpt/8"},
	} {
		d, tx, _ := probe{sender: "a@example.net", rcpt: tc.rcpt}.run(t, p, milter.StageRcpt)
		if d.Verdict != tc.want || d.Reply.String() != tc.reply || d.Rule != tc.rule {
			t.Errorf("%s: got %v %q %q, want %v %q %q", tc.rcpt, d.Verdict, d.Reply.String(), d.Rule, tc.want, tc.reply, tc.rule)
		}
		if tc.rcpt == "warn@example.org" && (len(tx.Mutations.Append) != 1 || tx.Vars["acl_m_seen"] != "1") {
			t.Errorf("warn modifiers not applied: %+v %v", tx.Mutations, tx.Vars)
		}
	}
}

func TestImplicitDenyAndUndefinedACL(t *testing.T) {
	p := mustParse(t, `
acl:
  mail:
    - accept: {senders: ["*@example.net"]}
`)
	if d, _, _ := (probe{sender: "a@example.net"}).run(t, p, milter.StageMail); d.Verdict != milter.Accept {
		t.Errorf("listed sender: %v", d.Verdict)
	}
	d, _, _ := probe{sender: "a@other.test"}.run(t, p, milter.StageMail)
	if d.Verdict != milter.Reject || d.Rule != "mail/end" {
		t.Errorf("end of ACL: %+v", d)
	}
	if d, _, _ := (probe{sender: "a@other.test", rcpt: "x@y.test"}).run(t, p, milter.StageRcpt); d.Verdict != milter.Continue {
		t.Errorf("no rcpt ACL must accept: %v", d.Verdict)
	}
	if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0].Error(), "acl.mail does not end") {
		t.Errorf("warnings %v", p.Warnings)
	}
}

func TestConditions(t *testing.T) {
	p := mustParse(t, `
lists:
  ours: [example.org, "*.example.org"]
  nets: [192.0.2.0/24, "2001:db8::/32"]
  admins: ["postmaster@*", "*@admins.example.org"]
acl:
  connect:
    - deny:   {name: v4-bad, hosts: [198.51.100.0/24]}
    - deny:   {name: v6-bad, hosts: ["2001:db8:bad::/48"]}
    - accept: {}
  mail:
    - deny:   {name: not-null-from-us, senders: ["<>"], hosts: ["!+nets"]}
    - accept: {}
  rcpt:
    - accept: {name: auth, authenticated: ["*"]}
    - accept: {name: trusted, hosts: [+nets]}
    - deny:   {name: relay, recipient_domains: ["!+ours"]}
    - deny:   {name: admin, recipients: [+admins], sender_domains: ["!example.org"]}
    - accept: {}
  data:
    - deny:   {name: subj, header: {name: subject, regex: "(?i)viagra"}}
    - deny:   {name: no-date, header: {name: Date, not_regex: "."}}
    - deny:   {name: huge, message_size: "> 1K"}
    - accept: {}
`)
	for _, tc := range []struct {
		name  string
		stage milter.Stage
		pr    probe
		rule  string
	}{
		{"v4 cidr", milter.StageConnect, probe{client: "198.51.100.7"}, "v4-bad"},
		{"v6 cidr", milter.StageConnect, probe{client: "2001:db8:bad::1"}, "v6-bad"},
		{"mapped v4 not in v6 list", milter.StageConnect, probe{client: "::ffff:192.0.2.1"}, "connect/3"},
		{"null sender from outside", milter.StageMail, probe{client: "203.0.113.1", sender: ""}, "not-null-from-us"},
		{"null sender from inside", milter.StageMail, probe{client: "192.0.2.9", sender: ""}, "mail/2"},
		{"authenticated relays", milter.StageRcpt, probe{client: "203.0.113.1", login: "bob", rcpt: "x@far.test"}, "auth"},
		{"trusted v6 relays", milter.StageRcpt, probe{client: "2001:db8::5", rcpt: "x@far.test"}, "trusted"},
		{"relay denied", milter.StageRcpt, probe{client: "203.0.113.1", rcpt: "x@far.test"}, "relay"},
		{"subdomain is ours", milter.StageRcpt, probe{client: "203.0.113.1", sender: "a@b.test", rcpt: "x@sub.example.org"}, "rcpt/5"},
		{"named address list", milter.StageRcpt, probe{client: "203.0.113.1", sender: "a@b.test", rcpt: "POSTMASTER@example.org"}, "admin"},
		{"named list and sender domain", milter.StageRcpt, probe{client: "203.0.113.1", sender: "a@example.org", rcpt: "postmaster@example.org"}, "rcpt/5"},
		{"header regex", milter.StageData, probe{hdrs: []milter.Header{{Name: "Date", Value: "x"}, {Name: "Subject", Value: "Cheap VIAGRA"}}}, "subj"},
		{"header absent", milter.StageData, probe{hdrs: []milter.Header{{Name: "Subject", Value: "hi"}}}, "no-date"},
		{"size", milter.StageData, probe{hdrs: []milter.Header{{Name: "Date", Value: "x"}}, body: 2000}, "huge"},
		{"small", milter.StageData, probe{hdrs: []milter.Header{{Name: "Date", Value: "x"}}, body: 10}, "data/4"},
	} {
		d, _, _ := tc.pr.run(t, p, tc.stage)
		if d.Rule != tc.rule {
			t.Errorf("%s: rule %q (%v), want %q", tc.name, d.Rule, d.Verdict, tc.rule)
		}
	}
}

func TestModifiersAndVariables(t *testing.T) {
	p := mustParse(t, `
acl:
  connect:
    - warn: {set: {acl_c_from: "$sender_host_address"}}
    - accept: {}
  data:
    - warn:   {add_header: [":at_start:X-Top: $acl_c_from", "X-Bottom: $$5 for $sender_address"], remove_header: [X-Spam]}
    - accept: {control: [freeze], log_message: "held: $message_size bytes"}
`)
	_, _, s := probe{client: "192.0.2.1"}.run(t, p, milter.StageConnect)
	if s.Vars["acl_c_from"] != "192.0.2.1" {
		t.Fatalf("acl_c not set: %v", s.Vars)
	}
	tx := &milter.Txn{Session: s, Sender: "a@example.net", BodyBytes: 10, HeaderBytes: 20}
	rt := NewRuntime(p, slog.New(slog.NewTextHandler(io.Discard, nil)), milter.NewMetrics(prometheus.NewRegistry()))
	d, _ := rt.Evaluate(t.Context(), milter.StageData, s, tx, nil)
	m := tx.Mutations
	if d.Verdict != milter.Accept || len(m.Prepend) != 1 || m.Prepend[0].Value != "192.0.2.1" ||
		m.Append[0].Value != "$5 for a@example.net" || m.RemoveAll[0] != "X-Spam" || m.Quarantine != "held: 32 bytes" {
		t.Errorf("%+v %+v", d, m)
	}
}

func TestRcptDenyDropsItsHeaders(t *testing.T) {
	p := mustParse(t, `
acl:
  rcpt:
    - warn: {add_header: "X-Rcpt: $recipient"}
    - deny: {recipients: [bad@example.org]}
    - accept: {}
`)
	s := &milter.Session{Vars: map[string]string{}}
	tx := &milter.Txn{Session: s}
	rt := NewRuntime(p, slog.New(slog.NewTextHandler(io.Discard, nil)), milter.NewMetrics(prometheus.NewRegistry()))
	for _, a := range []string{"good@example.org", "bad@example.org"} {
		r := &milter.Recipient{Addr: a}
		tx.Rcpts = append(tx.Rcpts, r)
		rt.Evaluate(t.Context(), milter.StageRcpt, s, tx, r)
	}
	if len(tx.Mutations.Append) != 1 || tx.Mutations.Append[0].Value != "good@example.org" {
		t.Errorf("%+v", tx.Mutations.Append)
	}
}

func TestPolicyMetrics(t *testing.T) {
	p := mustParse(t, "acl:\n  connect:\n    - deny: {name: nope, hosts: [192.0.2.1]}\n    - accept: {}\n")
	metrics := milter.NewMetrics(prometheus.NewRegistry())
	rt := NewRuntime(p, slog.New(slog.NewTextHandler(io.Discard, nil)), metrics)
	s := &milter.Session{Identity: milter.Identity{ClientAddr: netip.MustParseAddr("192.0.2.1")}}
	rt.Evaluate(t.Context(), milter.StageConnect, s, nil, nil)
	if got := testutil.ToFloat64(metrics.PolicyDecisions.WithLabelValues("connect", "nope", "deny")); got != 1 {
		t.Errorf("policy_decisions_total = %v", got)
	}
}

func TestLoadErrorsHaveLines(t *testing.T) {
	_, err := Parse("bad.yaml", []byte(`listen: tcp-nowhere
on_error: maybe
lists:
  nets: [10.0.0.1/8]
acl:
  connect:
    - deny: {senders: [a@b.c]}
    - accept: {control: [freeze]}
  rcpt:
    - reject: {}
    - deny: {recipients: [+nosuch], message: "450 4.7.1 wrong class"}
    - warn: {message: "nope", add_header: "Bad Header: x", set: {foo: bar}}
    - accept: {hosts: [+nets], colour: blue, log_message: "$nosuchvar"}
  data:
    - defer: {message: "550 5.7.1 permanent", header: {name: Subject, regex: "("}}
`))
	if err == nil {
		t.Fatal("no error")
	}
	want := []string{
		"bad.yaml:1: listen:",
		"bad.yaml:2: on_error:",
		"bad.yaml:4:",          // host bits set
		"bad.yaml:7:",          // senders not at connect
		"bad.yaml:8: control:", // freeze not at connect
		"bad.yaml:10: unknown verb \"reject\"",
		"bad.yaml:11:", // unknown list
		"bad.yaml:11: message:",
		"bad.yaml:12: message: only deny",
		"bad.yaml:12: add_header:",
		"bad.yaml:12: set:",
		"bad.yaml:13: unknown key \"colour\"",
		"bad.yaml:13: log_message: unknown variable $nosuchvar",
		"bad.yaml:15: message:",
		"bad.yaml:15: header: bad regular expression",
	}
	msg := err.Error()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("missing %q in:\n%s", w, msg)
		}
	}
}

func TestExampleConfigLoads(t *testing.T) {
	p, err := LoadFile("../deploy/examples/tollgate.yaml", testFeatures...)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Warnings) != 0 {
		t.Errorf("warnings: %v", p.Warnings)
	}
	n := p.Needs()
	if !n.Headers || !n.Body || n.Actions&milter.ActAddHeader == 0 || !n.Reply[milter.StageRcpt] || n.Reply[milter.StageMail] {
		t.Errorf("needs %+v", n)
	}
}

func TestUnusedListWarns(t *testing.T) {
	p := mustParse(t, "lists:\n  used: [192.0.2.1]\n  spare: [not-checked]\nacl:\n  connect:\n    - deny: {hosts: [+used]}\n    - accept: {}\n")
	if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0].Error(), `test.yaml:3: list "spare" is not used`) {
		t.Errorf("%v", p.Warnings)
	}
}

func TestSetRejectsDuplicates(t *testing.T) {
	_, err := Parse("t.yaml", []byte("acl:\n  connect:\n    - warn: {set: {acl_c_a: x, acl_c_a: y}}\n    - accept: {}\n"), testFeatures...)
	if err == nil || !strings.Contains(err.Error(), "t.yaml:3: duplicate key") {
		t.Errorf("%v", err)
	}
}

func newRegistry() *prometheus.Registry { return prometheus.NewRegistry() }
