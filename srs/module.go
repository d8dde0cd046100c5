package srs

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/milter"
)

// Metrics count what SRS did; labels are the closed sets of Reason.
type Metrics struct {
	Forward *prometheus.CounterVec // result: rewritten, skipped_null_sender, skipped_local, skipped_ours, or a Reason
	Reverse *prometheus.CounterVec // result: valid, or a Reason (bad_hash, expired, ...)
	// Socketmap counts the socketmap server's refusals and bad input:
	// malformed, too_big, unknown_map, idle_timeout, connection_limit,
	// accept_error.
	Socketmap *prometheus.CounterVec
}

// NewMetrics registers the SRS metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Forward: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Subsystem: "srs", Name: "forward_total",
			Help: "Envelope senders considered for SRS forwarding, by result."}, []string{"result"}),
		Reverse: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Subsystem: "srs", Name: "reverse_total",
			Help: "Recipients at the SRS domain, by result of reversing them."}, []string{"result"}),
		Socketmap: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Subsystem: "srs", Name: "socketmap_events_total",
			Help: "Socketmap requests refused and connections closed, by event."}, []string{"event"}),
	}
	reg.MustRegister(m.Forward, m.Reverse, m.Socketmap)
	m.Forward.WithLabelValues("rewritten")
	m.Reverse.WithLabelValues("valid")
	return m
}

// ModuleOptions configures the milter hooks.
type ModuleOptions struct {
	SRS *SRS
	// DB, when set, is database mode: reverse tries it first, and forward
	// uses it for every sender (Always) or for those whose SRS address would
	// not fit in a 64-character local part.
	DB     Database
	Always bool
	// Local reports the sender domains never rewritten: our own domains and
	// exclude_domains.
	Local   func(domain string) bool
	Metrics *Metrics
	Log     *slog.Logger
}

// Database is database mode (package srs/store implements it): the original
// address is kept under a short signed key.
type Database interface {
	Forward(ctx context.Context, sender string) (addr, key string, err error)
	// Reverse returns ErrNotDB (matched with errors.Is against NotDB) for an
	// address that is not a database one.
	Reverse(ctx context.Context, addr string) (orig, key string, err error)
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

func (m *Module) Name() string { return name }

// Needs: recipients are checked at RCPT (and may be refused there); the
// envelope changes once accepted.
func (m *Module) Needs() milter.Needs {
	n := milter.Needs{Actions: milter.ActChangeFrom | milter.ActAddRcpt | milter.ActDelRcpt}
	n.Reply[milter.StageRcpt] = true
	return n
}

// Rcpt checks a recipient at the SRS domain. A forged, damaged or expired SRS
// address is refused here, for that recipient only, so nothing is accepted
// that would later bounce to a stranger (backscatter).
func (m *Module) Rcpt(ctx context.Context, t *milter.Txn, r *milter.Recipient) error {
	if !m.o.SRS.IsOurs(r.Addr) {
		return nil
	}
	if !IsSRS(r.Addr) {
		r.SetFact(name, &RcptFacts{Status: string(StatusNone)})
		return nil
	}
	orig, key, err := m.reverse(ctx, r.Addr)
	status, reason := StatusOf(err), Reason(err)
	f := &RcptFacts{Status: string(status), Reason: reason, Recipient: orig, DBKey: key}
	r.SetFact(name, f)
	if err == nil {
		m.o.Metrics.Reverse.WithLabelValues("valid").Inc()
		// Proposed now, not once accepted, so that the modules judging the
		// recipient after SRS (BMI, DCC) see who it really is; the envelope
		// owner sends it only for an accepted message and recipient.
		t.Mutations.Envelope.Replace(r, orig, "srs")
		return nil
	}
	m.o.Metrics.Reverse.WithLabelValues(reason).Inc()
	if status == StatusNone {
		return nil
	}
	log := []any{"queue_id", t.QueueID, "client", t.Session.Identity.Client(), "recipient", r.Addr, "reason", reason}
	if key != "" {
		log = append(log, "db_key", key)
	}
	reply := milter.Reply{Code: 550, Enhanced: "5.1.1", Text: "no such address: invalid SRS address"}
	verdict := milter.Reject
	switch {
	case m.o.DB != nil && errors.Is(err, ErrDBUnavailable):
		// The store is down: the bounce may be genuine, so let it come back.
		f.Status = "unavailable"
		verdict, reply = milter.TempFail, milter.Reply{Code: 451, Enhanced: "4.3.0", Text: "SRS database unavailable, try again later"}
		m.o.Log.Warn("SRS database unavailable", append(log, "err", err)...)
	case m.o.DB != nil && errors.Is(err, ErrDBNotFound):
		reply.Text = "no such address: unknown SRS address"
		m.o.Log.Info("SRS recipient refused", append(log, "status", string(status))...)
	case status == StatusExpired:
		reply.Text = "no such address: the SRS address has expired"
		m.o.Log.Info("SRS recipient refused", append(log, "status", string(status))...)
	default:
		m.o.Log.Info("SRS recipient refused", append(log, "status", string(status))...)
	}
	return &milter.Rejection{Decision: milter.Decision{Verdict: verdict, Rule: "srs", Reason: "srs " + f.Status + ": " + reason, Reply: reply}}
}

func (m *Module) reverse(ctx context.Context, addr string) (orig, key string, err error) {
	if m.o.DB != nil {
		orig, key, err = m.o.DB.Reverse(ctx, addr)
		if !errors.Is(err, ErrNotDB) {
			return orig, key, err
		}
	}
	orig, err = m.o.SRS.Reverse(addr)
	return orig, "", err
}

// Finalize rewrites the sender when asked, only once the message is accepted.
// (Reversed recipients were proposed to the envelope owner at RCPT.) The
// summary line says what SRS did, as Exim's SRS= element: srs=reversed with
// srs_recipient= the addresses bounces go back to, srs=forwarded.
func (m *Module) Finalize(ctx context.Context, t *milter.Txn, d milter.Decision) error {
	if d.Verdict != milter.Accept {
		return nil
	}
	var did []string
	if reversed := reversedTo(t); reversed != "" {
		did = append(did, "reversed")
		t.Tag("srs_recipient", reversed)
	}
	if t.Controls[ControlForward] {
		result := m.forward(ctx, t)
		m.o.Metrics.Forward.WithLabelValues(result).Inc()
		if result == "rewritten" {
			did = append(did, "forwarded")
		}
	}
	if len(did) > 0 {
		t.Tag("srs", strings.Join(did, ","))
	}
	return nil
}

// reversedTo lists, "<a>,<b>", where the valid SRS recipients the message
// still goes to were reversed to.
func reversedTo(t *milter.Txn) string {
	var out []string
	for _, r := range t.Rcpts {
		f := RcptFactsOf(r)
		if f == nil || f.Status != string(StatusValid) || !r.Accepted() || r.Decision.Verdict == milter.Discard {
			continue
		}
		if _, dropped := t.Mutations.Envelope.Target(r); !dropped {
			out = append(out, "<"+f.Recipient+">")
		}
	}
	return strings.Join(out, ",")
}

func (m *Module) forward(ctx context.Context, t *milter.Txn) string {
	switch {
	case t.Sender == "":
		return "skipped_null_sender"
	case m.o.SRS.IsOurs(t.Sender):
		return "skipped_ours"
	case m.o.Local != nil && m.o.Local(milter.Domain(t.Sender)):
		return "skipped_local"
	}
	addr, err := m.o.SRS.Forward(t.Sender)
	var key string
	if m.o.DB != nil && (m.o.Always || err != nil || len(milter.LocalPart(addr)) > maxLocalPart) {
		addr, key, err = m.o.DB.Forward(ctx, t.Sender)
	}
	if err != nil {
		// The sender stays as it is: forwarding it unrewritten may fail SPF
		// downstream, refusing it would lose the message.
		m.o.Log.Warn("SRS forward not possible; sender left unchanged", "queue_id", t.QueueID, "sender", t.Sender, "err", err)
		return Reason(err)
	}
	if err := t.Mutations.Envelope.ChangeSender(addr, "", "srs"); err != nil {
		m.o.Log.Warn("SRS forward refused by the envelope owner; sender left unchanged", "queue_id", t.QueueID, "err", err)
		return "conflict"
	}
	t.SetFact(name, &Facts{OrigSender: t.Sender, NewSender: addr, DBKey: key})
	t.Tag("SRS", addr)
	return "rewritten"
}

// maxLocalPart is RFC 5321's limit; longer SRS addresses are refused by some
// receivers, which is what database mode is for.
const maxLocalPart = 64
