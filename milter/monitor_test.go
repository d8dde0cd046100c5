package milter

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	gomilter "github.com/d--j/go-milter"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// monitorRuntime is a fakeRuntime with a mode.
type monitorRuntime struct {
	*fakeRuntime
	mode Monitor
}

func (m monitorRuntime) Monitor() Monitor { return m.mode }

// allReplies asks for replies at every stage and for every change, as a
// configuration with ACLs everywhere would.
var allReplies = Needs{Headers: true, Body: true, Actions: ActAddHeader | ActChangeHeader | ActChangeFrom | ActAddRcpt | ActDelRcpt | ActQuarantine,
	Reply: [stageCount]bool{StageConnect: true, StageHelo: true, StageMail: true, StageRcpt: true}}

// stageRecorder counts the policy evaluations per stage.
type stageRecorder struct {
	mu   sync.Mutex
	seen []Stage
}

func (s *stageRecorder) add(st Stage) {
	s.mu.Lock()
	s.seen = append(s.seen, st)
	s.mu.Unlock()
}

func (s *stageRecorder) count(st Stage) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, x := range s.seen {
		if x == st {
			n++
		}
	}
	return n
}

// rcptRejecter refuses SRS recipients the way the srs module does: with a
// *Rejection from its hook, not through the policy.
type rcptRejecter struct{}

func (rcptRejecter) Name() string { return "srs" }
func (rcptRejecter) Rcpt(_ context.Context, _ *Txn, r *Recipient) error {
	if strings.HasPrefix(r.Addr, "SRS0=") {
		return &Rejection{Decision: Decision{Verdict: Reject, Rule: "srs", Reply: Reply{550, "5.1.1", "no such address: invalid SRS address"}}}
	}
	return nil
}

type failingEOM struct{}

func (failingEOM) Name() string                             { return "scanner" }
func (failingEOM) EndOfMessage(context.Context, *Txn) error { return errors.New("scanner down") }

// driveMonitored runs one message through a monitored server as an MTA
// would, and fails the test if any stage got anything but "go on".
func driveMonitored(t *testing.T, ts *testServer, from string, rcpts ...string) []gomilter.ModifyAction {
	t.Helper()
	s := ts.session(t, map[string]string{"i": "MONQ1"})
	acts := []*gomilter.Action{must(t)(s.Conn("mail.example.com", gomilter.FamilyInet, 40000, "192.0.2.10")),
		must(t)(s.Helo("mail.example.com")), must(t)(s.Mail(from, ""))}
	for _, r := range rcpts {
		acts = append(acts, must(t)(s.Rcpt(r, "")))
	}
	for i, a := range acts {
		if a.Type != gomilter.ActionContinue {
			t.Errorf("stage %d: the MTA was told %v, want continue", i, a)
		}
	}
	mods, eom := sendMessage(t, s, [][2]string{{"Subject", " hi"}}, "body\r\n")
	if eom.Type != gomilter.ActionAccept {
		t.Errorf("end of message: the MTA was told %v, want accept", eom)
	}
	s.Close()
	waitFor(t, func() bool { return logLine(ts.logs.String(), "message") != "" })
	return mods
}

func TestMonitorModeDecidesButAccepts(t *testing.T) {
	at := func(stage Stage, d Decision) func(Stage, *Session, *Txn, *Recipient) Decision {
		return func(s Stage, _ *Session, _ *Txn, _ *Recipient) Decision {
			if s == stage {
				return d
			}
			return Decision{}
		}
	}
	cases := []struct {
		name    string
		decide  func(Stage, *Session, *Txn, *Recipient) Decision
		mods    []Module
		onError Decision
		from    string
		rcpts   []string
		// want are parts of the summary line; lines are other log lines
		// (message, part); metrics are stage/decision pairs counted once.
		want    []string
		lines   [][2]string
		metrics [][2]string
		header  []string
		// notJudged is a stage that must not be evaluated after the decision.
		notJudged Stage
	}{
		{name: "rcpt reject", decide: relayDenied, rcpts: []string{"bob@example.org", "carol@elsewhere.test"},
			want:    []string{"mode=monitor", "decision=accept", "to=<bob@example.org>", "rejected_to=<carol@elsewhere.test>"},
			lines:   [][2]string{{"recipient refused", "decision=would_reject"}, {"recipient refused", "recipient=<carol@elsewhere.test>"}},
			metrics: [][2]string{{"rcpt", "reject"}},
			header:  []string{"reject at rcpt <carol@elsewhere.test>: 550 5.7.1 relay not permitted (rule relay)"}},
		{name: "every recipient rejected", decide: relayDenied, rcpts: []string{"carol@elsewhere.test"},
			want:    []string{"mode=monitor", "decision=would_reject", "rule=relay", `reply="550 5.7.1 relay not permitted"`},
			metrics: [][2]string{{"rcpt", "reject"}}, notJudged: StageData,
			header: []string{"reject at rcpt <carol@elsewhere.test>: 550 5.7.1 relay not permitted (rule relay)"}},
		{name: "connect reject", decide: at(StageConnect, Decision{Verdict: Reject, Rule: "blocklist"}), rcpts: []string{"bob@example.org"},
			want:    []string{"decision=would_reject", "rule=blocklist", "to=<bob@example.org>"},
			lines:   [][2]string{{"connection refused", "decision=would_reject"}},
			metrics: [][2]string{{"connect", "reject"}}, notJudged: StageRcpt,
			header: []string{"reject at connect: 550 5.7.1 rejected by policy (rule blocklist)"}},
		{name: "helo defer", decide: at(StageHelo, Decision{Verdict: TempFail, Rule: "helo-check"}), rcpts: []string{"bob@example.org"},
			want: []string{"decision=would_tempfail", "rule=helo-check"}, metrics: [][2]string{{"helo", "tempfail"}}, notJudged: StageMail},
		{name: "mail discard", decide: at(StageMail, Decision{Verdict: Discard, Rule: "silence"}), rcpts: []string{"bob@example.org"},
			want: []string{"decision=would_discard", "rule=silence"}, metrics: [][2]string{{"mail", "discard"}}, notJudged: StageRcpt},
		{name: "rcpt drop", decide: at(StageRcpt, Decision{Verdict: Drop, Rule: "tarpit"}), rcpts: []string{"bob@example.org", "dave@example.org"},
			want: []string{"decision=would_drop", "rule=tarpit"}, metrics: [][2]string{{"rcpt", "drop"}}, notJudged: StageData},
		{name: "rcpt discard", decide: relayDenied, rcpts: []string{"bob@example.org", "trash@example.org"},
			want:    []string{"decision=accept", "discarded_to=<trash@example.org>", "suppressed=del_rcpt:1"},
			lines:   [][2]string{{"recipient discarded", "decision=would_discard"}},
			metrics: [][2]string{{"rcpt", "discard"}}},
		{name: "data reject", decide: at(StageData, Decision{Verdict: Reject, Rule: "content", Reply: Reply{550, "5.7.1", "rejected by content policy"}}),
			rcpts: []string{"bob@example.org"}, want: []string{"decision=would_reject", "rule=content", `reply="550 5.7.1 rejected by content policy"`},
			metrics: [][2]string{{"data", "reject"}}, header: []string{"reject at data: 550 5.7.1 rejected by content policy (rule content)"}},
		{name: "data defer", decide: at(StageData, Decision{Verdict: TempFail, Rule: "greylist"}), rcpts: []string{"bob@example.org"},
			want: []string{"decision=would_tempfail"}, metrics: [][2]string{{"data", "tempfail"}}},
		{name: "data discard", decide: at(StageData, Decision{Verdict: Discard, Rule: "bin"}), rcpts: []string{"bob@example.org"},
			want: []string{"decision=would_discard"}, metrics: [][2]string{{"data", "discard"}}},
		{name: "quarantine", rcpts: []string{"bob@example.org"},
			mods: []Module{eomModule{apply: func(t *Txn) { t.Mutations.Quarantine = "frozen by rule hold" }}},
			want: []string{"decision=accept", "suppressed=quarantine"}, metrics: [][2]string{{"data", "quarantine"}},
			header: []string{"quarantine at data: frozen by rule hold"}},
		{name: "envelope and seal", rcpts: []string{"bob@example.org"},
			mods: []Module{eomModule{apply: func(t *Txn) {
				t.Mutations.ARCSet = []HeaderField{{"ARC-Seal", "i=1; cv=none"}}
				t.Mutations.Envelope.ChangeSender("SRS0=abcd=JW=example.net=a@fwd.example.org", "", "srs")
				t.Mutations.Envelope.Redirect(t.Rcpts[0], "alt@example.org", "bmi")
			}}},
			want: []string{"decision=accept", "suppressed=add_header:1,change_from,del_rcpt:1,add_rcpt:1"}},
		{name: "forged SRS refused by its module", mods: []Module{rcptRejecter{}}, from: "",
			rcpts:   []string{"bob@example.org", "SRS0=xxxx=JW=example.com=alice@fwd.example.org"},
			lines:   [][2]string{{"recipient refused", "decision=would_reject"}, {"recipient refused", "rule=srs"}},
			metrics: [][2]string{{"rcpt", "reject"}}},
		{name: "SRS reversal not carried out", mods: []Module{srsLike{}}, from: "",
			rcpts: []string{"SRS0=gy8f=JW=example.com=alice@fwd.example.org"},
			want:  []string{"decision=accept", "suppressed=del_rcpt:1,add_rcpt:1"}},
		{name: "module failure with on_error tempfail", mods: []Module{failingEOM{}}, rcpts: []string{"bob@example.org"},
			onError: Decision{Verdict: TempFail, Rule: "on_error", Reply: Reply{451, "4.3.0", "temporary local problem"}},
			want:    []string{"decision=would_tempfail", "rule=on_error"}, metrics: [][2]string{{"data", "tempfail"}}},
	}
	for _, tc := range cases {
		for _, header := range []string{"", "X-Tollgate-Would"} {
			name := tc.name
			if header != "" {
				name += " with header"
			}
			t.Run(name, func(t *testing.T) {
				stages := &stageRecorder{}
				decide := tc.decide
				rt := monitorRuntime{mode: Monitor{On: true, Header: header}, fakeRuntime: &fakeRuntime{needs: allReplies, mods: tc.mods, onError: tc.onError,
					decide: func(s Stage, sess *Session, tx *Txn, r *Recipient) Decision {
						stages.add(s)
						if decide == nil {
							return Decision{}
						}
						return decide(s, sess, tx, r)
					}}}
				ts := startServer(t, rt)
				from := tc.from
				if from == "" && !strings.HasPrefix(tc.name, "SRS") && !strings.HasPrefix(tc.name, "forged") {
					from = "alice@example.net"
				}
				mods := driveMonitored(t, ts, from, tc.rcpts...)
				logs := ts.logs.String()
				summary := logLine(logs, "message")
				for _, part := range tc.want {
					if !strings.Contains(summary, part) {
						t.Errorf("summary line lacks %s: %s", part, summary)
					}
				}
				for _, l := range tc.lines {
					if line := logLine(logs, l[0]); !strings.Contains(line, l[1]) {
						t.Errorf("%q line lacks %s: %q", l[0], l[1], line)
					}
				}
				total := 0.0
				for _, st := range PolicyStages {
					for _, d := range monitorDecisions {
						v := testutil.ToFloat64(ts.metrics.MonitorDecisions.WithLabelValues(st.String(), d))
						total += v
						if want := slices.Contains(tc.metrics, [2]string{st.String(), d}); want && v != 1 {
							t.Errorf("monitor_decisions_total{stage=%s,decision=%s} = %v, want 1", st, d, v)
						}
					}
				}
				if int(total) != len(tc.metrics) {
					t.Errorf("%v would-be decisions counted, want %d (%v)", total, len(tc.metrics), tc.metrics)
				}
				if got := testutil.ToFloat64(ts.metrics.Messages.WithLabelValues("accept")); got != 1 {
					t.Errorf("messages_total{decision=accept} = %v: count what the MTA was told", got)
				}
				var headers []string
				for _, m := range mods {
					if m.Type != gomilter.ActionInsertHeader || m.HeaderName != "X-Tollgate-Would" {
						t.Errorf("monitor mode changed the message: %v", describe([]gomilter.ModifyAction{m}))
						continue
					}
					headers = append(headers, strings.TrimPrefix(m.HeaderValue, " "))
				}
				if header == "" && len(headers) > 0 {
					t.Errorf("header added although none is configured: %q", headers)
				}
				if header != "" && tc.header != nil && !slices.Equal(headers, tc.header) {
					t.Errorf("monitor headers %q, want %q", headers, tc.header)
				}
				if header != "" && len(headers) != len(tc.metrics) {
					t.Errorf("%d monitor headers for %d decisions: %q", len(headers), len(tc.metrics), headers)
				}
				if tc.notJudged != StageConnect && stages.count(tc.notJudged) > 0 {
					t.Errorf("stage %s was judged after a decision that would have ended it", tc.notJudged)
				}
			})
		}
	}
}

// The same decisions enforced: the monitor cases above are not vacuous.
func TestEnforceModeStillRefuses(t *testing.T) {
	ts := startServer(t, monitorRuntime{fakeRuntime: &fakeRuntime{decide: relayDenied, needs: allReplies}})
	s := ts.session(t, nil)
	acts := envelope(t, s, "alice@example.net", "carol@elsewhere.test")
	if !acts[0].StopProcessing() {
		t.Errorf("enforce mode let the recipient through: %v", acts[0])
	}
	s.Close()
	waitFor(t, func() bool { return logLine(ts.logs.String(), "message") != "" })
	if summary := logLine(ts.logs.String(), "message"); strings.Contains(summary, "would_") || strings.Contains(summary, "mode=") {
		t.Errorf("enforce mode logged as monitor: %s", summary)
	}
	if got := testutil.ToFloat64(ts.metrics.MonitorMode); got != 0 {
		t.Errorf("monitor_mode = %v in enforce mode", got)
	}
}

// A reload switches the mode for new sessions; a session keeps the mode it
// started with, in both directions.
func TestReloadSwitchesMonitorMode(t *testing.T) {
	enforce := monitorRuntime{fakeRuntime: &fakeRuntime{decide: relayDenied, needs: allReplies}}
	monitor := monitorRuntime{fakeRuntime: enforce.fakeRuntime, mode: Monitor{On: true}}
	ts := startServer(t, enforce)
	rcptAction := func(s *gomilter.ClientSession) *gomilter.Action {
		return must(t)(s.Rcpt("carol@elsewhere.test", ""))
	}
	open := func() *gomilter.ClientSession {
		s := ts.session(t, nil)
		envelope(t, s, "alice@example.net")
		return s
	}
	before := open()
	ts.srv.SetRuntime(monitor)
	if got := testutil.ToFloat64(ts.metrics.MonitorMode); got != 1 {
		t.Errorf("monitor_mode = %v after switching to monitor", got)
	}
	during := open()
	if !rcptAction(before).StopProcessing() {
		t.Error("a session opened in enforce mode stopped enforcing on reload")
	}
	if rcptAction(during).StopProcessing() {
		t.Error("a session opened after the switch to monitor mode refused a recipient")
	}
	ts.srv.SetRuntime(enforce)
	if got := testutil.ToFloat64(ts.metrics.MonitorMode); got != 0 {
		t.Errorf("monitor_mode = %v after switching back", got)
	}
	after := open()
	if rcptAction(during).StopProcessing() {
		t.Error("a session opened in monitor mode started enforcing on reload")
	}
	if !rcptAction(after).StopProcessing() {
		t.Error("a session opened after the switch back to enforce mode let a recipient through")
	}
	if got := testutil.ToFloat64(ts.metrics.MonitorDecisions.WithLabelValues("rcpt", "reject")); got != 2 {
		t.Errorf("monitor_decisions_total{rcpt,reject} = %v, want 2 (the monitored session's two refusals)", got)
	}
}

func TestHeaderSafe(t *testing.T) {
	if got := headerSafe("a\r\nBcc: x\x00y"); got != "a  Bcc: x y" {
		t.Errorf("headerSafe = %q", got)
	}
	long := strings.Repeat("é", maxMonitorHeader) // two bytes each
	got := headerSafe(long)
	if len(got) > maxMonitorHeader || !strings.HasPrefix(long, got) || len(got) < maxMonitorHeader-1 {
		t.Errorf("cut to %d bytes, valid prefix %v", len(got), strings.HasPrefix(long, got))
	}
	if err := CheckHeaderField("X-Tollgate-Would", headerSafe("550\n5.7.1\rtext")); err != nil {
		t.Error(err)
	}
}

// A header section over max_headers gets on_error at end of message: in
// monitor mode that is a would-be decision too, and the message passes.
func TestMonitorModeOverLimit(t *testing.T) {
	rt := monitorRuntime{mode: Monitor{On: true, Header: "X-Tollgate-Would"}, fakeRuntime: &fakeRuntime{needs: allReplies,
		onError: Decision{Verdict: TempFail, Rule: "on_error", Reply: Reply{451, "4.3.0", "temporary local problem"}}}}
	ts := startServer(t, rt)
	ts.srv.SetLimits(Limits{MaxHeaders: 1})
	s := ts.session(t, nil)
	envelope(t, s, "alice@example.net", "bob@example.org")
	mods, eom := sendMessage(t, s, [][2]string{{"Subject", " hi"}, {"From", " alice@example.net"}}, "body\r\n")
	if eom.Type != gomilter.ActionAccept {
		t.Errorf("end of message: %v, want accept", eom)
	}
	if got := describe(mods); len(got) != 1 || !strings.Contains(got[0], `X-Tollgate-Would " tempfail at data: 451 4.3.0 temporary local problem (rule limits)"`) {
		t.Errorf("changes %q", got)
	}
	s.Close()
	waitFor(t, func() bool { return logLine(ts.logs.String(), "message") != "" })
	if summary := logLine(ts.logs.String(), "message"); !strings.Contains(summary, "decision=would_tempfail") || !strings.Contains(summary, "rule=limits") {
		t.Errorf("summary line: %s", summary)
	}
	if got := testutil.ToFloat64(ts.metrics.MonitorDecisions.WithLabelValues("data", "tempfail")); got != 1 {
		t.Errorf("monitor_decisions_total{data,tempfail} = %v", got)
	}
}
