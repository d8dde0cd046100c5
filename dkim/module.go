package dkim

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/authres"
	"github.com/tollgate/tollgate/internal/dkimsig"
	"github.com/tollgate/tollgate/internal/resolver"
	"github.com/tollgate/tollgate/milter"
)

// Metrics count DKIM verification; labels are closed sets.
type Metrics struct {
	// Verify counts signatures by RFC 8601 result, and unsigned messages
	// as none.
	Verify *prometheus.CounterVec
}

// results are the values of the result label, pre-created.
var results = []string{"none", "pass", "fail", "policy", "temperror", "permerror"}

// NewMetrics registers the DKIM metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Verify: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Subsystem: "dkim", Name: "verify_total",
			Help: "DKIM signatures verified, by result (pass, fail, policy, temperror, permerror); none counts messages without a signature."},
			[]string{"result"}),
	}
	reg.MustRegister(m.Verify)
	for _, r := range results {
		m.Verify.WithLabelValues(r)
	}
	return m
}

// Defaults of the dkim: section.
const (
	DefaultTimeout       = 10 * time.Second
	DefaultMaxSignatures = 5
	DefaultMinRSABits    = 1024 // RFC 8301 §3.2, and go-msgauth's floor
)

// ModuleOptions configures the verifier.
type ModuleOptions struct {
	Resolver resolver.Resolver
	// Timeout bounds each key lookup.
	Timeout time.Duration
	// MaxSignatures is how many signatures of a message are verified, in
	// header order; the others are reported as policy (not verified).
	MaxSignatures int
	// MinRSABits refuses RSA keys shorter than this (1024 at least, which
	// go-msgauth enforces itself).
	MinRSABits int
	Metrics    *Metrics
	Log        *slog.Logger
}

// Module verifies every DKIM signature of a message as it streams.
type Module struct {
	o    ModuleOptions
	keys keyCache
}

// NewModule returns the module; zero options take their defaults.
func NewModule(o ModuleOptions) *Module {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxSignatures <= 0 {
		o.MaxSignatures = DefaultMaxSignatures
	}
	if o.MinRSABits < DefaultMinRSABits {
		o.MinRSABits = DefaultMinRSABits
	}
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	return &Module{o: o}
}

func (m *Module) Name() string { return name }

// Needs: the signatures cover header fields and the body; the results go
// into the Authentication-Results the milter writes.
func (m *Module) Needs() milter.Needs { return milter.Needs{Headers: true, Body: true} }

// state is one message's verification.
type state struct {
	headers []milter.Header // as received, values with their leading space
	// sigs are the DKIM-Signature values: as the Header hook saw them,
	// then, once started, as the verifier reads the header section.
	sigs []string

	started bool
	fields  []string            // the header section as the verifier reads it
	checks  []*signature        // the first max_signatures signatures
	sums    []*dkimsig.BodyHash // the milter's, per check; nil when none is needed

	keys    []keyAnswer   // one per check, filled by the lookups
	keyOf   []int         // per check, the index of the keys entry it reads
	pending int           // lookups running
	answers chan struct{} // a lookup has filled its keys entry
	cancel  context.CancelFunc

	got *[]Signature // the verdicts, once the end of message judged
}

type keyAnswer struct {
	key *keyRecord
	err error
}

func (m *Module) state(t *milter.Txn) *state {
	if st, ok := t.State(name).(*state); ok {
		return st
	}
	st := &state{}
	t.SetState(name, st)
	return st
}

func isSignature(fieldName string) bool {
	return strings.EqualFold(strings.TrimRight(fieldName, " \t"), "DKIM-Signature")
}

func (m *Module) Header(_ context.Context, t *milter.Txn, h milter.Header) error {
	st := m.state(t)
	if st.started {
		return nil
	}
	value := h.Value
	if !t.RawHeaderValue() {
		value = " " + value // what the MTA swallowed, as ARC restores it
	}
	if strings.IndexByte(value, '\n') >= 0 {
		value = crlfLines(value)
	}
	st.headers = append(st.headers, milter.Header{Name: h.Name, Value: value})
	if isSignature(h.Name) {
		st.sigs = append(st.sigs, value)
	}
	return nil
}

// crlfLines turns the bare LF some MTAs fold header values with into CRLF,
// the line end signatures are computed over.
func crlfLines(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' && (i == 0 || s[i-1] != '\r') {
			b.WriteByte('\r')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// EndOfHeaders starts the verification of a signed message: its body
// hashes are the milter's, computed once per canonicalization for every
// module that needs one (ARC, DKIM signing), and its key lookups run
// while the body streams. An unsigned message asks for nothing.
func (m *Module) EndOfHeaders(_ context.Context, t *milter.Txn) error {
	st := m.state(t)
	if len(st.sigs) > 0 && !st.started {
		m.start(st, t)
	}
	return nil
}

// start reads the header section as the verifier does, parses the first
// max_signatures signatures, asks the milter for the body hashes they need and
// starts their key lookups, which run while the body streams.
func (m *Module) start(st *state, t *milter.Txn) {
	st.started = true
	size := 2
	for _, h := range st.headers {
		size += len(h.Name) + len(h.Value) + 3
	}
	buf := make([]byte, 0, size)
	for _, h := range st.headers {
		buf = append(buf, h.Name...)
		buf = append(buf, ':')
		buf = append(buf, h.Value...)
		buf = append(buf, '\r', '\n')
	}
	buf = append(buf, '\r', '\n')
	st.headers = nil
	// The signatures as the verifier finds them, whatever odd names or
	// values the header section has (a value with a bare line break in it
	// reads as two fields, one with an empty line ends the section).
	st.fields = readSection(buf)
	st.sigs = st.sigs[:0]
	var sigFields []string
	for _, f := range st.fields {
		if k, v := splitField(f); strings.EqualFold(k, "DKIM-Signature") {
			st.sigs = append(st.sigs, v)
			sigFields = append(sigFields, f)
		}
	}
	now := time.Now()
	for _, f := range sigFields[:min(len(sigFields), m.o.MaxSignatures)] {
		st.checks = append(st.checks, parseSignature(f, now))
	}
	st.sums = make([]*dkimsig.BodyHash, len(st.checks))
	for i, s := range st.checks {
		if !s.needsBody {
			continue
		}
		sum, err := t.BodyHash(s.bodyCanon, s.hash, -1)
		if err != nil {
			// The milter rules it out (EndOfHeaders runs before the body);
			// if it happens, the signature is not judged on a missing hash.
			s.err = &sigError{internalFail, "no body hash: " + err.Error()}
			continue
		}
		st.sums[i] = sum
	}
	st.keys = make([]keyAnswer, len(st.checks))
	ctx, cancel := context.WithCancel(context.Background())
	st.cancel = cancel
	st.answers = make(chan struct{}, len(st.checks))
	st.keyOf = make([]int, len(st.checks))
	for i, s := range st.checks {
		st.keyOf[i] = i
		if !s.needsKey() {
			continue
		}
		// signatures with one key share its lookup
		if j := slices.IndexFunc(st.checks[:i], func(o *signature) bool { return o.needsKey() && o.keyName() == s.keyName() }); j >= 0 {
			st.keyOf[i] = j
			continue
		}
		st.pending++
		go func() {
			k, err := lookupKey(ctx, m.o.Resolver, &m.keys, s.keyName(), m.o.Timeout, m.o.MinRSABits)
			st.keys[i] = keyAnswer{k, err}
			st.answers <- struct{}{}
		}()
	}
}

// wait collects the key lookups; when ctx ends first, the lookups still
// running are cancelled (and answer temperror).
func (st *state) wait(ctx context.Context) {
	for ; st.pending > 0; st.pending-- {
		select {
		case <-st.answers:
		case <-ctx.Done():
			st.cancel()
			<-st.answers
		}
	}
	st.cancel()
}

// TxnEnd releases a verification the message did not get to the end of.
func (m *Module) TxnEnd(t *milter.Txn) {
	st, ok := t.State(name).(*state)
	if !ok || !st.started || st.got != nil {
		return
	}
	st.cancel()
	st.wait(context.Background())
	st.got = &[]Signature{}
}

// EndOfMessage records one dkim= result per signature (dkim=none without
// one) and the facts the policy reads.
func (m *Module) EndOfMessage(ctx context.Context, t *milter.Txn) error {
	st := m.state(t)
	f := factsFor(t)
	f.Checked = true
	if !st.started && len(st.sigs) == 0 {
		m.none(t, f)
		return nil
	}
	if !st.started {
		// EndOfHeaders did not run (the milter always runs it): every
		// hash is asked for too late and the signatures are temperror.
		m.start(st, t)
	}
	if len(st.sigs) == 0 {
		// What looked like a signature in the Header hook is not one where
		// the verifier looks (after an empty line inside another field's
		// value, where its header section ends): nothing was verified.
		st.cancel()
		st.got = &[]Signature{}
		m.none(t, f)
		return nil
	}
	st.wait(ctx)
	f.Signatures = m.judge(st)
	st.got = &f.Signatures
	f.Skipped = len(st.sigs) - len(f.Signatures)
	f.Status = StatusNone
	for _, s := range f.Signatures {
		if statusRank(s.Status) > statusRank(f.Status) {
			f.Status, f.Reason = s.Status, s.Reason
		}
		if s.Status == StatusPass {
			if f.Domain == "" {
				f.Domain, f.Selector = s.Domain, s.Selector
			}
			f.Signers = appendOnce(f.Signers, s.Domain)
			if s.AUID != "" {
				f.Signers = appendOnce(f.Signers, s.AUID)
			}
		}
		m.o.Metrics.Verify.WithLabelValues(s.Result).Inc()
		if s.Result == "temperror" {
			// DNS trouble is the operator's: a Warn, which the daemon's
			// logger lets through once a minute per kind.
			m.o.Log.Warn("DKIM key lookup failed; the signature is temperror", "queue_id", t.QueueID, "module", name, "kind", s.Reason, "detail", s.Detail)
		}
		t.AddAuthResult(s.authResult())
	}
	if f.Skipped > 0 {
		// One result for them all: a message with a thousand signatures
		// must not make a thousand-line Authentication-Results.
		m.o.Metrics.Verify.WithLabelValues("policy").Add(float64(f.Skipped))
		t.AddAuthResult(authres.Result{Method: "dkim", Result: "policy",
			Reason: fmt.Sprintf("%d more signatures not verified (max_signatures %d)", f.Skipped, m.o.MaxSignatures)})
	}
	t.Tag("DKIM", f.Status)
	return nil
}

// none records a message without a signature go-msgauth would verify.
func (m *Module) none(t *milter.Txn, f *Facts) {
	f.Status = StatusNone
	m.o.Metrics.Verify.WithLabelValues("none").Inc()
	t.AddAuthResult(authres.Result{Method: "dkim", Result: "none"})
	t.Tag("DKIM", StatusNone)
}

func appendOnce(list []string, s string) []string {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return list
		}
	}
	return append(list, s)
}

func (s Signature) authResult() authres.Result {
	r := authres.Result{Method: "dkim", Result: s.Result, Reason: s.Detail, Props: []authres.Prop{
		{Type: "header", Property: "d", Value: s.Domain},
		{Type: "header", Property: "s", Value: s.Selector},
		{Type: "header", Property: "b", Value: s.B},
	}}
	if s.AUID != "" {
		r.Props = append(r.Props, authres.Prop{Type: "header", Property: "i", Value: s.AUID})
	}
	return r
}

// judge gives one Signature per DKIM-Signature verified: the first
// max_signatures.
func (m *Module) judge(st *state) []Signature {
	out := make([]Signature, len(st.checks))
	for i, c := range st.checks {
		tags := signatureTags(st.sigs[i])
		s := Signature{Domain: tags.Domain, Selector: tags.Selector, AUID: tags.AUID, B: tags.B}
		if len(s.B) > 8 {
			s.B = s.B[:8]
		}
		if c.domain != "" {
			s.Domain = c.domain
		}
		var sum []byte
		if st.sums[i] != nil {
			sum = st.sums[i].Sum
		}
		k := st.keys[st.keyOf[i]]
		s.Result, s.Status, s.Reason, s.Detail = classify(c.finish(st.fields, k.key, k.err, sum))
		out[i] = s
	}
	return out
}

// classify maps the verdict on one signature to the RFC 8601 result,
// Exim's status and reason, and the words for the A-R. The verdicts are
// worded as go-msgauth v0.7.0 words them (the verifier before this one),
// and told apart by those words, as they were then.
func classify(err error) (result, status, reason, detail string) {
	if err == nil {
		return "pass", StatusPass, "", ""
	}
	detail = strings.TrimPrefix(err.Error(), "dkim: ")
	has := func(s string) bool { return strings.Contains(detail, s) }
	kind, known := errorKind(err)
	switch {
	case known && kind == tempFail:
		return "temperror", StatusInvalid, "pubkey_unavailable", detail
	case known && kind == permFail:
		switch {
		case has(errKeyTooShort.Error()), has("key is too short"):
			reason = "pubkey_too_short"
		case has("no key for signature"), has("key revoked"):
			reason = "pubkey_unavailable"
		case has("no valid key found"), has("multiple TXT records"), has("key record error"), has("missing public key data"),
			has("incompatible public key version"), has("unsupported key algorithm"):
			reason = "pubkey_dns_syntax"
		case has("key syntax error"), has("invalid Ed25519 public key size"):
			reason = "pubkey_der_syntax"
		case has("signature has expired"):
			reason = "signature_expired"
		default:
			reason = "signature_syntax"
		}
		return "permerror", StatusInvalid, reason, detail
	case has("body hash did not verify"):
		return "fail", StatusFail, "bodyhash_mismatch", detail
	case has("signature did not verify"):
		return "fail", StatusFail, "signature_incorrect", detail
	case has("body length tag"):
		// l= leaves part of the body unsigned: RFC 8601's "not acceptable
		// to the ADMD" is policy.
		return "policy", StatusInvalid, "body_length", detail
	}
	return "temperror", StatusInvalid, "verifier_error", detail
}
