package milter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
)

// fakeRuntime is a configuration made of test modules and a decide function.
type fakeRuntime struct {
	mods     []Module
	decide   func(stage Stage, s *Session, t *Txn, r *Recipient) Decision
	needs    Needs
	onError  Decision
	identity *IdentityConfig
}

func (f *fakeRuntime) Modules() []Module  { return f.mods }
func (f *fakeRuntime) PolicyNeeds() Needs { return f.needs }
func (f *fakeRuntime) OnError() Decision  { return f.onError }
func (f *fakeRuntime) Identity() *IdentityConfig {
	if f.identity != nil {
		return f.identity
	}
	return &IdentityConfig{}
}
func (f *fakeRuntime) Evaluate(_ context.Context, stage Stage, s *Session, t *Txn, r *Recipient) (Decision, error) {
	if f.decide == nil {
		return Decision{}, nil
	}
	return f.decide(stage, s, t, r), nil
}

// eomModule proposes fixed mutations at end of message.
type eomModule struct{ apply func(t *Txn) }

func (eomModule) Name() string { return "eom" }
func (m eomModule) EndOfMessage(_ context.Context, t *Txn) error {
	m.apply(t)
	return nil
}
func (eomModule) Actions() Actions {
	return ActAddHeader | ActChangeHeader | ActChangeFrom | ActAddRcpt | ActDelRcpt | ActQuarantine
}

type testServer struct {
	srv     *Server
	sock    string
	metrics *Metrics
	logs    *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func startServer(t *testing.T, rt Runtime) *testServer {
	t.Helper()
	ts := &testServer{sock: filepath.Join(t.TempDir(), "m.sock"), logs: &syncBuffer{}}
	ts.metrics = NewMetrics(prometheus.NewRegistry())
	ts.srv = NewServer(rt, ServerOptions{Logger: slog.New(slog.NewTextHandler(ts.logs, nil)), Metrics: ts.metrics})
	ln, err := Listen(Address{Network: "unix", Addr: ts.sock}, SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { ts.srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ts.srv.Shutdown(ctx)
		<-done
	})
	return ts
}

func (ts *testServer) session(t *testing.T, macros map[string]string) *gomilter.ClientSession {
	t.Helper()
	bag := gomilter.NewMacroBag()
	for k, v := range macros {
		bag.Set(k, v)
	}
	c := gomilter.NewClient("unix", ts.sock, gomilter.WithAction(gomilter.AllClientSupportedActionMasks))
	s, err := c.Session(bag)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// must fails the test on a client error: must(t)(s.Helo("h")).
func must(t *testing.T) func(*gomilter.Action, error) *gomilter.Action {
	return func(act *gomilter.Action, err error) *gomilter.Action {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return act
	}
}

func envelope(t *testing.T, s *gomilter.ClientSession, from string, rcpts ...string) []*gomilter.Action {
	t.Helper()
	must(t)(s.Conn("mail.example.com", gomilter.FamilyInet, 40000, "192.0.2.10"))
	must(t)(s.Helo("mail.example.com"))
	must(t)(s.Mail(from, ""))
	var out []*gomilter.Action
	for _, r := range rcpts {
		out = append(out, must(t)(s.Rcpt(r, "")))
	}
	return out
}

func sendMessage(t *testing.T, s *gomilter.ClientSession, headers [][2]string, body string) ([]gomilter.ModifyAction, *gomilter.Action) {
	t.Helper()
	if _, err := s.DataStart(); err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		if _, err := s.HeaderField(h[0], h[1], nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.HeaderEnd(); err != nil {
		t.Fatal(err)
	}
	mods, act, err := s.BodyReadFrom(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return mods, act
}

func TestConnectToEndOfMessage(t *testing.T) {
	var seen *Txn
	rt := &fakeRuntime{
		needs: Needs{Headers: true, Body: true},
		mods: []Module{eomModule{apply: func(tx *Txn) {
			seen = tx
			tx.Mutations.Append = append(tx.Mutations.Append, HeaderField{"X-Added", "1"})
			tx.Mutations.Prepend = append(tx.Mutations.Prepend, HeaderField{"X-Top", "2"})
			tx.Mutations.Changes = append(tx.Mutations.Changes, HeaderChange{HeaderRef{"Subject", 1}, "[tagged] hi"})
		}}},
	}
	ts := startServer(t, rt)
	s := ts.session(t, map[string]string{"{auth_authen}": "alice", "{auth_type}": "PLAIN", "i": "ABC123", "j": "mx.example.org"})
	envelope(t, s, "alice@example.net", "bob@example.org")
	mods, act := sendMessage(t, s, [][2]string{{"Subject", " hi"}, {"From", " alice@example.net"}}, "body\r\n")
	if act.Type != gomilter.ActionAccept {
		t.Fatalf("action %v", act)
	}
	want := []string{`change Subject[1] " [tagged] hi"`, `insert[0] X-Top " 2"`, `insert[2147483647] X-Added " 1"`}
	if got := describe(mods); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("mods %q want %q", got, want)
	}
	if seen.Session.Identity.ClientAddr.String() != "192.0.2.10" || seen.Session.Identity.AuthLogin != "alice" ||
		seen.Session.Identity.Helo != "mail.example.com" || seen.QueueID != "ABC123" || len(seen.Headers) != 2 {
		t.Errorf("facts: %+v %+v", seen, seen.Session.Identity)
	}
	if seen.Size() != int64(len("Subject: hi\r\nFrom: alice@example.net\r\n\r\nbody\r\n")) {
		t.Errorf("size %d", seen.Size())
	}
	s.Close()
	waitFor(t, func() bool { return strings.Contains(ts.logs.String(), "msg=message") })
	for _, part := range []string{"queue_id=ABC123", `client="mail.example.com [192.0.2.10]"`, "sender=<alice@example.net>", "rcpts=1", "decision=accept", "login=alice"} {
		if !strings.Contains(ts.logs.String(), part) {
			t.Errorf("summary line lacks %s:\n%s", part, ts.logs.String())
		}
	}
	if got := testutil.ToFloat64(ts.metrics.Messages.WithLabelValues("accept")); got != 1 {
		t.Errorf("messages_total{accept} = %v", got)
	}
}

func describe(mods []gomilter.ModifyAction) []string {
	var out []string
	for _, m := range mods {
		switch m.Type {
		case gomilter.ActionChangeHeader:
			out = append(out, fmt.Sprintf("change %s[%d] %q", m.HeaderName, m.HeaderIndex, m.HeaderValue))
		case gomilter.ActionInsertHeader:
			out = append(out, fmt.Sprintf("insert[%d] %s %q", m.HeaderIndex, m.HeaderName, m.HeaderValue))
		case gomilter.ActionAddHeader:
			out = append(out, fmt.Sprintf("add %s %q", m.HeaderName, m.HeaderValue))
		case gomilter.ActionChangeFrom:
			out = append(out, "from "+m.From)
		case gomilter.ActionAddRcpt:
			out = append(out, "addrcpt "+m.Rcpt)
		case gomilter.ActionDelRcpt:
			out = append(out, "delrcpt "+m.Rcpt)
		case gomilter.ActionQuarantine:
			out = append(out, "quarantine "+m.Reason)
		}
	}
	return out
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRejectOneRecipientOnly(t *testing.T) {
	rt := &fakeRuntime{
		needs: Needs{Reply: [stageCount]bool{StageRcpt: true}},
		decide: func(stage Stage, _ *Session, _ *Txn, r *Recipient) Decision {
			if stage == StageRcpt && strings.HasPrefix(r.Addr, "bad") {
				return Decision{Verdict: Reject, Reply: Reply{550, "5.1.1", "no such user"}, Rule: "r1"}
			}
			return Decision{}
		},
	}
	ts := startServer(t, rt)
	s := ts.session(t, nil)
	acts := envelope(t, s, "a@example.net", "good@example.org", "bad@example.org", "good2@example.org")
	if acts[0].StopProcessing() || !acts[1].StopProcessing() || acts[2].StopProcessing() {
		t.Fatalf("rcpt actions %v %v %v", acts[0], acts[1], acts[2])
	}
	if !strings.HasPrefix(acts[1].SMTPReply, "550 5.1.1 no such user") {
		t.Errorf("reply %q", acts[1].SMTPReply)
	}
	_, act := sendMessage(t, s, nil, "x\r\n")
	if act.Type != gomilter.ActionAccept {
		t.Errorf("message %v", act)
	}
	if got := testutil.ToFloat64(ts.metrics.Recipients.WithLabelValues("reject")); got != 1 {
		t.Errorf("recipients_total{reject}=%v", got)
	}
}

func TestStageVerdicts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stage Stage
		d     Decision
		check func(*testing.T, *gomilter.Action)
	}{
		{"tempfail at mail", StageMail, Decision{Verdict: TempFail, Reply: Reply{451, "4.7.1", "greylisted"}}, func(t *testing.T, a *gomilter.Action) {
			if a.Type != gomilter.ActionRejectWithCode || a.SMTPCode != 451 || !strings.Contains(a.SMTPReply, "4.7.1 greylisted") {
				t.Errorf("%+v", a)
			}
		}},
		{"reject at connect with default reply", StageConnect, Decision{Verdict: Reject}, func(t *testing.T, a *gomilter.Action) {
			if a.SMTPCode != 550 || !strings.Contains(a.SMTPReply, "5.7.1") {
				t.Errorf("%+v", a)
			}
		}},
		{"drop at helo", StageHelo, Decision{Verdict: Drop}, func(t *testing.T, a *gomilter.Action) {
			if a.SMTPCode != 421 {
				t.Errorf("%+v", a)
			}
		}},
		{"discard at data", StageData, Decision{Verdict: Discard}, func(t *testing.T, a *gomilter.Action) {
			if a.Type != gomilter.ActionDiscard {
				t.Errorf("%+v", a)
			}
		}},
		{"reject at data", StageData, Decision{Verdict: Reject, Reply: Reply{554, "5.7.0", "spam"}}, func(t *testing.T, a *gomilter.Action) {
			if a.SMTPCode != 554 || !strings.Contains(a.SMTPReply, "spam") {
				t.Errorf("%+v", a)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := &fakeRuntime{
				needs: Needs{Reply: [stageCount]bool{StageConnect: true, StageHelo: true, StageMail: true, StageRcpt: true}},
				decide: func(stage Stage, _ *Session, _ *Txn, _ *Recipient) Decision {
					if stage == tc.stage {
						return tc.d
					}
					return Decision{}
				},
			}
			ts := startServer(t, rt)
			s := ts.session(t, nil)
			var act *gomilter.Action
			switch tc.stage {
			case StageConnect:
				act = must(t)(s.Conn("h", gomilter.FamilyInet, 1, "192.0.2.1"))
			case StageHelo:
				must(t)(s.Conn("h", gomilter.FamilyInet, 1, "192.0.2.1"))
				act = must(t)(s.Helo("h"))
			case StageMail:
				must(t)(s.Conn("h", gomilter.FamilyInet, 1, "192.0.2.1"))
				must(t)(s.Helo("h"))
				act = must(t)(s.Mail("a@b.example", ""))
			case StageData:
				envelope(t, s, "a@b.example", "c@d.example")
				_, act = sendMessage(t, s, nil, "x\r\n")
			}
			tc.check(t, act)
		})
	}
}

func TestRecipientChangesAndSender(t *testing.T) {
	rt := &fakeRuntime{mods: []Module{eomModule{apply: func(tx *Txn) {
		if err := tx.Mutations.Envelope.ChangeSender("SRS0=abcd=AB=example.net=a@fwd.example.org", "", "test"); err != nil {
			panic(err)
		}
		tx.Mutations.Envelope.Replace(tx.Rcpts[0], "new@example.org", "test")
		tx.Mutations.Quarantine = "held for review"
	}}}}
	ts := startServer(t, rt)
	s := ts.session(t, nil)
	envelope(t, s, "a@example.net", "old@example.org")
	mods, act := sendMessage(t, s, nil, "x\r\n")
	want := "from <SRS0=abcd=AB=example.net=a@fwd.example.org>|delrcpt <old@example.org>|addrcpt <new@example.org>|quarantine held for review"
	if got := strings.Join(describe(mods), "|"); got != want || act.Type != gomilter.ActionAccept {
		t.Errorf("got %s (%v)\nwant %s", got, act, want)
	}
}

func TestRecipientDiscard(t *testing.T) {
	rt := &fakeRuntime{
		needs: Needs{Reply: [stageCount]bool{StageRcpt: true}, Actions: ActDelRcpt},
		decide: func(stage Stage, _ *Session, _ *Txn, r *Recipient) Decision {
			if stage == StageRcpt && strings.HasPrefix(r.Addr, "trap") {
				return Decision{Verdict: Discard, Rule: "trap"}
			}
			return Decision{}
		},
	}
	ts := startServer(t, rt)
	s := ts.session(t, nil)
	envelope(t, s, "a@example.net", "trap@example.org", "real@example.org")
	mods, act := sendMessage(t, s, nil, "x\r\n")
	if got := strings.Join(describe(mods), "|"); got != "delrcpt <trap@example.org>" || act.Type != gomilter.ActionAccept {
		t.Errorf("mods %s act %v", got, act)
	}
	// Every recipient discarded: the message is.
	s2 := ts.session(t, nil)
	envelope(t, s2, "a@example.net", "trap@example.org", "trap2@example.org")
	_, act = sendMessage(t, s2, nil, "x\r\n")
	if act.Type != gomilter.ActionDiscard {
		t.Errorf("act %v", act)
	}
}

func TestAbortMidMessage(t *testing.T) {
	rt := &fakeRuntime{needs: Needs{Headers: true, Body: true}}
	ts := startServer(t, rt)
	s := ts.session(t, map[string]string{"i": "Q1"})
	envelope(t, s, "a@example.net", "b@example.org")
	if _, err := s.DataStart(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.HeaderField("Subject", " x", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Abort(nil); err != nil {
		t.Fatal(err)
	}
	// The same SMTP connection goes on with the next message.
	must(t)(s.Mail("c@example.net", ""))
	must(t)(s.Rcpt("d@example.org", ""))
	_, act := sendMessage(t, s, nil, "y\r\n")
	if act.Type != gomilter.ActionAccept {
		t.Errorf("second message %v", act)
	}
	waitFor(t, func() bool { return testutil.ToFloat64(ts.metrics.Messages.WithLabelValues("accept")) == 1 })
	if got := testutil.ToFloat64(ts.metrics.Messages.WithLabelValues("aborted")); got != 1 {
		t.Errorf("aborted = %v", got)
	}
}

type panicModule struct{ stage Stage }

func (panicModule) Name() string { return "boom" }
func (p panicModule) Rcpt(context.Context, *Txn, *Recipient) error {
	if p.stage == StageRcpt {
		panic("module bug")
	}
	return nil
}
func (p panicModule) Body(context.Context, *Txn, []byte) error {
	if p.stage == StageBody {
		return errors.New("backend unreachable")
	}
	return nil
}

func TestModuleFailureBecomesOnError(t *testing.T) {
	onError := Decision{Verdict: TempFail, Rule: "on_error", Reply: Reply{451, "4.3.0", "local problem"}}
	t.Run("panic at rcpt", func(t *testing.T) {
		ts := startServer(t, &fakeRuntime{mods: []Module{panicModule{StageRcpt}}, onError: onError})
		s := ts.session(t, nil)
		acts := envelope(t, s, "a@example.net", "b@example.org")
		if acts[0].SMTPCode != 451 {
			t.Errorf("rcpt %+v", acts[0])
		}
		if got := testutil.ToFloat64(ts.metrics.ModuleErrors.WithLabelValues("boom", "panic")); got != 1 {
			t.Errorf("module_errors{panic}=%v", got)
		}
		// The daemon keeps serving.
		s2 := ts.session(t, nil)
		must(t)(s2.Conn("h", gomilter.FamilyInet, 1, "192.0.2.1"))
		if !strings.Contains(ts.logs.String(), "module failed") || !strings.Contains(ts.logs.String(), "module bug") {
			t.Errorf("no log line: %s", ts.logs.String())
		}
	})
	t.Run("error while streaming the body", func(t *testing.T) {
		ts := startServer(t, &fakeRuntime{mods: []Module{panicModule{StageBody}}, onError: onError})
		s := ts.session(t, nil)
		envelope(t, s, "a@example.net", "b@example.org")
		_, act := sendMessage(t, s, nil, "x\r\n")
		if act.SMTPCode != 451 {
			t.Errorf("eom %+v", act)
		}
	})
	t.Run("on_error accept lets the message through", func(t *testing.T) {
		ts := startServer(t, &fakeRuntime{mods: []Module{panicModule{StageBody}}, onError: Decision{Verdict: Continue, Rule: "on_error"}})
		s := ts.session(t, nil)
		envelope(t, s, "a@example.net", "b@example.org")
		if _, act := sendMessage(t, s, nil, "x\r\n"); act.Type != gomilter.ActionAccept {
			t.Errorf("eom %+v", act)
		}
	})
}

func TestNegotiatesOnlyWhatIsNeeded(t *testing.T) {
	ts := startServer(t, &fakeRuntime{})
	s := ts.session(t, nil)
	for _, opt := range []gomilter.OptProtocol{gomilter.OptNoHeaders, gomilter.OptNoBody, gomilter.OptNoConnReply, gomilter.OptNoRcptReply} {
		if !s.ProtocolOption(opt) {
			t.Errorf("pass-through config did not negotiate %v", opt)
		}
	}
	if s.ActionOption(gomilter.OptAddHeader) || s.ActionOption(gomilter.OptChangeFrom) {
		t.Error("pass-through config asked for changes")
	}
	ts2 := startServer(t, &fakeRuntime{needs: Needs{Headers: true, Actions: ActAddHeader, Reply: [stageCount]bool{StageRcpt: true}}})
	s2 := ts2.session(t, nil)
	if s2.ProtocolOption(gomilter.OptNoHeaders) || !s2.ProtocolOption(gomilter.OptHeaderLeadingSpace) ||
		s2.ProtocolOption(gomilter.OptNoRcptReply) || !s2.ActionOption(gomilter.OptAddHeader) {
		t.Error("header config negotiated wrongly")
	}
}

func TestReloadKeepsSessionConfig(t *testing.T) {
	reject := func(v Verdict) *fakeRuntime {
		return &fakeRuntime{needs: Needs{Reply: [stageCount]bool{StageRcpt: true}}, decide: func(stage Stage, _ *Session, _ *Txn, _ *Recipient) Decision {
			if stage == StageRcpt {
				return Decision{Verdict: v}
			}
			return Decision{}
		}}
	}
	ts := startServer(t, reject(Continue))
	old := ts.session(t, nil)
	envelope(t, old, "a@example.net")
	// No reply before RCPT: wait until the server has taken the session, or
	// the reload could come first and the session rightly start with it.
	waitFor(t, func() bool { return ts.srv.ActiveSessions() == 1 })
	ts.srv.SetRuntime(reject(Reject))
	if act := must(t)(old.Rcpt("x@example.org", "")); act.StopProcessing() {
		t.Error("open session changed configuration")
	}
	fresh := ts.session(t, nil)
	if acts := envelope(t, fresh, "a@example.net", "x@example.org"); !acts[0].StopProcessing() {
		t.Error("new session kept the old configuration")
	}
}

func TestConcurrentSessions(t *testing.T) {
	rt := &fakeRuntime{needs: Needs{Headers: true, Body: true, Actions: ActAddHeader}, mods: []Module{eomModule{apply: func(tx *Txn) {
		tx.Mutations.Append = append(tx.Mutations.Append, HeaderField{"X-Rcpt", tx.Rcpts[0].Addr})
	}}}}
	ts := startServer(t, rt)
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := gomilter.NewClient("unix", ts.sock, gomilter.WithAction(gomilter.AllClientSupportedActionMasks))
			s, err := c.Session(gomilter.NewMacroBag())
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			rcpt := fmt.Sprintf("user%d@example.org", i)
			for _, step := range []func() (*gomilter.Action, error){
				func() (*gomilter.Action, error) { return s.Conn("h", gomilter.FamilyInet, 1, "192.0.2.1") },
				func() (*gomilter.Action, error) { return s.Helo("h") },
				func() (*gomilter.Action, error) { return s.Mail("a@example.net", "") },
				func() (*gomilter.Action, error) { return s.Rcpt(rcpt, "") },
			} {
				if _, err := step(); err != nil {
					errs <- err
					return
				}
			}
			if _, err := s.DataStart(); err != nil {
				errs <- err
				return
			}
			if _, err := s.HeaderEnd(); err != nil {
				errs <- err
				return
			}
			mods, act, err := s.BodyReadFrom(strings.NewReader("hello\r\n"))
			if err != nil || act.Type != gomilter.ActionAccept || len(mods) != 1 || strings.TrimSpace(mods[0].HeaderValue) != rcpt {
				errs <- fmt.Errorf("session %d: %v %v %v", i, err, act, mods)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := testutil.ToFloat64(ts.metrics.Messages.WithLabelValues("accept")); got != n {
		t.Errorf("accepted %v of %d", got, n)
	}
}

func TestBadInputDoesNotCrashOrLeak(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	rt := &fakeRuntime{needs: Needs{Headers: true, Body: true}}
	sock := filepath.Join(t.TempDir(), "m.sock")
	metrics := NewMetrics(prometheus.NewRegistry())
	srv := NewServer(rt, ServerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: metrics})
	ln, err := Listen(Address{Network: "unix", Addr: sock}, SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()

	garbage := [][]byte{
		{0, 0, 0, 1, 'Z'},                       // unknown command before negotiation
		{0xff, 0xff, 0xff, 0xff, 'O'},           // absurd length
		{0, 0, 0, 13, 'O', 0, 0, 0, 6, 0, 0, 0}, // truncated negotiation
		[]byte("EHLO this is not milter\r\n"),
	}
	for _, g := range garbage {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(g)
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		io.Copy(io.Discard, c) // the server closes on us
		c.Close()
	}
	// An MTA that disconnects in the middle of a body.
	for range 5 {
		c := gomilter.NewClient("unix", sock, gomilter.WithAction(gomilter.AllClientSupportedActionMasks))
		s, err := c.Session(gomilter.NewMacroBag())
		if err != nil {
			t.Fatal(err)
		}
		s.Conn("h", gomilter.FamilyInet, 1, "192.0.2.1")
		s.Helo("h")
		s.Mail("a@example.net", "")
		s.Rcpt("b@example.org", "")
		s.DataStart()
		s.HeaderField("Subject", " x", nil)
		s.BodyChunk([]byte("partial"))
		s.Close()
	}
	// A valid session after all that still works.
	c := gomilter.NewClient("unix", sock, gomilter.WithAction(gomilter.AllClientSupportedActionMasks))
	s, err := c.Session(gomilter.NewMacroBag())
	if err != nil {
		t.Fatal(err)
	}
	if act, err := s.Conn("h", gomilter.FamilyInet, 1, "192.0.2.1"); err != nil || act.Type != gomilter.ActionContinue {
		t.Fatalf("after bad input: %v %v", act, err)
	}
	s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	<-done
	waitFor(t, func() bool { return srv.ActiveSessions() == 0 })
	if got := testutil.ToFloat64(metrics.Messages.WithLabelValues("aborted")); got != 5 {
		t.Errorf("aborted messages = %v, want 5", got)
	}
}

type finalizer struct {
	name string
	err  error
	ran  *int
}

func (f finalizer) Name() string { return f.name }
func (f finalizer) Finalize(_ context.Context, t *Txn, d Decision) error {
	*f.ran++
	if f.err == nil {
		t.Mutations.Append = append(t.Mutations.Append, HeaderField{Name: "X-" + f.name, Value: d.Verdict.String()})
	}
	return f.err
}
func (finalizer) Actions() Actions { return ActAddHeader }

func TestFinalizeFailureDecides(t *testing.T) {
	var sealRan, forwardRan int
	rt := &fakeRuntime{
		onError: Decision{Verdict: TempFail, Rule: "on_error", Reply: Reply{451, "4.3.0", "local problem"}},
		mods: []Module{finalizer{name: "seal", err: errors.New("key unreadable"), ran: &sealRan},
			finalizer{name: "forward", ran: &forwardRan}},
	}
	ts := startServer(t, rt)
	s := ts.session(t, nil)
	envelope(t, s, "a@example.net", "b@example.org")
	mods, act := sendMessage(t, s, nil, "x\r\n")
	if act.SMTPCode != 451 || len(mods) != 0 || sealRan != 1 || forwardRan != 0 {
		t.Errorf("act %+v mods %v seal %d forward %d", act, describe(mods), sealRan, forwardRan)
	}
	// With on_error accept the message leaves, without the failed module's part.
	rt2 := &fakeRuntime{onError: Decision{Verdict: Continue, Rule: "on_error"},
		mods: []Module{finalizer{name: "seal", err: errors.New("key unreadable"), ran: &sealRan}, finalizer{name: "forward", ran: &forwardRan}}}
	ts2 := startServer(t, rt2)
	s2 := ts2.session(t, nil)
	envelope(t, s2, "a@example.net", "b@example.org")
	mods, act = sendMessage(t, s2, nil, "x\r\n")
	if act.Type != gomilter.ActionAccept || strings.Join(describe(mods), "|") != `insert[2147483647] X-forward "accept"` {
		t.Errorf("act %+v mods %v", act, describe(mods))
	}
}

type slowModule struct{ delay time.Duration }

func (slowModule) Name() string { return "slow" }
func (s slowModule) EndOfMessage(ctx context.Context, t *Txn) error {
	time.Sleep(s.delay)
	return nil
}

// Progress packets while a backend is slow keep the MTA waiting, and the
// reply still comes after them.
func TestProgressWhileWaiting(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "m.sock")
	metrics := NewMetrics(prometheus.NewRegistry())
	srv := NewServer(&fakeRuntime{mods: []Module{slowModule{300 * time.Millisecond}}},
		ServerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: metrics, ProgressInterval: 20 * time.Millisecond})
	ln, err := Listen(Address{Network: "unix", Addr: sock}, SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())
	// A read timeout shorter than the module's delay: only progress packets keep the session alive.
	c := gomilter.NewClient("unix", sock, gomilter.WithAction(gomilter.AllClientSupportedActionMasks), gomilter.WithReadTimeout(150*time.Millisecond))
	s, err := c.Session(gomilter.NewMacroBag())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	envelope(t, s, "a@example.net", "b@example.org")
	if _, act := sendMessage(t, s, nil, "x\r\n"); act.Type != gomilter.ActionAccept {
		t.Errorf("%+v", act)
	}
}
