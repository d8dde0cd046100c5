package milter

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// startLimited is startServer with options (limits, logger).
func startLimited(t testing.TB, rt Runtime, lim Limits) *testServer {
	t.Helper()
	ts := &testServer{sock: filepath.Join(t.TempDir(), "m.sock"), logs: &syncBuffer{}}
	ts.metrics = NewMetrics(prometheus.NewRegistry())
	ts.srv = NewServer(rt, ServerOptions{Logger: slog.New(slog.NewTextHandler(ts.logs, nil)), Metrics: ts.metrics, Limits: lim})
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

// total sums the wire violations of every reason.
func total(c *prometheus.CounterVec) float64 {
	sum := 0.0
	for _, r := range wireViolations {
		sum += testutil.ToFloat64(c.WithLabelValues(r))
	}
	return sum
}

// packet frames one milter command.
func packet(code byte, data string) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(data)+1))
	return append(append(out, code), data...)
}

// optneg is what Postfix sends first: version 6, every action, no protocol
// restriction.
var optneg = packet('O', "\x00\x00\x00\x06\x00\x00\x01\xff\x00\x00\x00\x00")

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// killerShapes are the packets that ended the whole daemon before the wire
// was owned (issue 12): go-milter v0.10.2 panics on each in its own goroutine.
var killerShapes = map[string][]byte{
	"zero_length_first":        {0, 0, 0, 0},
	"zero_length_negotiated":   cat(optneg, []byte{0, 0, 0, 0}),
	"connect_host_without_nul": cat(optneg, packet('C', "mail.example.com")),
	"connect_only_host":        cat(optneg, packet('C', "mail.example.com\x00")),
	"mail_without_nul":         cat(optneg, packet('C', "h\x004\x9c\x40192.0.2.1\x00"), packet('M', "<a@example.net>")),
	"rcpt_without_nul": cat(optneg, packet('C', "h\x004\x9c\x40192.0.2.1\x00"), packet('M', "<a@example.net>\x00"),
		packet('R', "<b@example.org>")),
}

// exchange writes raw bytes to the server and reads whatever it answers until
// it closes the connection (or 5 s pass).
func exchange(t testing.TB, sock string, raw []byte) []byte {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(raw)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	out, _ := io.ReadAll(c)
	return out
}

// fullRuntime asks for every event and a reply at every stage, so that go-milter
// takes every packet apart.
func fullRuntime() *fakeRuntime {
	return &fakeRuntime{needs: Needs{Headers: true, Body: true, Reply: [stageCount]bool{true, true, true, true, true, true, true}},
		mods: []Module{streamingModule{}}}
}

type streamingModule struct{}

func (streamingModule) Name() string                               { return "stream" }
func (streamingModule) Header(context.Context, *Txn, Header) error { return nil }
func (streamingModule) Body(context.Context, *Txn, []byte) error   { return nil }

func normalMessage(t *testing.T, ts *testServer) {
	t.Helper()
	s := ts.session(t, map[string]string{"i": "Q1"})
	envelope(t, s, "a@example.net", "b@example.org")
	_, act := sendMessage(t, s, [][2]string{{"Subject", " hi"}}, "body\r\n")
	if act.Type != gomilter.ActionAccept {
		t.Fatalf("normal message after bad input: %v", act)
	}
	s.Close()
}

func TestKillerShapesCloseOneConnection(t *testing.T) {
	ts := startLimited(t, fullRuntime(), Limits{})
	for name, raw := range killerShapes {
		t.Run(name, func(t *testing.T) {
			before := total(ts.metrics.WireViolations)
			exchange(t, ts.sock, raw)
			waitFor(t, func() bool { return total(ts.metrics.WireViolations) == before+1 })
			normalMessage(t, ts)
		})
	}
	if n := strings.Count(ts.logs.String(), "malformed milter packet"); n == 0 || n > 5 {
		t.Errorf("%d log lines for malformed packets, want one per reason:\n%s", n, ts.logs.String())
	}
}

func TestWireChecks(t *testing.T) {
	conn := packet('C', "h\x004\x9c\x40192.0.2.1\x00")
	for _, tc := range []struct {
		name   string
		raw    []byte
		reason string
	}{
		{"first packet not optneg", packet('C', "h\x00U"), violOptNeg},
		{"short optneg", packet('O', "\x00\x00\x00\x06"), violOptNeg},
		{"connect unknown family", cat(optneg, packet('C', "h\x00X")), violConnect},
		{"connect port without address", cat(optneg, packet('C', "h\x004\x9c\x40")), violConnect},
		{"connect address without nul", cat(optneg, packet('C', "h\x004\x9c\x40192.0.2.1")), violConnect},
		{"helo without nul", cat(optneg, conn, packet('H', "h")), violHelo},
		{"header without value", cat(optneg, conn, packet('L', "Subject\x00")), violHeader},
		{"header three strings", cat(optneg, conn, packet('L', "Subject\x00a\x00b\x00")), violHeader},
		{"header without name", cat(optneg, conn, packet('L', "\x00a\x00")), violHeader},
		{"macro without stage", cat(optneg, packet('D', "")), violMacro},
		{"macro unknown stage", cat(optneg, packet('D', "Zj\x00v\x00")), violMacro},
		{"macro unterminated", cat(optneg, packet('D', "Cj\x00v")), violMacro},
		{"body over the chunk size", cat(optneg, conn, packet('B', strings.Repeat("x", 65536))), violBodyChunk},
		{"unknown without nul", cat(optneg, conn, packet('U', "XYZZY")), violUnknownStr},
		{"second optneg", cat(optneg, optneg), violUnknownCommand},
		{"unknown command", cat(optneg, packet('z', "")), violUnknownCommand},
		{"truncated packet", cat(optneg, []byte{0, 0, 0, 9, 'C', 'h'}), violTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startLimited(t, fullRuntime(), Limits{})
			exchange(t, ts.sock, tc.raw)
			waitFor(t, func() bool { return testutil.ToFloat64(ts.metrics.WireViolations.WithLabelValues(tc.reason)) == 1 })
		})
	}
}

func TestWirePassesWhatMTAsSend(t *testing.T) {
	ts := startLimited(t, fullRuntime(), Limits{})
	s := ts.session(t, map[string]string{"i": "Q1", "j": "mx.example.org", "{daemon_name}": "mx"})
	must(t)(s.Conn("mail.example.com", gomilter.FamilyInet6, 40000, "2001:db8::1"))
	must(t)(s.Helo("mail.example.com"))
	must(t)(s.Mail("", "SIZE=100 BODY=8BITMIME"))
	must(t)(s.Rcpt("b@example.org", "NOTIFY=NEVER"))
	must(t)(s.Unknown("XYZZY", nil))
	_, act := sendMessage(t, s, [][2]string{{"Subject", ""}, {"X-Empty", ""}}, strings.Repeat("x", 200000))
	if act.Type != gomilter.ActionAccept {
		t.Fatalf("action %v", act)
	}
	// Other families as Postfix and Sendmail send them.
	for _, fam := range []struct {
		family gomilter.ProtoFamily
		addr   string
	}{{gomilter.FamilyUnix, "/run/x"}, {gomilter.FamilyUnknown, ""}} {
		s := ts.session(t, nil)
		must(t)(s.Conn("localhost", fam.family, 0, fam.addr))
		s.Close()
	}
	if got := total(ts.metrics.WireViolations); got != 0 {
		t.Errorf("%v violations for valid traffic:\n%s", got, ts.logs.String())
	}
}

func TestMaxConnections(t *testing.T) {
	ts := startLimited(t, fullRuntime(), Limits{MaxConnections: 2})
	var held []*gomilter.ClientSession
	for range 2 {
		s := ts.session(t, nil)
		must(t)(s.Conn("h", gomilter.FamilyInet, 1, "192.0.2.1"))
		held = append(held, s)
	}
	// The third is closed at once, before negotiation.
	if out := exchange(t, ts.sock, optneg); len(out) != 0 {
		t.Fatalf("third connection answered %q", out)
	}
	if got := testutil.ToFloat64(ts.metrics.LimitsHit.WithLabelValues(limitConnections)); got != 1 {
		t.Errorf("limits_hit{max_connections} = %v", got)
	}
	held[0].Close()
	waitFor(t, func() bool { return ts.srv.ActiveSessions() == 1 })
	normalMessage(t, ts)
}

func TestIdleTimeout(t *testing.T) {
	// Generous against a busy CI machine: the talking session below pauses a
	// quarter of the timeout between packets, and talks for longer than it.
	ts := startLimited(t, fullRuntime(), Limits{IdleTimeout: time.Second})
	s := ts.session(t, nil)
	must(t)(s.Conn("h", gomilter.FamilyInet, 1, "192.0.2.1"))
	waitFor(t, func() bool { return testutil.ToFloat64(ts.metrics.LimitsHit.WithLabelValues(limitIdle)) == 1 })
	waitFor(t, func() bool { return ts.srv.ActiveSessions() == 0 })
	if _, err := s.Helo("h"); err == nil {
		t.Error("the idle session still answers")
	}
	// A session that keeps talking is not cut.
	s2 := ts.session(t, nil)
	must(t)(s2.Conn("h", gomilter.FamilyInet, 1, "192.0.2.1"))
	must(t)(s2.Helo("h"))
	must(t)(s2.Mail("a@example.net", ""))
	for range 6 {
		time.Sleep(250 * time.Millisecond)
		must(t)(s2.Rcpt("b@example.org", ""))
	}
}

func TestHugeAnnouncementAllocatesNothing(t *testing.T) {
	ts := startLimited(t, fullRuntime(), Limits{})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	announce := cat(optneg, []byte{0x20, 0, 0, 0, 'B'}) // 512 MiB
	for range 16 {
		exchange(t, ts.sock, announce)
	}
	runtime.ReadMemStats(&after)
	if grown := after.TotalAlloc - before.TotalAlloc; grown > 32<<20 {
		t.Errorf("16 announcements of 512 MiB allocated %d MiB", grown>>20)
	}
	if got := testutil.ToFloat64(ts.metrics.LimitsHit.WithLabelValues(limitPacket)); got != 16 {
		t.Errorf("limits_hit{max_packet} = %v", got)
	}
	// An announcement within max_packet costs only what arrives.
	runtime.GC()
	runtime.ReadMemStats(&before)
	var conns []net.Conn
	for range 16 {
		c, err := net.Dial("unix", ts.sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(cat(optneg, []byte{0, 4, 0, 0, 'L'}, []byte("Subject")))
		conns = append(conns, c)
	}
	for _, c := range conns { // the negotiation answer: the server has read the announcement
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.ReadFull(c, make([]byte, 4))
	}
	time.Sleep(100 * time.Millisecond)
	runtime.ReadMemStats(&after)
	if grown := after.TotalAlloc - before.TotalAlloc; grown > 4<<20 {
		t.Errorf("16 announcements of 256 KiB with 7 bytes sent allocated %d KiB", grown>>10)
	}
}

func TestHeaderLimits(t *testing.T) {
	tempfail := Decision{Verdict: TempFail, Rule: "on_error", Reply: Reply{Code: 451, Enhanced: "4.3.0", Text: "try later"}}
	many := make([][2]string, 20)
	for i := range many {
		many[i] = [2]string{"X-H", " v"}
	}
	big := [][2]string{{"X-A", " " + strings.Repeat("a", 800)}, {"X-B", " " + strings.Repeat("b", 800)}}
	for _, tc := range []struct {
		name    string
		lim     Limits
		headers [][2]string
		onError Decision
		limit   string
		want    gomilter.ActionType
	}{
		{"count tempfail", Limits{MaxHeaders: 10}, many, tempfail, limitHeaders, gomilter.ActionTempFail},
		{"bytes tempfail", Limits{MaxHeaderBytes: 1000}, big, tempfail, limitHeaderBytes, gomilter.ActionTempFail},
		{"count accept", Limits{MaxHeaders: 10}, many, Decision{Verdict: Continue, Rule: "on_error"}, limitHeaders, gomilter.ActionAccept},
	} {
		t.Run(tc.name, func(t *testing.T) {
			judged := false
			rt := &fakeRuntime{needs: Needs{Headers: true, Body: true}, onError: tc.onError,
				mods: []Module{eomModule{apply: func(tx *Txn) {
					judged = true
					tx.Mutations.Append = append(tx.Mutations.Append, HeaderField{"X-Added", "1"})
				}}}}
			ts := startLimited(t, rt, tc.lim)
			s := ts.session(t, map[string]string{"i": "Q1"})
			envelope(t, s, "a@example.net", "b@example.org")
			mods, act := sendMessage(t, s, tc.headers, "body\r\n")
			if tc.want == gomilter.ActionTempFail && act.SMTPCode != 451 || tc.want == gomilter.ActionAccept && act.Type != tc.want ||
				len(mods) != 0 || judged {
				t.Fatalf("action %v mods %v judged %v", act, describe(mods), judged)
			}
			if got := testutil.ToFloat64(ts.metrics.LimitsHit.WithLabelValues(tc.limit)); got != 1 {
				t.Errorf("limits_hit{%s} = %v", tc.limit, got)
			}
			// The next message on the same connection starts afresh.
			must(t)(s.Mail("a@example.net", ""))
			must(t)(s.Rcpt("b@example.org", ""))
			_, act = sendMessage(t, s, [][2]string{{"Subject", " ok"}}, "body\r\n")
			if act.Type != gomilter.ActionAccept || !judged {
				t.Errorf("next message: %v judged %v", act, judged)
			}
		})
	}
}

// identityModule records what each stage saw of the session.
type identityModule struct{ seen *[]Session }

func (identityModule) Name() string { return "identity" }
func (m identityModule) Mail(_ context.Context, t *Txn) error {
	seen := Session{ID: t.Session.ID, Identity: t.Session.Identity, Vars: clone(t.Session.Vars)}
	// a session fact (iprev's result, SPF's HELO verdict live there) as
	// the previous SMTP session left it, if it did
	if v, ok := t.Session.Fact("identity").(string); ok {
		seen.SetFact("identity", v)
	}
	*m.seen = append(*m.seen, seen)
	t.Session.Vars["acl_c_seen"] = "yes"
	t.Session.SetFact("identity", "iprev=pass for "+t.Session.Identity.ClientAddr.String())
	return nil
}

func clone(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestQuitNewConnectionStartsAfresh(t *testing.T) {
	var seen []Session
	ts := startLimited(t, &fakeRuntime{mods: []Module{identityModule{&seen}}}, Limits{})
	c := gomilter.NewClient("unix", ts.sock, gomilter.WithAction(gomilter.AllClientSupportedActionMasks))
	first := gomilter.NewMacroBag()
	first.Set("{auth_authen}", "alice")
	first.Set("{auth_type}", "PLAIN")
	first.Set("{client_addr}", "192.0.2.10")
	first.Set("{client_name}", "trusted.example.net")
	s, err := c.Session(first)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	must(t)(s.Conn("trusted.example.net", gomilter.FamilyInet, 1, "192.0.2.10"))
	must(t)(s.Helo("trusted.example.net"))
	must(t)(s.Mail("alice@example.org", ""))
	if err := s.Abort(nil); err != nil {
		t.Fatal(err)
	}
	// QUIT_NC: the MTA hands this milter connection to another SMTP
	// session, which brings none of alice's macros.
	if err := s.Reset(gomilter.NewMacroBag()); err != nil {
		t.Fatal(err)
	}
	must(t)(s.Conn("outside.example.com", gomilter.FamilyInet, 2, "198.51.100.7"))
	must(t)(s.Helo("outside.example.com"))
	must(t)(s.Mail("mallory@example.com", ""))
	if len(seen) != 2 {
		t.Fatalf("saw %d messages", len(seen))
	}
	a, b := seen[0], seen[1]
	if a.Identity.AuthLogin != "alice" || a.Identity.ClientAddr.String() != "192.0.2.10" {
		t.Fatalf("first session: %+v", a.Identity)
	}
	if b.ID == a.ID || b.Identity.AuthLogin != "" || b.Identity.AuthMechanism != "" || b.Identity.Helo != "outside.example.com" || b.Identity.ClientAddr.String() != "198.51.100.7" ||
		b.Identity.ClientName == "trusted.example.net" || len(b.Vars) != 0 || b.Fact("identity") != nil {
		t.Errorf("second session kept the first's state: id %d/%d %+v vars %v fact %v", a.ID, b.ID, b.Identity, b.Vars, b.Fact("identity"))
	}
	if got := testutil.ToFloat64(ts.metrics.Sessions); got != 2 {
		t.Errorf("sessions_total = %v, want 2", got)
	}
}

// tempErrListener fails Accept with EMFILE a number of times.
type tempErrListener struct {
	net.Listener
	fails int
}

func (l *tempErrListener) Accept() (net.Conn, error) {
	if l.fails > 0 {
		l.fails--
		return nil, &net.OpError{Op: "accept", Net: "unix", Err: &osSyscallError{}}
	}
	return l.Listener.Accept()
}

var errEMFILE error = syscall.EMFILE

type osSyscallError struct{}

func (*osSyscallError) Error() string { return "accept4: too many open files" }
func (*osSyscallError) Unwrap() error { return errEMFILE }

func TestAcceptBacksOffOnTemporaryErrors(t *testing.T) {
	logs := &syncBuffer{}
	metrics := NewMetrics(prometheus.NewRegistry())
	srv := NewServer(fullRuntime(), ServerOptions{Logger: slog.New(slog.NewTextHandler(logs, nil)), Metrics: metrics})
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "m.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var slept []time.Duration
	gl := &guardedListener{Listener: &tempErrListener{Listener: ln, fails: 12}, guard: &wireGuard{srv: srv},
		sleep: func(d time.Duration) { slept = append(slept, d) }}
	go func() {
		c, err := net.Dial("unix", ln.Addr().String())
		if err == nil {
			defer c.Close()
			time.Sleep(time.Second)
		}
	}()
	c, err := gl.Accept()
	if err != nil {
		t.Fatalf("accept gave up: %v", err)
	}
	c.Close()
	if got := testutil.ToFloat64(metrics.AcceptErrors); got != 12 {
		t.Errorf("accept_errors_total = %v", got)
	}
	if slept[0] != 5*time.Millisecond || slept[len(slept)-1] != time.Second {
		t.Errorf("back-off %v", slept)
	}
	if n := strings.Count(logs.String(), "accepting MTA connections failed"); n != 1 {
		t.Errorf("%d lines for one burst:\n%s", n, logs.String())
	}
	// A closed listener is not temporary: go-milter's Serve must see it.
	ln.Close()
	if _, err := gl.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("accept on a closed listener: %v", err)
	}
}

// panicRuntime panics where no module hook's recover reaches: in the
// session's own code at connect.
type panicRuntime struct{ *fakeRuntime }

func (panicRuntime) Identity() *IdentityConfig { panic("identity configuration broken") }

func TestPanicEndsOneConnection(t *testing.T) {
	ts := startLimited(t, panicRuntime{fullRuntime()}, Limits{})
	for range 3 {
		s := ts.session(t, nil)
		if _, err := s.Conn("h", gomilter.FamilyInet, 1, "192.0.2.1"); err == nil {
			t.Error("connect answered after a panic")
		}
		s.Close()
	}
	waitFor(t, func() bool { return testutil.ToFloat64(ts.metrics.Panics) == 3 })
	waitFor(t, func() bool { return ts.srv.ActiveSessions() == 0 })
	if n := strings.Count(ts.logs.String(), "panic while serving an MTA connection"); n != 1 {
		t.Errorf("%d log lines for 3 panics of one kind", n)
	}
}
