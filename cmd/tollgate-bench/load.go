package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/tollgate/tollgate/internal/mta"
)

// envelope is what the simulated MTA tells the milter about each session and message.
type envelope struct {
	from       string
	rcpt       string // pattern with {n} (recipient number) and {m} (message number)
	rcpts      int
	client     netip.Addr
	clientName string
	helo       string
	login      string
	macros     []macroSetting
}

// loadSpec is one measurement: a target under a load.
type loadSpec struct {
	network, addr string
	concurrency   int
	messages      int
	duration      time.Duration
	perSession    int
	timeout       time.Duration
	msgs          []*message
	env           envelope
}

// Result is one measurement of one subject.
type Result struct {
	Messages       int                       `json:"messages"` // messages finished, whatever the outcome
	Sessions       int                       `json:"sessions"`
	Seconds        float64                   `json:"seconds"`
	MessagesPerSec float64                   `json:"messages_per_sec"`
	Outcomes       map[string]int            `json:"outcomes"`         // accept, reject, tempfail, discard, error
	Errors         map[string]int            `json:"errors,omitempty"` // connect, negotiate, protocol, timeout, reject, tempfail, rcpt_reject, rcpt_tempfail
	FirstError     string                    `json:"first_error,omitempty"`
	Modifications  map[string]int            `json:"modifications,omitempty"` // changes requested at end of message, by kind
	Latency        map[string]LatencySummary `json:"latency"`
	LoadCPUPerMsg  float64                   `json:"load_cpu_ms_per_message"` // the bench's own CPU time
	Process        *ProcessStats             `json:"process,omitempty"`
}

// ProcessStats are measured for a milter the bench runs as a child.
type ProcessStats struct {
	CPUSeconds        float64 `json:"cpu_seconds"`
	CPUPerMsg         float64 `json:"cpu_ms_per_message"`
	PeakRSSMiB        float64 `json:"peak_rss_mib"`
	PeakRSSCumulative bool    `json:"peak_rss_since_start,omitempty"` // the kernel could not reset the peak before the run
	AllocPerMsgKiB    float64 `json:"alloc_kib_per_message,omitempty"`
	MallocsPerMsg     float64 `json:"mallocs_per_message,omitempty"`
}

// Failed reports errors other than the milter's own refusals.
func (r *Result) Failed() bool {
	for _, k := range []string{"connect", "negotiate", "protocol", "timeout"} {
		if r.Errors[k] > 0 {
			return true
		}
	}
	return false
}

// workerStats is one worker's share, merged at the end.
type workerStats struct {
	lat        [stageCount]samples
	outcomes   map[string]int
	errors     map[string]int
	mods       map[string]int
	firstError string
	sessions   int
	messages   int
}

func (w *workerStats) fail(kind string, err error) {
	w.errors[kind]++
	if w.firstError == "" {
		w.firstError = kind + ": " + err.Error()
	}
}

type loader struct {
	spec     loadSpec
	client   *gomilter.Client
	next     atomic.Int64
	deadline time.Time
	ctx      context.Context
	sessions atomic.Int64
	rcptAddr []string // precomputed recipients when the pattern has no {m}
}

func newClient(network, addr string, timeout time.Duration) *gomilter.Client {
	opts := []gomilter.Option{
		gomilter.WithDialer(&net.Dialer{Timeout: timeout}),
		gomilter.WithReadTimeout(timeout),
		gomilter.WithWriteTimeout(timeout),
	}
	return mta.NewClient(network, addr, append(opts, mta.PostfixMacroRequests()...)...)
}

// runLoad sends spec.messages messages (or as many as fit in spec.duration)
// over spec.concurrency sessions in parallel and measures them.
func runLoad(ctx context.Context, spec loadSpec) *Result {
	l := &loader{spec: spec, client: newClient(spec.network, spec.addr, spec.timeout), ctx: ctx}
	if !strings.Contains(spec.env.rcpt, "{m}") {
		for n := 1; n <= spec.env.rcpts; n++ {
			l.rcptAddr = append(l.rcptAddr, rcptAddress(spec.env.rcpt, n, 0))
		}
	}
	stats := make([]*workerStats, spec.concurrency)
	var wg sync.WaitGroup
	cpu0 := selfCPU()
	start := time.Now()
	l.deadline = start.Add(spec.duration)
	for i := range stats {
		w := &workerStats{outcomes: map[string]int{}, errors: map[string]int{}, mods: map[string]int{}}
		stats[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.worker(w)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := selfCPU() - cpu0

	r := &Result{Outcomes: map[string]int{}, Errors: map[string]int{}, Modifications: map[string]int{}, Latency: map[string]LatencySummary{}}
	var all [stageCount]samples
	for _, w := range stats {
		r.Messages += w.messages
		r.Sessions += w.sessions
		for k, v := range w.outcomes {
			r.Outcomes[k] += v
		}
		for k, v := range w.errors {
			r.Errors[k] += v
		}
		for k, v := range w.mods {
			r.Modifications[k] += v
		}
		if r.FirstError == "" {
			r.FirstError = w.firstError
		}
		for s := range all {
			all[s] = append(all[s], w.lat[s]...)
		}
	}
	for s, name := range stageNames {
		r.Latency[name] = summarize(all[s])
	}
	r.Seconds = elapsed.Seconds()
	r.MessagesPerSec = ratio(float64(r.Messages), r.Seconds)
	if r.Messages > 0 {
		r.LoadCPUPerMsg = cpu * 1000 / float64(r.Messages)
	}
	return r
}

// claim takes the next message number, or reports that the run is over.
func (l *loader) claim() (int, bool) {
	if l.ctx.Err() != nil || time.Now().After(l.deadline) {
		return 0, false
	}
	n := l.next.Add(1)
	if n > int64(l.spec.messages) {
		return 0, false
	}
	return int(n), true
}

func (l *loader) worker(w *workerStats) {
	mac := newMacros(l.spec.env)
	for {
		n, ok := l.claim()
		if !ok {
			return
		}
		l.session(w, mac, n)
	}
}

// macros is the simulated MTA's macro table for one session.
type macros struct {
	m     map[string]string
	fixed map[string]bool // set with --macro: never overwritten
}

func (m *macros) Get(name string) string { return m.m[name] }
func (m *macros) GetEx(name string) (string, bool) {
	v, ok := m.m[name]
	return v, ok
}

func (m *macros) set(name, value string) {
	if m.fixed[name] {
		return
	}
	if value == "" {
		delete(m.m, name)
		return
	}
	m.m[name] = value
}

// newMacros fills the values Postfix knows for a session: the connect
// macros, and the login when there is one.
func newMacros(env envelope) *macros {
	m := &macros{m: map[string]string{}, fixed: map[string]bool{}}
	addr := env.client.String()
	if env.client.Is6() && !env.client.Is4In6() {
		addr = "IPv6:" + addr
	}
	m.set("j", "mx.example.org")
	m.set("v", "Postfix 3.7.11")
	m.set("{daemon_name}", "mx.example.org")
	m.set("{daemon_addr}", "192.0.2.25")
	m.set("{daemon_port}", "25")
	m.set("{client_addr}", addr)
	m.set("{client_name}", env.clientName)
	m.set("{client_ptr}", env.clientName)
	m.set("_", env.clientName+" ["+addr+"]")
	if env.login != "" {
		m.set("{auth_type}", "PLAIN")
		m.set("{auth_authen}", env.login)
	}
	for _, s := range env.macros {
		if s.value == "" {
			delete(m.m, s.name)
		} else {
			m.m[s.name] = s.value
		}
		m.fixed[s.name] = true
	}
	return m
}

func rcptAddress(pattern string, n, msg int) string {
	return strings.NewReplacer("{n}", strconv.Itoa(n), "{m}", strconv.Itoa(msg)).Replace(pattern)
}

// errKind names a client error: timeout, connect (the dial failed) or protocol.
func errKind(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return "connect"
	}
	return "protocol"
}

// verdict names what an action means for the message: "" to go on, or
// accept, reject, tempfail, discard.
func verdict(act *gomilter.Action) string {
	switch act.Type {
	case gomilter.ActionContinue, gomilter.ActionSkip:
		return ""
	case gomilter.ActionAccept:
		return "accept"
	case gomilter.ActionDiscard:
		return "discard"
	case gomilter.ActionReject:
		return "reject"
	case gomilter.ActionTempFail:
		return "tempfail"
	case gomilter.ActionRejectWithCode:
		if act.SMTPCode >= 400 && act.SMTPCode < 500 {
			return "tempfail"
		}
		return "reject"
	}
	return "reject"
}

var modNames = map[gomilter.ModifyActionType]string{
	gomilter.ActionAddRcpt: "add_rcpt", gomilter.ActionDelRcpt: "del_rcpt", gomilter.ActionQuarantine: "quarantine",
	gomilter.ActionReplaceBody: "replace_body", gomilter.ActionChangeFrom: "change_from", gomilter.ActionAddHeader: "add_header",
	gomilter.ActionChangeHeader: "change_header", gomilter.ActionInsertHeader: "insert_header",
}

// session is one milter connection: connect, helo, then up to
// perSession messages, the first of which is number n.
func (l *loader) session(w *workerStats, mac *macros, n int) {
	w.sessions++
	sessNo := l.sessions.Add(1)
	mac.set("{client_port}", strconv.Itoa(int(1024+sessNo%64000)))
	t0 := time.Now()
	s, err := l.client.Session(mac)
	if err != nil {
		kind := errKind(err)
		if kind == "protocol" {
			kind = "negotiate"
		}
		w.fail(kind, err)
		w.message("error")
		return
	}
	defer s.Close()
	act, err := s.Conn(l.spec.env.clientName, mta.Family(l.spec.env.client), uint16(1024+sessNo%64000), l.spec.env.client.String())
	connect := time.Since(t0)
	if err != nil {
		w.fail(errKind(err), err)
		w.message("error")
		return
	}
	if v := verdict(act); v != "" && v != "accept" {
		w.refused(v, "connect", act)
		return
	}
	t1 := time.Now()
	act, err = s.Helo(l.spec.env.helo)
	helo := time.Since(t1)
	if err != nil {
		w.fail(errKind(err), err)
		w.message("error")
		return
	}
	if v := verdict(act); v != "" && v != "accept" {
		w.refused(v, "helo", act)
		return
	}
	w.lat[stageConnect] = append(w.lat[stageConnect], int64(connect))
	w.lat[stageHelo] = append(w.lat[stageHelo], int64(helo))
	first := connect + helo
	for k := 0; ; k++ {
		ok, clean := l.message(w, s, mac, n, first)
		if !ok {
			return // the connection is broken
		}
		if k+1 >= l.spec.perSession {
			return
		}
		if n, ok = l.claim(); !ok {
			return
		}
		if !clean {
			if err := s.Abort(nil); err != nil {
				w.fail(errKind(err), err)
				return
			}
		}
		first = 0
	}
}

func (w *workerStats) message(outcome string) {
	w.messages++
	w.outcomes[outcome]++
}

func (w *workerStats) refused(v, stage string, act *gomilter.Action) {
	w.message(v)
	if v == "reject" || v == "tempfail" {
		w.errors[v]++
		if w.firstError == "" {
			w.firstError = fmt.Sprintf("%s at %s: %d %s", v, stage, act.SMTPCode, act.SMTPReply)
		}
	}
}

// message sends one message over an open session. ok is false when the
// connection broke; clean is false when the message ended before end of
// message (the MTA then sends an abort before the next one).
func (l *loader) message(w *workerStats, s *gomilter.ClientSession, mac *macros, n int, before time.Duration) (ok, clean bool) {
	env := &l.spec.env
	msg := l.spec.msgs[(n-1)%len(l.spec.msgs)]
	mac.set("i", "")
	mac.set("{mail_addr}", env.from)
	mac.set("{mail_host}", domainOf(env.from))
	mac.set("{mail_mailer}", "smtp")
	fail := func(err error) (bool, bool) {
		w.fail(errKind(err), err)
		w.message("error")
		return false, false
	}
	t0 := time.Now()
	act, err := s.Mail(env.from, "")
	mail := time.Since(t0)
	if err != nil {
		return fail(err)
	}
	if v := verdict(act); v != "" {
		w.refused(v, "mail", act)
		return true, false
	}
	t1 := time.Now()
	accepted, discard := 0, false
	var lastRefusal string
	var lastAct *gomilter.Action
	for i := 1; i <= env.rcpts; i++ {
		var addr string
		if l.rcptAddr != nil {
			addr = l.rcptAddr[i-1]
		} else {
			addr = rcptAddress(env.rcpt, i, n)
		}
		mac.set("{rcpt_addr}", addr)
		mac.set("{rcpt_host}", domainOf(addr))
		mac.set("{rcpt_mailer}", "smtp")
		act, err := s.Rcpt(addr, "")
		if err != nil {
			return fail(err)
		}
		switch v := verdict(act); v {
		case "", "accept":
			accepted++
		case "discard":
			discard = true
			accepted++
		default:
			w.errors["rcpt_"+v]++
			lastRefusal, lastAct = v, act
		}
	}
	rcpt := time.Since(t1)
	w.lat[stageMail] = append(w.lat[stageMail], int64(mail))
	w.lat[stageRcpt] = append(w.lat[stageRcpt], int64(rcpt))
	if discard {
		w.message("discard")
		return true, false
	}
	if accepted == 0 {
		w.refused(lastRefusal, "rcpt", lastAct)
		return true, false
	}
	mac.set("i", queueID(n))
	t2 := time.Now()
	act, err = s.DataStart()
	if err != nil {
		return fail(err)
	}
	if v := verdict(act); v != "" {
		w.refused(v, "data", act)
		return true, false
	}
	for i, f := range msg.fields {
		value := f.spaced
		if i == msg.msgIDAt {
			value = " <" + strconv.Itoa(n) + ".tollgate-bench@mail.example.net>"
		}
		act, err = mta.Header(s, f.name, value)
		if err != nil {
			return fail(err)
		}
		if v := verdict(act); v != "" {
			w.refused(v, "header", act)
			return true, false
		}
	}
	if act, err = s.HeaderEnd(); err != nil {
		return fail(err)
	}
	if v := verdict(act); v != "" {
		w.refused(v, "end of headers", act)
		return true, false
	}
	if act, err = mta.Body(s, msg.body); err != nil {
		return fail(err)
	}
	if act != nil {
		if v := verdict(act); v != "" {
			w.refused(v, "body", act)
			return true, false
		}
	}
	t3 := time.Now()
	mods, act, err := s.End()
	end := time.Now()
	if err != nil {
		return fail(err)
	}
	w.lat[stageData] = append(w.lat[stageData], int64(end.Sub(t2)))
	w.lat[stageEOM] = append(w.lat[stageEOM], int64(end.Sub(t3)))
	w.lat[stageMessage] = append(w.lat[stageMessage], int64(before+mail+rcpt+end.Sub(t2)))
	for _, m := range mods {
		w.mods[modNames[m.Type]]++
	}
	switch v := verdict(act); v {
	case "", "accept":
		w.message("accept")
	default:
		w.refused(v, "end of message", act)
	}
	return true, true
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}

// queueID makes a Postfix-style long queue id from a message number.
func queueID(n int) string {
	return "4Xk" + strings.ToUpper(strconv.FormatInt(int64(n)+1_000_000_000, 36))
}
