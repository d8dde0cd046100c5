package dkim

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"strings"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/authres"
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
type Module struct{ o ModuleOptions }

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
	sigs    []string        // DKIM-Signature values, in order

	started  bool
	pw       *io.PipeWriter
	writeErr error // the verifier stopped reading: nothing more to send
	cancel   context.CancelFunc
	done     chan verdict
	got      *verdict
}

type verdict struct {
	vs  []*msgdkim.Verification
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

func (m *Module) Body(_ context.Context, t *milter.Txn, chunk []byte) error {
	st := m.state(t)
	if len(st.sigs) == 0 {
		return nil
	}
	if !st.started {
		m.start(st)
	}
	st.write(chunk)
	return nil
}

// errVerifierDone tells the writer that the verifier has its answer.
var errVerifierDone = errors.New("dkim: verification finished")

// start runs go-msgauth over a pipe that the header section, then each
// body chunk, is written into: nothing of the body is kept.
func (m *Module) start(st *state) {
	st.started = true
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	st.pw, st.cancel, st.done = pw, cancel, make(chan verdict, 1)
	opts := &msgdkim.VerifyOptions{LookupTXT: m.lookupTXT(ctx), MaxVerifications: m.o.MaxSignatures}
	go func() {
		vs, err := msgdkim.VerifyWithOptions(pr, opts)
		// go-msgauth may stop reading early (a signature without a key):
		// the writer's next Write returns at once instead of blocking.
		pr.CloseWithError(errVerifierDone)
		st.done <- verdict{vs, err}
	}()
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
	st.headers = nil // the verifier has them now
	// The signatures as go-msgauth will find them, so that its answers,
	// which come in that order, are matched to the right ones whatever odd
	// names or values the header section has.
	st.sigs = signaturesIn(buf)
	st.write(buf)
}

// signaturesIn returns the DKIM-Signature values of a header section the
// way go-msgauth v0.7.0 reads it (its readHeader and parseHeaderField):
// lines as net/textproto reads them, a line starting with SP or HT
// continuing the field before, the section ending at the first empty line,
// the name being what precedes the first colon, trimmed.
func signaturesIn(section []byte) []string {
	tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(section)))
	var fields []string
	for {
		l, err := tr.ReadLine()
		if err != nil || l == "" {
			break
		}
		if len(fields) > 0 && (l[0] == ' ' || l[0] == '\t') {
			fields[len(fields)-1] += l + "\r\n"
		} else {
			fields = append(fields, l+"\r\n")
		}
	}
	var sigs []string
	for _, f := range fields {
		k, v, _ := strings.Cut(f, ":")
		if strings.EqualFold(strings.TrimSpace(k), "DKIM-Signature") {
			sigs = append(sigs, strings.TrimSpace(v))
		}
	}
	return sigs
}

func (st *state) write(b []byte) {
	if st.writeErr == nil {
		_, st.writeErr = st.pw.Write(b)
	}
}

// wait ends the message for the verifier and collects its answer. Closing
// the pipe (never with an error: go-msgauth leaks its per-signature
// goroutines when the reader fails) lets it finish; cancelling ctx ends
// lookups still running.
func (st *state) wait(ctx context.Context) verdict {
	if st.got != nil {
		return *st.got
	}
	st.pw.Close()
	var v verdict
	select {
	case v = <-st.done:
	case <-ctx.Done():
		st.cancel()
		v = <-st.done
	}
	st.cancel()
	st.got = &v
	return v
}

// TxnEnd releases a verification the message did not get to the end of.
func (m *Module) TxnEnd(t *milter.Txn) {
	st, ok := t.State(name).(*state)
	if !ok || !st.started || st.got != nil {
		return
	}
	st.cancel()
	st.wait(context.Background())
}

// lookupTXT is go-msgauth's key lookup on the shared resolver. go-msgauth
// tells a temporary failure by net.Error's Temporary, so errors stay (or
// become) *net.DNSError.
func (m *Module) lookupTXT(ctx context.Context) func(string) ([]string, error) {
	return func(domain string) ([]string, error) {
		ctx, cancel := context.WithTimeout(ctx, m.o.Timeout)
		defer cancel()
		txts, err := m.o.Resolver.LookupTXT(ctx, domain)
		if err != nil {
			var dnsErr *net.DNSError
			if errors.As(err, &dnsErr) {
				return nil, dnsErr
			}
			return nil, &net.DNSError{Err: err.Error(), Name: domain, IsTemporary: true, IsTimeout: ctx.Err() != nil}
		}
		if m.o.MinRSABits > DefaultMinRSABits && len(txts) == 1 {
			if bits := rsaKeyBits(txts[0]); bits > 0 && bits < m.o.MinRSABits {
				return nil, &net.DNSError{Err: fmt.Sprintf("%v: %d bits, min_rsa_bits is %d", errKeyTooShort, bits, m.o.MinRSABits), Name: domain}
			}
		}
		return txts, nil
	}
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
		m.start(st) // an empty body
	}
	v := st.wait(ctx)
	if len(st.sigs) == 0 {
		// What looked like a signature in the Header hook is not one where
		// go-msgauth looks (after an empty line inside another field's
		// value, where its header section ends): nothing was verified.
		m.none(t, f)
		return nil
	}
	f.Signatures = m.judge(st.sigs, v)
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

// judge turns go-msgauth's answer into one Signature per DKIM-Signature it
// was to verify: the first max_signatures.
func (m *Module) judge(sigs []string, v verdict) []Signature {
	sigs = sigs[:min(len(sigs), m.o.MaxSignatures)]
	out := make([]Signature, len(sigs))
	for i, raw := range sigs {
		tags := signatureTags(raw)
		s := Signature{Domain: tags.Domain, Selector: tags.Selector, AUID: tags.AUID, B: tags.B}
		if len(s.B) > 8 {
			s.B = s.B[:8]
		}
		switch {
		case v.err != nil && !errors.Is(v.err, msgdkim.ErrTooManySignatures):
			// The verifier failed as a whole (it could not read the header
			// section): no signature was checked.
			s.Result, s.Status, s.Reason, s.Detail = "permerror", StatusInvalid, "signature_syntax", strings.TrimPrefix(v.err.Error(), "dkim: ")
		case i >= len(v.vs):
			// Cannot be: go-msgauth answers for every signature up to the cap.
			s.Result, s.Status, s.Reason, s.Detail = "temperror", StatusInvalid, "verifier_error", "no answer from the verifier"
		default:
			vf := v.vs[i]
			if vf.Domain != "" {
				s.Domain = vf.Domain
			}
			s.Result, s.Status, s.Reason, s.Detail = classify(vf.Err)
		}
		out[i] = s
	}
	return out
}

// classify maps go-msgauth's verdict on one signature to the RFC 8601
// result, Exim's status and reason, and the words for the A-R. go-msgauth
// v0.7.0 tells its failures apart only by their text.
func classify(err error) (result, status, reason, detail string) {
	if err == nil {
		return "pass", StatusPass, "", ""
	}
	detail = strings.TrimPrefix(err.Error(), "dkim: ")
	has := func(s string) bool { return strings.Contains(detail, s) }
	switch {
	case msgdkim.IsTempFail(err):
		return "temperror", StatusInvalid, "pubkey_unavailable", detail
	case msgdkim.IsPermFail(err):
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
