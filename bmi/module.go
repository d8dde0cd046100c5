package bmi

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/milter"
)

// Metrics count scans and verdicts; labels are closed sets (rule ids come
// from the configuration).
type Metrics struct {
	Scans    *prometheus.CounterVec   // backend, result: ok or an error kind
	Duration *prometheus.HistogramVec // backend
	Verdicts *prometheus.CounterVec   // outcome: deliver, alternate, drop, unscanned
	Fired    *prometheus.CounterVec   // rule
}

// NewMetrics registers the BMI metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Scans: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Subsystem: "bmi", Name: "scans_total",
			Help: "Scans by backend and result (ok, or why no verdict)."}, []string{"backend", "result"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "tollgate", Subsystem: "bmi", Name: "scan_duration_seconds",
			Help: "Time per scan.", Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"backend"}),
		Verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Subsystem: "bmi", Name: "verdicts_total",
			Help: "Recipient verdicts by outcome (unscanned: delivered normally without a verdict)."}, []string{"outcome"}),
		Fired: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Subsystem: "bmi", Name: "rules_fired_total",
			Help: "Numbered rules that fired, by rule id."}, []string{"rule"}),
	}
	reg.MustRegister(m.Scans, m.Duration, m.Verdicts, m.Fired)
	for _, o := range []string{"deliver", "alternate", "drop", "unscanned"} {
		m.Verdicts.WithLabelValues(o)
	}
	return m
}

// ControlRun marks the message for scanning; once any recipient sets it,
// every recipient is scanned.
const ControlRun = "bmi_run"

// ModuleOptions configures the milter hooks.
type ModuleOptions struct {
	Backend     Backend
	Rules       []Rule
	Profiles    ProfileMap
	Optins      map[string][]string // from the opt-in file: address -> opt-ins
	SpoolMemory int64
	SpoolDir    string
	// DeferOnError defers the message when a scan fails; the seed (and the
	// default) delivers everyone normally.
	DeferOnError bool
	SpamHeaders  bool // X-Spam-Flag / X-Spam-Status when every recipient shared one scan
	Metrics      *Metrics
	Log          *slog.Logger
}

// Module gives each recipient a verdict from a real scanner, in the manner
// of Exim's Brightmail support.
type Module struct{ o ModuleOptions }

func NewModule(o ModuleOptions) *Module {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.SpoolMemory <= 0 {
		o.SpoolMemory = DefaultSpoolMemory
	}
	return &Module{o: o}
}

func (m *Module) Name() string { return name }

// Needs: the headers are sent and kept (the scan sees them as they stand at
// end of message, and inbound X-Brightmail-* must be found), the body
// streams to the spool; verdicts become header and envelope changes.
func (m *Module) Needs() milter.Needs {
	return milter.Needs{Headers: true, Body: true,
		Actions: milter.ActAddHeader | milter.ActChangeHeader | milter.ActAddRcpt | milter.ActDelRcpt | milter.ActQuarantine}
}

type state struct {
	spool *Spool
	rcpts []*milter.Recipient // scanned, in RCPT order
	res   []*ScanResult       // per scanned recipient, nil without a verdict
	verds []Verdict
}

// Rcpt gives the recipient its opt-ins from the opt-in file; the policy's
// bmi_optin adds to them.
// The opt-ins are those of the address the message would go to (a reversed
// SRS bounce is judged as its real recipient).
func (m *Module) Rcpt(_ context.Context, t *milter.Txn, r *milter.Recipient) error {
	f := &RcptFacts{Deliver: true, Outcome: string(OutcomeDeliver)}
	r.SetFact(name, f)
	if m.o.Optins != nil {
		addr, _ := t.Mutations.Envelope.Target(r)
		f.Optins = append(f.Optins, LookupOptins(m.o.Optins, addr)...)
	}
	return nil
}

func (m *Module) Body(_ context.Context, t *milter.Txn, chunk []byte) error {
	if !t.Controls[ControlRun] {
		return nil
	}
	st, _ := t.State("bmi").(*state)
	if st == nil {
		st = &state{spool: NewSpool(m.o.SpoolMemory, m.o.SpoolDir)}
		st.spool.SetMaxSize(m.o.Backend.MaxSize())
		t.SetState("bmi", st)
	}
	_, err := st.spool.Write(chunk)
	return err
}

// EndOfMessage scans once per distinct profile, on the headers as they stand
// after the other checks, and judges every recipient before the data ACL.
func (m *Module) EndOfMessage(ctx context.Context, t *milter.Txn) error {
	if !t.Controls[ControlRun] {
		return nil
	}
	facts := factsFor(t)
	facts.Run = true
	st, _ := t.State("bmi").(*state)
	if st == nil { // an empty body
		st = &state{spool: NewSpool(m.o.SpoolMemory, m.o.SpoolDir)}
		t.SetState("bmi", st)
	}
	var inputs []RcptInput
	for _, r := range t.AcceptedRcpts() {
		addr, dropped := t.Mutations.Envelope.Target(r)
		f := RcptFactsOf(r)
		if f == nil || r.Decision.Verdict == milter.Discard || dropped {
			continue
		}
		st.rcpts = append(st.rcpts, r)
		inputs = append(inputs, RcptInput{Addr: addr, Optins: f.Optins})
	}
	var head bytes.Buffer
	for _, h := range t.Mutations.FinalHeaders(t.Headers, t.RawHeaderValue()) {
		head.WriteString(h.Name + ":" + strings.ReplaceAll(strings.ReplaceAll(h.Value, "\r\n", "\n"), "\n", "\r\n") + "\r\n")
	}
	head.WriteString("\r\n")
	groups := Profiles(inputs, m.o.Profiles.Of)
	msg, size, err := st.spool.Message(head.Bytes())
	var scans []GroupScan
	if err != nil {
		facts.Reason = Kind(err)
		m.o.Metrics.Scans.WithLabelValues(m.o.Backend.Name(), Kind(err)).Inc()
		m.o.Log.Info("message not scanned", "queue_id", t.QueueID, "reason", Kind(err), "size", size)
	} else {
		id := &t.Session.Identity
		env := Envelope{ClientIP: id.ClientAddr, Helo: id.Helo, Hostname: id.ClientName, Sender: t.Sender, Login: id.AuthLogin, QueueID: t.QueueID}
		scans = ScanGroups(ctx, m.o.Backend, msg, size, env, inputs, groups)
		facts.Scans = len(scans)
		var failed []string
		var firstErr error
		for _, sc := range scans {
			m.o.Metrics.Duration.WithLabelValues(m.o.Backend.Name()).Observe(sc.Duration.Seconds())
			if sc.Err != nil {
				facts.Reason = Kind(sc.Err)
				m.o.Metrics.Scans.WithLabelValues(m.o.Backend.Name(), Kind(sc.Err)).Inc()
				failed = append(failed, sc.Profile)
				if firstErr == nil {
					firstErr = sc.Err
				}
				continue
			}
			m.o.Metrics.Scans.WithLabelValues(m.o.Backend.Name(), "ok").Inc()
		}
		if firstErr != nil {
			action := "their recipients are delivered normally"
			if m.o.DeferOnError {
				action = "the message is deferred"
			}
			m.o.Log.Warn("scan failed; "+action, "queue_id", t.QueueID, "backend", m.o.Backend.Name(),
				"profiles", strings.Join(failed, ","), "kind", Kind(firstErr), "err", firstErr)
			if m.o.DeferOnError {
				return &milter.Rejection{Decision: milter.Decision{Verdict: milter.TempFail, Rule: "bmi", Reason: "scan failed: " + Kind(firstErr),
					Reply: milter.Reply{Code: 451, Enhanced: "4.3.0", Text: "content scanner unavailable, try again later"}}}
			}
		}
	}
	st.verds = EvaluateGroups(m.o.Rules, inputs, scans)
	st.res = make([]*ScanResult, len(inputs))
	for _, sc := range scans {
		for _, i := range sc.Rcpts {
			st.res[i] = sc.Result
		}
	}
	for i, r := range st.rcpts {
		v := st.verds[i]
		f := RcptFactsOf(r)
		f.Scanned, f.Deliver, f.Outcome, f.AltLocation, f.Fired = v.Scanned, v.Deliver, string(v.Outcome), v.AltLocation, v.Fired
		if v.Scanned {
			f.Verdict, f.Tracker = EncodeVerdict(v, st.res[i]), v.Tracker()
			m.o.Metrics.Verdicts.WithLabelValues(string(v.Outcome)).Inc()
		} else {
			m.o.Metrics.Verdicts.WithLabelValues("unscanned").Inc()
		}
		for _, id := range v.Fired {
			m.o.Metrics.Fired.WithLabelValues(strconv.Itoa(id)).Inc()
		}
	}
	return nil
}

// Finalize turns verdicts into milter actions once the message is accepted:
// drop deletes the recipient, alternate redirects, adds a header (only when
// every remaining recipient shares it) or holds the message; when every
// recipient is dropped the message is discarded.
func (m *Module) Finalize(_ context.Context, t *milter.Txn, d milter.Decision) error {
	if d.Verdict != milter.Accept {
		return nil
	}
	// Inbound copies are never trusted: someone else's verdict is no verdict.
	seen := map[string]bool{}
	for _, h := range t.Headers {
		if n := strings.ToLower(h.Name); strings.HasPrefix(n, "x-brightmail-") && !seen[n] {
			seen[n] = true
			t.Mutations.RemoveAll = append(t.Mutations.RemoveAll, h.Name)
		}
	}
	st, _ := t.State("bmi").(*state)
	if st == nil || len(st.rcpts) == 0 {
		return nil
	}
	var kept []int
	var altHeaders []AltLocation
	for i, r := range st.rcpts {
		v := st.verds[i]
		switch v.Outcome {
		case OutcomeDrop:
			t.Mutations.Envelope.Drop(r, "bmi")
			continue
		case OutcomeAlternate:
			alt, err := ParseAltLocation(v.AltLocation)
			if err != nil {
				m.o.Log.Warn("bad alternate location; delivered normally", "queue_id", t.QueueID, "alt", v.AltLocation)
				break
			}
			switch alt.Kind {
			case AltRedirect:
				t.Mutations.Envelope.Redirect(r, alt.Address, "bmi")
			case AltQuarantine:
				reason := alt.Reason
				if reason == "" {
					reason = "held by bmi rule " + strconv.Itoa(v.Rule)
				}
				t.Mutations.Quarantine = reason
			case AltHeader:
				altHeaders = append(altHeaders, alt)
			}
		}
		kept = append(kept, i)
	}
	if len(kept) == 0 {
		return &milter.Rejection{Decision: milter.Decision{Verdict: milter.Discard, Rule: "bmi", Reason: "every recipient dropped"}}
	}
	if len(altHeaders) > 0 {
		if len(altHeaders) == len(kept) && allSame(altHeaders) {
			t.Mutations.Append = append(t.Mutations.Append, milter.HeaderField{Name: altHeaders[0].HeaderName, Value: altHeaders[0].HeaderValue})
		} else {
			m.o.Log.Info("alternate header not added: the remaining recipients do not all share it", "queue_id", t.QueueID)
		}
	}
	var verdicts, trackers []string
	for _, i := range kept {
		f := RcptFactsOf(st.rcpts[i])
		if f.Verdict != "" && !slices.Contains(verdicts, f.Verdict) {
			verdicts = append(verdicts, f.Verdict)
		}
		if f.Tracker != "" && !slices.Contains(trackers, f.Tracker) {
			trackers = append(trackers, f.Tracker)
		}
	}
	for _, v := range verdicts {
		t.Mutations.Append = append(t.Mutations.Append, milter.HeaderField{Name: "X-Brightmail-Verdict", Value: v})
	}
	for _, tr := range trackers {
		t.Mutations.Append = append(t.Mutations.Append, milter.HeaderField{Name: "X-Brightmail-Tracker", Value: tr})
	}
	if m.o.SpamHeaders {
		m.spamHeaders(t, st, kept)
	}
	return nil
}

// spamHeaders adds X-Spam-Flag and X-Spam-Status for downstream filters when
// every remaining recipient got the same scan.
func (m *Module) spamHeaders(t *milter.Txn, st *state, kept []int) {
	res := st.res[kept[0]]
	for _, i := range kept {
		if st.res[i] != res {
			return
		}
	}
	if res == nil {
		return
	}
	flag, status := "NO", "No"
	if res.IsSpam {
		flag, status = "YES", "Yes"
	}
	t.Mutations.RemoveAll = append(t.Mutations.RemoveAll, "X-Spam-Flag", "X-Spam-Status")
	t.Mutations.Append = append(t.Mutations.Append,
		milter.HeaderField{Name: "X-Spam-Flag", Value: flag},
		milter.HeaderField{Name: "X-Spam-Status", Value: status + ", score=" + strconv.FormatFloat(res.Score, 'f', 1, 64) +
			" required=" + strconv.FormatFloat(res.Threshold, 'f', 1, 64) + " backend=" + res.Backend})
}

func allSame(a []AltLocation) bool {
	for _, x := range a[1:] {
		if x != a[0] {
			return false
		}
	}
	return true
}

// TxnEnd frees the spool (memory, and the unlinked temp file).
func (m *Module) TxnEnd(t *milter.Txn) {
	if st, ok := t.State("bmi").(*state); ok && st.spool != nil {
		st.spool.Close()
	}
}
