package spf

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/authres"
	"github.com/tollgate/tollgate/milter"
)

// Metrics count SPF checks; labels are closed sets.
type Metrics struct {
	Results *prometheus.CounterVec // result: pass, fail, ... (the message's recorded result)
	Helo    *prometheus.CounterVec // result of the HELO identity, when checked apart
	Seconds prometheus.Histogram
}

// NewMetrics registers the SPF metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Results: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Subsystem: "spf", Name: "results_total",
			Help: "SPF results recorded for messages (MAIL FROM, or HELO for the null sender) by result."}, []string{"result"}),
		Helo: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Subsystem: "spf", Name: "helo_results_total",
			Help: "SPF results of the HELO identity checked apart (spf.helo: true), by result, once per session and HELO name."}, []string{"result"}),
		Seconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "tollgate", Subsystem: "spf", Name: "duration_seconds",
			Help: "Time to check one message's SPF, DNS included.", Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20}}),
	}
	reg.MustRegister(m.Results, m.Helo, m.Seconds)
	for _, r := range Results {
		m.Results.WithLabelValues(r)
		m.Helo.WithLabelValues(r)
	}
	return m
}

// ModuleOptions configures the milter hooks.
type ModuleOptions struct {
	Resolver Resolver
	// Receiver is the authserv-id: in comments, Received-SPF and as the
	// Authentication-Results of the milter.
	Receiver       string
	Timeout        time.Duration
	Helo           bool // check the HELO identity too
	ReceivedHeader bool // add Received-SPF
	Metrics        *Metrics
	Log            *slog.Logger
}

// Module checks SPF at MAIL, on the real client (behind an XCLIENT proxy,
// the client the proxy named; never the proxy itself).
type Module struct{ o ModuleOptions }

// NewModule returns the SPF module.
func NewModule(o ModuleOptions) *Module {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	return &Module{o: o}
}

func (m *Module) Name() string { return name }

// Needs: the check runs at MAIL and only writes facts and results; it never
// decides there itself (the policy does, and asks for its own replies).
func (m *Module) Needs() milter.Needs {
	n := milter.Needs{}
	if m.o.ReceivedHeader {
		n.Actions |= milter.ActAddHeader
	}
	return n
}

// Mail checks the sender (or, for the null sender, the HELO name) and
// records the result for the message's Authentication-Results. DNS trouble
// is temperror, a broken record permerror: never a module failure.
func (m *Module) Mail(ctx context.Context, t *milter.Txn) error {
	id := &t.Session.Identity
	if id.ProxyHandoff || !id.ClientAddr.IsValid() {
		// the proxy's own session, or a local submission: there is no
		// client whose authorisation SPF could tell
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, m.o.Timeout)
	defer cancel()
	start := time.Now()
	req := Request{IP: id.ClientAddr, Helo: id.Helo, Sender: t.Sender, Identity: IdentityMailFrom, Receiver: m.o.Receiver}
	var helo *Outcome
	if m.o.Helo || t.Sender == "" {
		helo = m.heloOutcome(ctx, t.Session)
	}
	var o Outcome
	if t.Sender == "" {
		o = *helo
	} else {
		o = Check(ctx, m.o.Resolver, req)
	}
	m.o.Metrics.Seconds.Observe(time.Since(start).Seconds())
	m.o.Metrics.Results.WithLabelValues(o.Result).Inc()

	f := factsFor(t)
	f.Checked, f.Result, f.Identity, f.Address, f.Domain, f.Problem = true, o.Result, o.Identity, o.Address, o.Domain, o.Problem
	f.HeaderComment = o.HeaderComment(m.o.Receiver, id.ClientAddr)
	f.SMTPComment = o.SMTPComment()
	if o.Identity == IdentityHelo {
		req.Identity = IdentityHelo
	}
	f.Received = o.ReceivedSPF(req)
	if helo != nil {
		f.HeloResult = helo.Result
	}
	t.Tag("SPF", o.Result)
	if o.Result == ResultTempError {
		// DNS trouble is ours to look at: one line a minute (the daemon's
		// logger is rate-limited by message and kind); a domain's broken
		// record is its owner's, and the summary tag and metric show it.
		m.o.Log.Warn("SPF check failed for now", "module", name, "kind", "temperror", "domain", o.Domain, "problem", o.Problem)
	}
	ar := authres.Result{Method: "spf", Result: o.Result, Comment: f.HeaderComment}
	if o.Identity == IdentityHelo {
		ar.Props = []authres.Prop{{Type: "smtp", Property: "helo", Value: strings.TrimSuffix(id.Helo, ".")}}
	} else {
		ar.Props = []authres.Prop{{Type: "smtp", Property: "mailfrom", Value: t.Sender}}
	}
	t.AddAuthResult(ar)
	if m.o.ReceivedHeader {
		t.Mutations.Prepend = append(t.Mutations.Prepend, milter.HeaderField{Name: "Received-SPF", Value: f.Received})
	}
	return nil
}

// heloOutcome checks the HELO identity once per session and HELO name. A
// HELO that is no domain (an address literal, one label) is none.
func (m *Module) heloOutcome(ctx context.Context, s *milter.Session) *Outcome {
	hf := milter.KeepSessionFacts[heloFacts](s, name)
	if hf.outcome != nil && hf.helo == s.Identity.Helo {
		return hf.outcome
	}
	o := Check(ctx, m.o.Resolver, Request{IP: s.Identity.ClientAddr, Helo: s.Identity.Helo, Identity: IdentityHelo, Receiver: m.o.Receiver})
	if m.o.Helo {
		m.o.Metrics.Helo.WithLabelValues(o.Result).Inc()
	}
	if o.Result != ResultTempError {
		// a temporary failure is asked again with the next message
		hf.helo, hf.outcome = s.Identity.Helo, &o
	}
	return &o
}
