package srs

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/milter"
)

// Metrics count what SRS did; labels are the closed sets of Reason.
type Metrics struct {
	Forward *prometheus.CounterVec // result: rewritten, skipped_null_sender, skipped_local, skipped_ours, or a Reason
	Reverse *prometheus.CounterVec // result: valid, or a Reason (bad_hash, expired, ...)
}

// NewMetrics registers the SRS metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Forward: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Subsystem: "srs", Name: "forward_total",
			Help: "Envelope senders considered for SRS forwarding, by result."}, []string{"result"}),
		Reverse: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Subsystem: "srs", Name: "reverse_total",
			Help: "Recipients at the SRS domain, by result of reversing them."}, []string{"result"}),
	}
	reg.MustRegister(m.Forward, m.Reverse)
	m.Forward.WithLabelValues("rewritten")
	m.Reverse.WithLabelValues("valid")
	return m
}

// ModuleOptions configures the milter hooks.
type ModuleOptions struct {
	SRS *SRS
	// Local reports the sender domains never rewritten: our own domains and
	// exclude_domains.
	Local   func(domain string) bool
	Metrics *Metrics
	Log     *slog.Logger
}

// Module reverses SRS recipients at RCPT and forwards senders after an
// accept when the policy switched on control srs_forward.
type Module struct{ o ModuleOptions }

// ControlForward is the control that asks for the sender to be rewritten.
const ControlForward = "srs_forward"

func NewModule(o ModuleOptions) *Module {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Module{o: o}
}

func (m *Module) Name() string { return "srs" }

func (m *Module) Actions() milter.Actions {
	return milter.ActChangeFrom | milter.ActAddRcpt | milter.ActDelRcpt
}

// Rcpt checks a recipient at the SRS domain. A forged, damaged or expired SRS
// address is refused here, for that recipient only, so nothing is accepted
// that would later bounce to a stranger (backscatter).
func (m *Module) Rcpt(_ context.Context, t *milter.Txn, r *milter.Recipient) error {
	if !m.o.SRS.IsOurs(r.Addr) {
		return nil
	}
	if !IsSRS(r.Addr) {
		r.SRS = &milter.SRSRcpt{Status: string(StatusNone)}
		return nil
	}
	orig, err := m.o.SRS.Reverse(r.Addr)
	status, reason := StatusOf(err), Reason(err)
	r.SRS = &milter.SRSRcpt{Status: string(status), Reason: reason, Recipient: orig}
	if err == nil {
		m.o.Metrics.Reverse.WithLabelValues("valid").Inc()
		return nil
	}
	m.o.Metrics.Reverse.WithLabelValues(reason).Inc()
	if status == StatusNone {
		return nil
	}
	m.o.Log.Info("SRS recipient refused", "queue_id", t.QueueID, "client", t.Session.Identity.Client(),
		"recipient", r.Addr, "status", string(status), "reason", reason)
	text := "no such address: invalid SRS address"
	if status == StatusExpired {
		text = "no such address: the SRS address has expired"
	}
	return &milter.Rejection{Decision: milter.Decision{Verdict: milter.Reject, Rule: "srs",
		Reason: "srs " + string(status) + ": " + reason, Reply: milter.Reply{Code: 550, Enhanced: "5.1.1", Text: text}}}
}

// Finalize replaces reversed recipients and, when asked, rewrites the sender,
// only once the message is accepted.
func (m *Module) Finalize(_ context.Context, t *milter.Txn, d milter.Decision) error {
	if d.Verdict != milter.Accept {
		return nil
	}
	for _, r := range t.Rcpts {
		if r.SRS == nil || r.SRS.Status != string(StatusValid) || (r.Decision.Verdict != milter.Continue && r.Decision.Verdict != milter.Accept) {
			continue
		}
		t.Mutations.DelRcpts = append(t.Mutations.DelRcpts, r.Addr)
		t.Mutations.AddRcpts = append(t.Mutations.AddRcpts, milter.Envelope{Addr: r.SRS.Recipient})
	}
	if !t.Controls[ControlForward] {
		return nil
	}
	result := m.forward(t)
	m.o.Metrics.Forward.WithLabelValues(result).Inc()
	return nil
}

func (m *Module) forward(t *milter.Txn) string {
	switch {
	case t.Sender == "":
		return "skipped_null_sender"
	case m.o.SRS.IsOurs(t.Sender):
		return "skipped_ours"
	case m.o.Local != nil && m.o.Local(milter.Domain(t.Sender)):
		return "skipped_local"
	}
	addr, err := m.o.SRS.Forward(t.Sender)
	if err != nil {
		// The sender stays as it is: forwarding it unrewritten may fail SPF
		// downstream, refusing it would lose the message.
		m.o.Log.Warn("SRS forward not possible; sender left unchanged", "queue_id", t.QueueID, "sender", t.Sender, "err", err)
		return Reason(err)
	}
	t.SRS.OrigSender, t.SRS.NewSender = t.Sender, addr
	t.Mutations.ChangeFrom = &milter.Envelope{Addr: addr}
	t.Tag("SRS", addr)
	return "rewritten"
}
