package dcc

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/milter"
)

// Metrics count dccifd requests; labels come from closed sets.
type Metrics struct {
	Requests *prometheus.CounterVec // result: accept, fail, defer
	Errors   *prometheus.CounterVec // kind: dial, timeout, closed, garbage, too_big, io, bad_request, canceled, dccifd_tempfail
	Duration prometheus.Histogram
	Dropped  prometheus.Counter // recipients dropped for dccifd's R
	Forged   prometheus.Counter // received X-DCC headers of our brand removed
}

// NewMetrics registers the DCC metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Subsystem: "dcc", Name: "requests_total",
			Help: "dccifd checks by result (accept, fail, defer)."}, []string{"result"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Subsystem: "dcc", Name: "errors_total",
			Help: "dccifd checks that got no usable answer, by kind."}, []string{"kind"}),
		Duration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "tollgate", Subsystem: "dcc", Name: "wait_seconds",
			Help:    "Time spent waiting on dccifd per message (connect, blocked writes, the reply).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}),
	}
	m.Dropped = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "tollgate", Subsystem: "dcc", Name: "recipients_dropped_total",
		Help: "Recipients dropped because dccifd answered R for them (control dcc_drop_rejected)."})
	m.Forged = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "tollgate", Subsystem: "dcc", Name: "forged_headers_removed_total",
		Help: "Received X-DCC headers of our brand removed from messages."})
	reg.MustRegister(m.Requests, m.Errors, m.Duration, m.Dropped, m.Forged)
	for _, r := range []string{string(VerdictAccept), string(VerdictFail), string(VerdictDefer)} {
		m.Requests.WithLabelValues(r)
	}
	return m
}

// Controls the policy sets at mail or rcpt to change one message's request.
var Controls = map[string]string{"dcc_grey_off": "grey-off", "dcc_query": "query", "dcc_no_reject": "no-reject"}

// controlNames are the keys of Controls in a stable order.
var controlNames = []string{"dcc_grey_off", "dcc_query", "dcc_no_reject"}

// KindTempFail is the errors_total kind of dccifd's own T answer.
const KindTempFail = "dccifd_tempfail"

// ControlDropRejected: once the message is accepted, the recipients dccifd
// answered R for are dropped through the envelope owner, so the others get
// the mail; when that leaves nobody, the message is discarded.
const ControlDropRejected = "dcc_drop_rejected"

// Variables from the seed: set in the rcpt ACL, read when the request starts
// (override) or once the message is accepted (extra header).
const (
	VarOverrideClientIP = "acl_m_dcc_override_client_ip"
	VarAddHeader        = "acl_m_dcc_add_header"
)

// ModuleOptions configures the milter hooks.
type ModuleOptions struct {
	Options Options
	// HeloMap gives the address to report for clients of a sending cluster,
	// by HELO name (the seed's multiple-IP example).
	HeloMap   map[string]netip.Addr
	AddHeader bool // direct_add_header: put dccifd's X-DCC header in accepted messages
	// Users chooses the local user sent with each recipient.
	Users LocalUsers
	// Brand: received X-DCC-<Brand>-Metrics headers are removed even when
	// dccifd gives no header ("": only those named as dccifd's answer).
	Brand   string
	Metrics *Metrics
	Log     *slog.Logger
}

// Module streams each message to dccifd as the MTA sends it and reads the
// verdict at end of message, before the data ACL.
type Module struct{ o ModuleOptions }

func NewModule(o ModuleOptions) *Module {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Module{o: o}
}

func (m *Module) Name() string { return "dcc" }

// Needs: the message streams to dccifd as it comes (headers and body); the
// X-DCC header is added once accepted, forged ones removed, and recipients
// dccifd rejected may be dropped.
func (m *Module) Needs() milter.Needs {
	return milter.Needs{Headers: true, Body: true, Actions: milter.ActAddHeader | milter.ActChangeHeader | milter.ActDelRcpt}
}

type state struct {
	req     *Request
	err     error
	checked []*milter.Recipient // in request order
	sent    []string            // their addresses as dccifd was told them
}

// request opens the dccifd connection once the envelope is complete (at the
// first header), so the message streams through without being held.
func (m *Module) request(ctx context.Context, t *milter.Txn) *state {
	if st, ok := t.State("dcc").(*state); ok {
		return st
	}
	st := &state{}
	t.SetState("dcc", st)
	id := &t.Session.Identity
	env := Envelope{ClientIP: id.ClientAddr, ClientName: id.ClientName, Helo: id.Helo, Sender: t.Sender}
	if a, ok := LookupHelo(m.o.HeloMap, id.Helo); ok {
		env.ClientIP, env.ClientName = a, ""
	}
	if v := strings.TrimSpace(t.Vars[VarOverrideClientIP]); v != "" {
		if a, err := netip.ParseAddr(v); err == nil {
			env.ClientIP, env.ClientName = a, ""
		} else {
			m.o.Log.Warn("ignoring a bad DCC client address override", "queue_id", t.QueueID, "value", v)
		}
	}
	// The addresses the message would go to: a reversed SRS bounce is
	// checked as its real recipient.
	for _, r := range t.AcceptedRcpts() {
		if addr, dropped := t.Mutations.Envelope.Target(r); !dropped {
			env.Rcpts = append(env.Rcpts, Rcpt{Addr: addr, User: m.o.Users.User(addr)})
			st.checked, st.sent = append(st.checked, r), append(st.sent, addr)
		}
	}
	var extra []string
	for control, word := range Controls {
		if t.Controls[control] {
			extra = append(extra, word)
		}
	}
	st.req, st.err = Start(ctx, m.o.Options, env, extra...)
	return st
}

func (m *Module) Header(ctx context.Context, t *milter.Txn, h milter.Header) error {
	if st := m.request(ctx, t); st.req != nil {
		value := h.Value
		if !t.RawHeaderValue() {
			value = " " + value
		}
		st.req.Header(h.Name, value) // errors stick; Finish reports them
	}
	return nil
}

func (m *Module) Body(ctx context.Context, t *milter.Txn, chunk []byte) error {
	if st := m.request(ctx, t); st.req != nil {
		st.req.Body(chunk)
	}
	return nil
}

// EndOfMessage reads the verdict. A dccifd that is down, slow or confused
// yields defer with a reason; the policy decides (defer, or accept with
// /defer_ok), never a module failure.
func (m *Module) EndOfMessage(ctx context.Context, t *milter.Txn) error {
	st := m.request(ctx, t)
	f := factsFor(t)
	f.Checked = true
	f.checked, f.sent = st.checked, st.sent
	err := st.err
	var res *Result
	if err == nil {
		res, err = st.req.Finish()
		m.o.Metrics.Duration.Observe(st.req.Waited().Seconds())
	}
	if err != nil {
		kind := Kind(err)
		f.Result, f.Overall, f.Reason = string(VerdictDefer), "T", kind
		m.o.Metrics.Errors.WithLabelValues(kind).Inc()
		m.o.Metrics.Requests.WithLabelValues(f.Result).Inc()
		m.o.Log.Warn("dccifd gave no answer", "queue_id", t.QueueID, "kind", kind, "err", err)
		t.Tag("DCC", "defer:"+kind)
		return nil
	}
	f.Result, f.Overall, f.Rcpts, f.Header = string(res.Verdict), string(res.Overall), string(res.Rcpts), res.Header
	m.o.Metrics.Requests.WithLabelValues(f.Result).Inc()
	t.Tag("DCC", f.Overall)
	if res.Overall == 'T' {
		// dccifd's own temporary failure (no DCC server context, trouble
		// reading the message): it says no more, so say who said it. Its
		// recipient letters are R for everyone it read (deliver_tgts still
		// 0): no verdict, and dropping on them would lose the message.
		f.Rcpts = ""
		f.Reason = "dccifd answered T (temporary failure of the DCC system)"
		m.o.Metrics.Errors.WithLabelValues(KindTempFail).Inc()
		m.o.Log.Warn("dccifd answered T: temporary failure of the DCC system", "kind", KindTempFail, "queue_id", t.QueueID)
	}
	return nil
}

// Finalize removes forged X-DCC headers, drops the recipients dccifd
// rejected when the policy asked for it, and adds the headers, once the
// message is accepted.
func (m *Module) Finalize(_ context.Context, t *milter.Txn, d milter.Decision) error {
	if d.Verdict != milter.Accept {
		return nil
	}
	m.removeForged(t)
	if t.Controls[ControlDropRejected] {
		if rej := m.dropRejected(t); rej != nil {
			return rej
		}
	}
	if f := FactsOf(t); m.o.AddHeader && f.Header != "" {
		if name, value, ok := strings.Cut(f.Header, ":"); ok {
			t.Mutations.Append = append(t.Mutations.Append, milter.HeaderField{Name: name, Value: FoldHeader(name, strings.TrimSpace(value), 78)})
		}
	}
	if extra := strings.TrimSpace(t.Vars[VarAddHeader]); extra != "" {
		name, value, ok := strings.Cut(extra, ":")
		value = strings.TrimSpace(value)
		if !ok || milter.CheckHeaderField(name, value) != nil || strings.ContainsAny(value, "\r\n") {
			m.o.Log.Warn("ignoring a malformed "+VarAddHeader, "queue_id", t.QueueID, "value", extra)
		} else {
			t.Mutations.Append = append(t.Mutations.Append, milter.HeaderField{Name: name, Value: value})
		}
	}
	return nil
}

// TxnEnd closes a request the message never finished (abort, refusal).
func (m *Module) TxnEnd(t *milter.Txn) {
	if st, ok := t.State("dcc").(*state); ok && st.req != nil {
		st.req.Abort()
	}
}

// removeForged deletes received X-DCC headers of our brand (the name of
// the header dccifd answered with, and X-DCC-<Brand>-Metrics): a message
// must not arrive claiming our DCC's verdict, and downstream filters
// (SpamAssassin's DCC plugin) trust an X-DCC header they find.
func (m *Module) removeForged(t *milter.Txn) {
	var names []string
	if n, _, ok := strings.Cut(FactsOf(t).Header, ":"); ok {
		names = append(names, n)
	}
	if b := "X-DCC-" + m.o.Brand + "-Metrics"; m.o.Brand != "" && (len(names) == 0 || !strings.EqualFold(names[0], b)) {
		names = append(names, b)
	}
	for _, n := range names {
		for _, h := range t.Headers {
			if strings.EqualFold(h.Name, n) {
				t.Mutations.RemoveAll = append(t.Mutations.RemoveAll, h.Name)
				m.o.Metrics.Forged.Inc()
				break
			}
		}
	}
}

// dropRejected drops every recipient dccifd answered R for. Nothing else is
// dropped: a G recipient must get the mail after the embargo, which a drop
// would lose (the policy defers the message for G instead). When no
// recipient would be left, the message is discarded, as a message whose
// recipients were all discarded at rcpt is.
func (m *Module) dropRejected(t *milter.Txn) error {
	f := FactsOf(t)
	var rejected []*milter.Recipient
	for i, r := range f.checked {
		if i < len(f.Rcpts) && f.Rcpts[i] == 'R' {
			rejected = append(rejected, r)
		}
	}
	if len(rejected) == 0 {
		return nil
	}
	left := 0
	for _, r := range t.AcceptedRcpts() {
		if _, dropped := t.Mutations.Envelope.Target(r); !dropped && r.Decision.Verdict != milter.Discard && f.Letter(r) != "R" {
			left++
		}
	}
	m.o.Metrics.Dropped.Add(float64(len(rejected)))
	if left == 0 {
		return &milter.Rejection{Decision: milter.Decision{Verdict: milter.Discard, Rule: "dcc", Reason: "dccifd rejected every recipient"}}
	}
	for _, r := range rejected {
		t.Mutations.Envelope.Drop(r, "dcc")
	}
	return nil
}
