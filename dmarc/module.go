package dmarc

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/authres"
	"github.com/tollgate/tollgate/milter"
)

// Metrics count DMARC evaluations; labels are closed sets.
type Metrics struct {
	Results   *prometheus.CounterVec // status: Exim's $dmarc_status values
	Overrides prometheus.Counter     // fails turned into accept by a trusted ARC sealer
}

// NewMetrics registers the DMARC metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Results: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Subsystem: "dmarc", Name: "results_total",
			Help: "DMARC evaluations by status (Exim's dmarc_status: accept, reject, quarantine, none, norecord, nofrom, temperror, error)."},
			[]string{"status"}),
		Overrides: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "tollgate", Subsystem: "dmarc", Name: "arc_overrides_total",
			Help: "DMARC failures accepted because a trusted ARC sealer saw the message pass at its hop."}),
	}
	reg.MustRegister(m.Results, m.Overrides)
	for _, s := range Statuses {
		m.Results.WithLabelValues(string(s))
	}
	return m
}

// ModuleOptions configures the milter hooks.
type ModuleOptions struct {
	LookupTXT LookupTXT
	// TrustedSealer says whether an ARC-Seal d= may vouch for a message
	// that fails DMARC (trusted_arc_sealers); nil trusts none.
	TrustedSealer func(domain string) bool
	// Roll draws pct samples in [0, 100); nil is math/rand.
	Roll    func() int
	Timeout time.Duration // for the record lookups of one message
	Metrics *Metrics
	Log     *slog.Logger
}

// DefaultTimeout bounds the DNS work of one message when
// ModuleOptions.Timeout is not set.
const DefaultTimeout = 10 * time.Second

// Module evaluates DMARC at the end of every message, after SPF, DKIM and
// ARC recorded their results.
type Module struct {
	o    ModuleOptions
	warn *slog.Logger // rate-limited: DNS trouble repeats per message
}

func NewModule(o ModuleOptions) *Module {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	return &Module{o: o, warn: milter.RateLimited(o.Log, 0)}
}

func (m *Module) Name() string { return name }

// Needs: the From fields and the message's own ARC fields; nothing else.
func (m *Module) Needs() milter.Needs { return milter.Needs{Headers: true} }

type state struct {
	from  []string
	nFrom int
	arc   []ARCField
}

func (m *Module) state(t *milter.Txn) *state {
	if st, ok := t.State(name).(*state); ok {
		return st
	}
	st := &state{}
	t.SetState(name, st)
	return st
}

func (m *Module) Header(_ context.Context, t *milter.Txn, h milter.Header) error {
	st := m.state(t)
	switch {
	case strings.EqualFold(h.Name, "From"):
		st.nFrom++
		if len(st.from) < maxFromFields {
			st.from = append(st.from, t.HeaderValue(h))
		}
	case strings.EqualFold(h.Name, "ARC-Seal"), strings.EqualFold(h.Name, "ARC-Authentication-Results"):
		if len(st.arc) < maxARCFields {
			st.arc = append(st.arc, ARCField{Name: h.Name, Value: t.HeaderValue(h)})
		}
	}
	return nil
}

// EndOfMessage evaluates DMARC. DNS trouble or a bad record is a status
// (temperror, error) the policy may act on: never a module failure.
func (m *Module) EndOfMessage(ctx context.Context, t *milter.Txn) error {
	st := m.state(t)
	ctx, cancel := context.WithTimeout(ctx, m.o.Timeout)
	defer cancel()
	from := st.from
	if st.nFrom > len(from) {
		from = append(from, make([]string, st.nFrom-len(from))...)
	}
	res := Evaluate(ctx, Input{From: from, AuthResults: t.AuthResults(), ARC: st.arc,
		TrustedSealer: m.o.TrustedSealer, LookupTXT: m.o.LookupTXT, Roll: m.o.Roll})
	ar := res.AuthResult()
	f := factsFor(t)
	f.Checked = true
	f.Status, f.StatusText = string(res.Status), res.Text()
	f.FromDomain, f.UsedDomain, f.DomainPolicy, f.Override = res.FromDomain, res.UsedDomain, res.DomainPolicy, res.Override
	t.AddAuthResult(ar)
	f.AuthResult = authres.FormatResult(ar)
	m.o.Metrics.Results.WithLabelValues(string(res.Status)).Inc()
	if res.Override != "" {
		m.o.Metrics.Overrides.Inc()
	}
	t.Tag("DMARC", string(res.Status))
	switch res.Status {
	case StatusTempError:
		m.warn.Warn("DMARC record unavailable", "module", name, "kind", "dns", "queue_id", t.QueueID, "domain", res.FromDomain, "error", res.Reason)
	case StatusError, StatusNoFrom:
		m.warn.Warn("DMARC cannot judge a message", "module", name, "kind", string(res.Status), "queue_id", t.QueueID, "reason", res.Reason)
	}
	if res.Override != "" {
		m.o.Log.Info("DMARC fail accepted by ARC local policy", "queue_id", t.QueueID, "domain", res.FromDomain, "override", res.Override, "reason", res.OverrideReason)
	}
	return nil
}
