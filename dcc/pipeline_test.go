package dcc_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tollgate/tollgate/dcc"
	"github.com/tollgate/tollgate/dcc/dcctest"
	"github.com/tollgate/tollgate/internal/miltertest"
	"github.com/tollgate/tollgate/milter"
	"github.com/tollgate/tollgate/policy"
)

// syncBuffer collects the daemon's log lines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// pipeline is a policy served on a milter socket, as the daemon runs it.
type pipeline struct {
	sock string
	log  *syncBuffer
	reg  *prometheus.Registry
}

func serve(t *testing.T, config string) *pipeline {
	t.Helper()
	p, err := policy.Parse("dcc.yaml", []byte(config), dcc.Spec)
	if err != nil {
		t.Fatal(err)
	}
	pl := &pipeline{log: &syncBuffer{}, reg: prometheus.NewRegistry()}
	log := slog.New(slog.NewTextHandler(pl.log, nil))
	env := policy.NewEnv(log, pl.reg)
	t.Cleanup(env.Close)
	rt, err := env.Runtime(p)
	if err != nil {
		t.Fatal(err)
	}
	// The daemon's own server and log, so that the summary line is seen.
	srv := milter.NewServer(rt, milter.ServerOptions{Logger: log, Metrics: env.Metrics})
	pl.sock = filepath.Join(t.TempDir(), "m.sock")
	ln, err := milter.Listen(milter.Address{Network: "unix", Addr: pl.sock}, milter.SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return pl
}

// result is what the MTA was told at end of message.
type result struct {
	action  string // accept, discard, or the SMTP reply
	rcpts   []string
	deletes []string
	added   map[string]string // header name -> value
	removed []string          // header names changed to empty (deleted)
}

// send plays an MTA: one message from 203.0.113.5 to rcpts, with extra
// headers first.
func send(t *testing.T, pl *pipeline, rcpts []string, headers ...[2]string) result {
	t.Helper()
	c, macros := miltertest.Client(pl.sock)
	s, err := c.Session(macros)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	step := func(act *gomilter.Action, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if act.Type != gomilter.ActionContinue && act.Type != gomilter.ActionAccept {
			t.Fatalf("action %+v", act)
		}
	}
	step(s.Conn("mail.example.net", gomilter.FamilyInet, 40000, "203.0.113.5"))
	step(s.Helo("mail.example.net"))
	step(s.Mail("alice@example.net", ""))
	for _, r := range rcpts {
		step(s.Rcpt(r, ""))
	}
	step(s.DataStart())
	for _, h := range append(headers, [2]string{"Subject", " test"}) {
		step(s.HeaderField(h[0], h[1], nil))
	}
	step(s.HeaderEnd())
	step(s.BodyChunk([]byte("hello\r\n")))
	mods, act, err := s.End()
	if err != nil {
		t.Fatalf("%v\n%s", err, pl.log.String())
	}
	out := result{rcpts: slices.Clone(rcpts), added: map[string]string{}}
	switch act.Type {
	case gomilter.ActionAccept, gomilter.ActionContinue:
		out.action = "accept"
	case gomilter.ActionDiscard:
		out.action = "discard"
	default:
		out.action = act.SMTPReply
	}
	for _, m := range mods {
		switch m.Type {
		case gomilter.ActionDelRcpt:
			addr := strings.Trim(m.Rcpt, "<>")
			out.deletes = append(out.deletes, addr)
			out.rcpts = slices.DeleteFunc(out.rcpts, func(a string) bool { return strings.EqualFold(a, addr) })
		case gomilter.ActionAddHeader, gomilter.ActionInsertHeader:
			out.added[m.HeaderName] = strings.TrimPrefix(m.HeaderValue, " ")
		case gomilter.ActionChangeHeader:
			if m.HeaderValue == "" {
				out.removed = append(out.removed, m.HeaderName)
			}
		}
	}
	return out
}

const letterPolicy = `
dcc: {address: "%s", timeout: 3s, direct_add_header: true}
acl:
  data:
    - defer:  {name: greylist, dcc_result: [G], message: "451 4.7.1 greylisted, please try again later"}
    - deny:   {name: bulk, dcc_every_recipient_result: [R], message: "550 5.7.1 bulk mail ($dcc_result)"}
    - defer:  {name: dcc-down, dcc_result: [T], message: "451 4.3.0 DCC unavailable ($dcc_result)"}
    - accept: {dcc_recipient_result: [R], control: [dcc_drop_rejected], add_header: "X-Letters: $dcc_result $dcc_recipient_results dropped=$dcc_rejected_recipients"}
    - accept: {add_header: "X-Letters: $dcc_result $dcc_recipient_results"}
`

// dccifd's letters reach the policy as the seed says: $dcc_result is the
// overall letter, and bulk mail (R) is no longer answered as greylisted.
func TestPipelineOverallLetter(t *testing.T) {
	var mu sync.Mutex
	reply := dcctest.Reply{}
	srv := dcctest.New(t, dcctest.Config{Handler: func(*dcctest.Request) dcctest.Reply {
		mu.Lock()
		defer mu.Unlock()
		return reply
	}})
	pl := serve(t, fmt.Sprintf(letterPolicy, srv.DCCAddress()))
	for _, tc := range []struct {
		reply dcctest.Reply
		want  string
	}{
		{dcctest.Reply{Overall: 'G', Header: dcctest.DefaultHeader}, "451 4.7.1 greylisted, please try again later"},
		{dcctest.Reply{Overall: 'R', Header: dcctest.DefaultHeader}, "550 5.7.1 bulk mail (R)"},
		{dcctest.Reply{Overall: 'T'}, "451 4.3.0 DCC unavailable (T)"},
		{dcctest.Reply{Overall: 'S', Header: dcctest.DefaultHeader}, "accept"},
		{dcctest.Reply{Overall: 'A', Header: dcctest.DefaultHeader}, "accept"},
	} {
		mu.Lock()
		reply = tc.reply
		mu.Unlock()
		got := send(t, pl, []string{"bob@example.org", "carol@example.org"})
		if got.action != tc.want {
			t.Errorf("%c: %s, want %s", tc.reply.Overall, got.action, tc.want)
		}
		if tc.want == "accept" {
			want := string(tc.reply.Overall) + " AA"
			if got.added["X-Letters"] != want || !strings.Contains(got.added["X-DCC-tollgate-Metrics"], "dcctest 1085;") {
				t.Errorf("%c: headers %q, want X-Letters %q", tc.reply.Overall, got.added, want)
			}
		}
	}
}

// A real T answer and a dccifd that is down both defer under the seed's
// dcc: condition, each with a reason that says what happened.
func TestPipelineTempFailReason(t *testing.T) {
	srv := dcctest.New(t, dcctest.Config{Handler: dcctest.Fixed(dcctest.Reply{Overall: 'T'})})
	pl := serve(t, `
dcc: {address: "`+srv.DCCAddress()+`", timeout: 3s}
acl:
  data:
    - defer:  {name: greylist, dcc: "!accept", message: "451 4.7.1 greylisted, please try again later"}
    - accept: {}
`)
	got := send(t, pl, []string{"bob@example.org"})
	if !strings.HasPrefix(got.action, "451 4.3.0") {
		t.Fatalf("T answer: %s", got.action)
	}
	logs := pl.log.String()
	if strings.Contains(logs, `reason="dcc: "`) || !strings.Contains(logs, `reason="dcc: dccifd answered T (temporary failure of the DCC system)"`) {
		t.Errorf("log:\n%s", logs)
	}
	if n := testutil.ToFloat64(metric(t, pl.reg, "tollgate_dcc_errors_total", "kind", "dccifd_tempfail")); n != 1 {
		t.Errorf("errors_total{kind=dccifd_tempfail} = %v", n)
	}
	down := serve(t, `
dcc: {address: "`+t.TempDir()+`/none", timeout: 3s}
acl:
  data:
    - defer:  {dcc: "!accept"}
    - accept: {}
`)
	if got := send(t, down, []string{"bob@example.org"}); !strings.HasPrefix(got.action, "451 4.3.0") ||
		!strings.Contains(down.log.String(), `reason="dcc: dial"`) {
		t.Errorf("dccifd down: %s\n%s", got.action, down.log.String())
	}
}

// metric finds one series of a counter vector in the registry.
func metric(t *testing.T, reg *prometheus.Registry, name, label, value string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" {
				return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "x"}, func() float64 { return m.GetCounter().GetValue() })
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "x"}, func() float64 { return m.GetCounter().GetValue() })
				}
			}
		}
	}
	t.Fatalf("no %s{%s=%q}", name, label, value)
	return nil
}

// Per recipient: a whiteclnt "many env_To carol" makes dccifd answer A / AR;
// the policy drops carol through the envelope owner and bob gets the mail.
// A bulk message one recipient whitelisted answers R / AR: bob still gets it.
// Every recipient R is denied by the policy; without the deny, the control
// discards the message rather than deliver it to nobody.
func TestPipelinePerRecipient(t *testing.T) {
	many := dcctest.New(t, dcctest.Config{Handler: dcctest.Users{Many: []string{"carol@example.org"}}.Handler()})
	got := send(t, serve(t, fmt.Sprintf(letterPolicy, many.DCCAddress())), []string{"bob@example.org", "carol@example.org"})
	if got.action != "accept" || fmt.Sprint(got.rcpts) != "[bob@example.org]" || fmt.Sprint(got.deletes) != "[carol@example.org]" ||
		got.added["X-Letters"] != "A AR dropped=carol@example.org" {
		t.Errorf("many env_To carol: %+v", got)
	}

	bulk := dcctest.New(t, dcctest.Config{Handler: dcctest.Users{Bulk: true, OK: []string{"bob@example.org"}}.Handler()})
	pl := serve(t, fmt.Sprintf(letterPolicy, bulk.DCCAddress()))
	got = send(t, pl, []string{"bob@example.org", "carol@example.org"})
	if got.action != "accept" || fmt.Sprint(got.rcpts) != "[bob@example.org]" || got.added["X-Letters"] != "R AR dropped=carol@example.org" {
		t.Errorf("bulk, bob whitelisted: %+v", got)
	}
	if got := send(t, pl, []string{"carol@example.org", "dave@example.org"}); got.action != "550 5.7.1 bulk mail (R)" {
		t.Errorf("bulk for everyone: %+v", got)
	}
	if n := testutil.ToFloat64(metric(t, pl.reg, "tollgate_dcc_recipients_dropped_total", "", "")); n != 1 {
		t.Errorf("recipients_dropped_total = %v", n)
	}

	noDeny := serve(t, `
dcc: {address: "`+bulk.DCCAddress()+`"}
acl:
  rcpt:
    - accept: {control: [dcc_drop_rejected]}
`)
	if got := send(t, noDeny, []string{"carol@example.org", "dave@example.org"}); got.action != "discard" {
		t.Errorf("every recipient dropped: %+v", got)
	}
	// Whitelisted for everyone: dccifd's whitelist header, kept as it is.
	wl := dcctest.New(t, dcctest.Config{Handler: dcctest.Users{OK: []string{"bob@example.org"}}.Handler()})
	got = send(t, serve(t, fmt.Sprintf(letterPolicy, wl.DCCAddress())), []string{"bob@example.org"})
	if got.action != "accept" || got.added["X-DCC--Metrics"] != "dcctest; whitelist" || got.added["X-Letters"] != "A A" {
		t.Errorf("whitelisted: %+v", got)
	}
}

// dccifd is told each recipient's local user: the local part by default,
// a mapped user first, none outside local_user_domains or with local_user:
// none; the stand-in records the lines as dccifd reads them.
func TestPipelineLocalUsers(t *testing.T) {
	srv := dcctest.New(t, dcctest.Config{})
	rcpts := []string{"Bob@example.org", "postmaster@example.org", "x@elsewhere.example"}
	send(t, serve(t, `
dcc: {address: "`+srv.DCCAddress()+`", local_users: {postmaster@example.org: root}, local_user_domains: [example.org]}
`), rcpts)
	send(t, serve(t, `
dcc: {address: "`+srv.DCCAddress()+`", local_user: none}
`), rcpts)
	reqs := srv.WaitRequests(2, 5*time.Second)
	if len(reqs) != 2 {
		t.Fatalf("%d requests", len(reqs))
	}
	want := []dcctest.Rcpt{{Addr: "Bob@example.org", User: "Bob", HasUser: true}, {Addr: "postmaster@example.org", User: "root", HasUser: true}, {Addr: "x@elsewhere.example"}}
	if fmt.Sprint(reqs[0].Rcpts) != fmt.Sprint(want) {
		t.Errorf("users sent %+v, want %+v", reqs[0].Rcpts, want)
	}
	for _, r := range reqs[1].Rcpts {
		if r.HasUser {
			t.Errorf("local_user none sent %+v", r)
		}
	}
}

// Forged X-DCC headers of our brand are removed (dccifd's brand from its
// answer, and the configured brand even when dccifd says nothing); another
// brand's header stays.
func TestPipelineForgedHeaders(t *testing.T) {
	srv := dcctest.New(t, dcctest.Config{})
	pl := serve(t, `
dcc: {address: "`+srv.DCCAddress()+`", direct_add_header: true, brand: tollgate}
`)
	got := send(t, pl, []string{"bob@example.org"},
		[2]string{"X-DCC-tollgate-Metrics", " forged 1; Body=0"}, [2]string{"x-dcc-TOLLGATE-metrics", " forged 2; Body=0"},
		[2]string{"X-DCC-other-Metrics", " elsewhere 3; Body=1"})
	if got.action != "accept" || !slices.Contains(got.removed, "X-DCC-tollgate-Metrics") || !slices.Contains(got.removed, "x-dcc-TOLLGATE-metrics") ||
		slices.Contains(got.removed, "X-DCC-other-Metrics") || got.added["X-DCC-tollgate-Metrics"] != "dcctest 1085; Body=1 Fuz1=1 Fuz2=1" {
		t.Errorf("%+v", got)
	}
	whitelisted := dcctest.New(t, dcctest.Config{Handler: dcctest.Users{OK: []string{"bob@example.org"}}.Handler()})
	got = send(t, serve(t, `
dcc: {address: "`+whitelisted.DCCAddress()+`", brand: tollgate}
`), []string{"bob@example.org"}, [2]string{"X-DCC-tollgate-Metrics", " forged 1; bulk Body=many"})
	if !slices.Contains(got.removed, "X-DCC-tollgate-Metrics") {
		t.Errorf("whitelisted message kept the forged header: %+v", got)
	}
}
