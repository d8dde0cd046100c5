package arc

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/tollgate/tollgate/internal/authres"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/milter"
)

// Metrics count ARC work; labels are closed sets.
type Metrics struct {
	Verify  *prometheus.CounterVec   // result: pass, fail, none
	Seal    *prometheus.CounterVec   // result: sealed, skipped_cv_fail, skipped_dns, error, ...
	Seconds *prometheus.HistogramVec // op: verify, seal
}

// NewMetrics registers the ARC metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Verify: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Subsystem: "arc", Name: "verify_total",
			Help: "ARC chain validations by result (pass, fail, none)."}, []string{"result"}),
		Seal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Subsystem: "arc", Name: "seal_total",
			Help: "ARC sealing by result (sealed, or why not)."}, []string{"result"}),
		Seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "tollgate", Subsystem: "arc", Name: "duration_seconds",
			Help: "Time to validate a chain (DNS included) or to seal.", Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}},
			[]string{"op"}),
	}
	reg.MustRegister(m.Verify, m.Seal, m.Seconds)
	for _, r := range []State{StatePass, StateFail, StateNone} {
		m.Verify.WithLabelValues(string(r))
	}
	m.Seal.WithLabelValues("sealed")
	return m
}

// ControlSign asks for the message to be sealed once accepted.
const ControlSign = "arc_sign"

// VarSignDomain chooses the signing key by domain (default: the first).
const VarSignDomain = "acl_m_arc_sign_domain"

// ModuleOptions configures the milter hooks.
type ModuleOptions struct {
	// AuthServID finds our Authentication-Results (which the milter writes
	// from every method's results) to seal as the ARC-Authentication-Results.
	AuthServID string
	Resolver   Resolver
	MinRSABits int
	Timeout    time.Duration // for validating one message, DNS included
	RemoteIP   bool          // put smtp.remote-ip in the arc= result
	// Seal holds one SealOptions per signing key, in configuration order;
	// Key.Domain selects one.
	Seal []SealOptions
	// NoSealRule: no rule of the policy sets arc_sign, so no message is
	// sealed and the seal's body hash is not computed; a message without
	// ARC headers then costs no body hashing at all.
	NoSealRule bool
	Metrics    *Metrics
	Log        *slog.Logger
}

// DefaultTimeout bounds the validation of one message, DNS included, when
// ModuleOptions.Timeout is not set.
const DefaultTimeout = 10 * time.Second

// Module validates every message's ARC chain as it streams, and seals
// accepted messages when the policy asks (control arc_sign).
type Module struct {
	o    ModuleOptions
	keys *KeyCache // of the verifier, new with every load or reload
}

func NewModule(o ModuleOptions) *Module {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	return &Module{o: o, keys: NewKeyCache(0)}
}

func (m *Module) Name() string { return name }

// Needs: the chain is verified as headers and body stream in; forged
// Authentication-Results are removed and the seal and ours added.
func (m *Module) Needs() milter.Needs {
	return milter.Needs{Headers: true, Body: true, Actions: milter.ActAddHeader | milter.ActChangeHeader}
}

type state struct {
	v   *Verifier
	res *Result
}

func (m *Module) state(t *milter.Txn) *state {
	if st, ok := t.State("arc").(*state); ok {
		return st
	}
	st := &state{v: NewVerifier(VerifyOptions{Resolver: m.o.Resolver, Keys: m.keys, MinRSABits: m.o.MinRSABits,
		VerifyOnly: len(m.o.Seal) == 0 || m.o.NoSealRule, Bodies: t.BodyHashes()})}
	t.SetState("arc", st)
	return st
}

func (m *Module) Header(_ context.Context, t *milter.Txn, h milter.Header) error {
	st := m.state(t)
	value := h.Value
	if !t.RawHeaderValue() {
		value = " " + value
	}
	st.v.Header(Header{Name: h.Name, Value: value})
	return nil
}

// EndOfHeaders reads the chain and asks for the body hashes its AMSs and
// the seal need; the milter computes them, shared with DKIM.
func (m *Module) EndOfHeaders(_ context.Context, t *milter.Txn) error {
	m.state(t).v.EndOfHeaders()
	return nil
}

// EndOfMessage validates the chain. A malformed header or key, or DNS
// trouble, is a fail with a reason: never a module failure, never a deferral.
func (m *Module) EndOfMessage(ctx context.Context, t *milter.Txn) error {
	st := m.state(t)
	ctx, cancel := context.WithTimeout(ctx, m.o.Timeout)
	defer cancel()
	start := time.Now()
	res := st.v.Result(ctx)
	m.o.Metrics.Seconds.WithLabelValues("verify").Observe(time.Since(start).Seconds())
	st.res = res
	f := factsFor(t)
	f.Checked, f.State, f.Reason, f.Domains, f.OldestPass, f.Instances =
		true, string(res.State), res.Reason, res.Domains, res.OldestPass, res.Instances
	m.o.Metrics.Verify.WithLabelValues(string(res.State)).Inc()
	t.Tag("ARC", string(res.State))
	if res.State == StateFail {
		m.o.Log.Info("ARC chain fails", "queue_id", t.QueueID, "reason", res.Reason, "temporary", res.Temporary)
	}
	ip := ""
	if m.o.RemoteIP && t.Session.Identity.ClientAddr.IsValid() {
		ip = t.Session.Identity.ClientAddr.String()
	}
	ar := res.AuthResult(ip)
	f.AuthResult = authres.FormatResult(ar)
	t.AddAuthResult(ar)
	return nil
}

// Finalize seals an accepted message the policy marked with arc_sign, over
// the headers as they will leave.
func (m *Module) Finalize(_ context.Context, t *milter.Txn, d milter.Decision) error {
	if d.Verdict != milter.Accept || !t.Controls[ControlSign] {
		return nil
	}
	st := m.state(t)
	if st.res == nil || len(m.o.Seal) == 0 {
		return nil
	}
	opts := m.o.Seal[0]
	if want := t.Vars[VarSignDomain]; want != "" {
		found := false
		for _, o := range m.o.Seal {
			if strings.EqualFold(o.Key.Domain, want) {
				opts, found = o, true
				break
			}
		}
		if !found {
			m.o.Metrics.Seal.WithLabelValues("no_key").Inc()
			m.o.Log.Warn("no ARC key for the signing domain; not sealed", "queue_id", t.QueueID, "domain", want)
			return nil
		}
	}
	final := t.Mutations.FinalHeaders(t.Headers, t.RawHeaderValue())
	headers := make([]Header, len(final))
	var ours []string
	for i, h := range final {
		headers[i] = Header{Name: h.Name, Value: h.Value}
		if strings.EqualFold(h.Name, "Authentication-Results") {
			if id, err := authres.AuthServID(h.Value); err == nil && strings.EqualFold(id, m.o.AuthServID) {
				ours = append(ours, strings.TrimLeft(h.Value, " \t"))
			}
		}
	}
	start := time.Now()
	set, err := st.v.Seal(opts, headers, ours)
	m.o.Metrics.Seconds.WithLabelValues("seal").Observe(time.Since(start).Seconds())
	if err != nil {
		result := "error"
		switch {
		case errors.Is(err, ErrTempDNS):
			result = "skipped_dns"
		case errors.Is(err, ErrNoSeal):
			result = "skipped"
			if st.res.ArrivedCV == "fail" {
				result = "skipped_cv_fail"
			} else if st.res.Instances >= 50 {
				result = "skipped_too_many"
			}
		}
		m.o.Metrics.Seal.WithLabelValues(result).Inc()
		if result == "error" {
			return err // a key or signing problem: on_error decides
		}
		m.o.Log.Info("ARC seal not added", "queue_id", t.QueueID, "reason", err.Error())
		return nil
	}
	for _, h := range set {
		t.Mutations.ARCSet = append(t.Mutations.ARCSet, milter.HeaderField{Name: h.Name, Value: h.Value})
	}
	factsFor(t).Sealed = opts.Key.Domain
	m.o.Metrics.Seal.WithLabelValues("sealed").Inc()
	t.Tag("ARC", string(st.res.State)+"/sealed")
	return nil
}
