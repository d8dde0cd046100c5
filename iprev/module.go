package iprev

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/authres"
	"github.com/tollgate/tollgate/milter"
)

// Metrics count iprev checks; labels are closed sets.
type Metrics struct {
	Results *prometheus.CounterVec // result: pass, fail, temperror, permerror
}

// NewMetrics registers the iprev metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{Results: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Subsystem: "iprev", Name: "results_total",
		Help: "iprev (forward-confirmed reverse DNS) checks of clients by result, one per session."}, []string{"result"})}
	reg.MustRegister(m.Results)
	for _, r := range Results {
		m.Results.WithLabelValues(r)
	}
	return m
}

// ModuleOptions configures the milter hooks.
type ModuleOptions struct {
	Resolver Resolver
	Timeout  time.Duration
	Metrics  *Metrics
	Log      *slog.Logger
}

// DefaultTimeout bounds one client's check when timeout is not set.
const DefaultTimeout = 10 * time.Second

// Module checks the real client once per session, at connect (so that
// connect and HELO rules can use it), and records the result in every
// message's Authentication-Results.
type Module struct{ o ModuleOptions }

// NewModule returns the iprev module.
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

// Needs nothing of the MTA: the module decides nothing itself.
func (m *Module) Needs() milter.Needs { return milter.Needs{} }

// Connect checks the client as soon as it is known.
func (m *Module) Connect(ctx context.Context, s *milter.Session) error {
	m.check(ctx, s)
	return nil
}

// Mail records the session's result for the message (checking again when
// the last check failed for now, or the client changed).
func (m *Module) Mail(ctx context.Context, t *milter.Txn) error {
	f := m.check(ctx, t.Session)
	if f == nil {
		return nil
	}
	t.AddAuthResult(authres.Result{Method: "iprev", Result: f.Result, Comment: f.Name,
		Props: []authres.Prop{{Type: "policy", Property: "iprev", Value: f.Addr}}})
	t.Tag("iprev", f.Result)
	return nil
}

// check returns the session's facts, checking when there are none for
// this client yet or the last answer was temporary; nil when there is no
// client to check (a local submission, the proxy's own session).
func (m *Module) check(ctx context.Context, s *milter.Session) *Facts {
	id := &s.Identity
	if id.ProxyHandoff || !id.ClientAddr.IsValid() {
		return nil
	}
	addr := id.ClientAddr.Unmap().String()
	if f, ok := s.Fact(name).(*Facts); ok && f.Addr == addr && f.Result != ResultTempError {
		return f
	}
	ctx, cancel := context.WithTimeout(ctx, m.o.Timeout)
	defer cancel()
	o := Check(ctx, m.o.Resolver, id.ClientAddr)
	m.o.Metrics.Results.WithLabelValues(o.Result).Inc()
	if o.Result == ResultTempError {
		// one line a minute: the daemon's logger is rate-limited by
		// message and kind
		m.o.Log.Warn("iprev check failed for now", "module", name, "kind", "temperror", "client", addr, "problem", o.Problem)
	}
	f := &Facts{Checked: true, Addr: addr, Outcome: o}
	s.SetFact(name, f)
	return f
}
