package dkimsign

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/dkimsig"
	"github.com/tollgate/tollgate/milter"
)

// Metrics count DKIM signing; labels are closed sets.
type Metrics struct {
	Sign *prometheus.CounterVec // result: signed, no_key, error
}

// NewMetrics registers the DKIM signing metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{Sign: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Subsystem: "dkim", Name: "sign_total",
		Help: "Messages marked dkim_sign by result: signed, no_key (no key for the signing domain), error."}, []string{"result"})}
	reg.MustRegister(m.Sign)
	for _, r := range []string{"signed", "no_key", "error"} {
		m.Sign.WithLabelValues(r)
	}
	return m
}

// ModuleOptions configures the milter hooks.
type ModuleOptions struct {
	// Keys in configuration order; the signing domain picks those that sign.
	Keys []Key
	Sign Options
	// NoSignRule: no rule of the policy sets dkim_sign, so the body is not
	// hashed and nothing is signed.
	NoSignRule bool
	Metrics    *Metrics
	Log        *slog.Logger
}

// Module has the body of every message a rule may mark hashed as it
// streams, and signs the accepted messages marked dkim_sign.
type Module struct{ o ModuleOptions }

func NewModule(o ModuleOptions) *Module {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Module{o: o}
}

func (m *Module) Name() string { return name }

// Needs: the body is hashed as it streams; the header fields are read at
// Finalize as they will leave, and the signatures added at the top.
func (m *Module) Needs() milter.Needs {
	if m.o.NoSignRule || len(m.o.Keys) == 0 {
		return milter.Needs{}
	}
	return milter.Needs{Headers: true, Body: true, Actions: milter.ActAddHeader}
}

// EndOfHeaders asks for the body hash a signature needs: the milter
// computes it as the body streams, once for every module that needs the
// same canonicalization (DKIM and ARC verification, the ARC seal).
func (m *Module) EndOfHeaders(_ context.Context, t *milter.Txn) error {
	if m.o.NoSignRule || len(m.o.Keys) == 0 {
		return nil
	}
	h, err := t.BodyHash(bodyCanon(m.o.Sign.BodyCanon), crypto.SHA256, -1)
	if err != nil {
		return fmt.Errorf("dkimsign: %w", err)
	}
	t.SetState(name, h)
	return nil
}

// Finalize signs an accepted message marked dkim_sign over the header
// fields as they will leave. It runs before ARC's Finalize (ARC is Last),
// and the signatures go into Mutations.Prepend, which ARC's FinalHeaders
// includes: the ARC-Message-Signature covers them.
func (m *Module) Finalize(_ context.Context, t *milter.Txn, d milter.Decision) error {
	if d.Verdict != milter.Accept || !t.Controls[ControlSign] || len(m.o.Keys) == 0 {
		return nil
	}
	final := t.Mutations.FinalHeaders(t.Headers, t.RawHeaderValue())
	headers := make([]Header, len(final))
	for i, h := range final {
		headers[i] = Header{Name: h.Name, Value: h.Value}
	}
	domain := t.Vars[VarSignDomain]
	keys := m.keysFor(domain, headers)
	if len(keys) == 0 {
		m.o.Metrics.Sign.WithLabelValues("no_key").Inc()
		m.o.Log.Warn("no DKIM key for the signing domain; not signed", "queue_id", t.QueueID, "domain", domain)
		return nil
	}
	body, ok := t.State(name).(*dkimsig.BodyHash)
	if !ok || body.Sum == nil {
		m.o.Metrics.Sign.WithLabelValues("error").Inc()
		return errors.New("dkimsign: the body was not hashed")
	}
	sigs, err := Sign(keys, headers, body.Sum, m.o.Sign)
	if err != nil {
		m.o.Metrics.Sign.WithLabelValues("error").Inc()
		return err // a key that cannot sign: on_error decides
	}
	add := make([]milter.HeaderField, 0, len(sigs)+len(t.Mutations.Prepend))
	for _, s := range sigs {
		add = append(add, milter.HeaderField{Name: "DKIM-Signature", Value: s})
	}
	t.Mutations.Prepend = append(add, t.Mutations.Prepend...)
	m.o.Metrics.Sign.WithLabelValues("signed").Inc()
	t.Tag("DKIM-Sign", keys[0].Domain)
	return nil
}

// keysFor picks the keys that sign: those of the domain the policy set in
// $acl_m_dkim_sign_domain (none if it has none); otherwise those of the
// From domain or its closest parent (Exim signs as the sender's domain);
// otherwise those of the first key's domain, as ARC picks its key.
func (m *Module) keysFor(want string, headers []Header) []Key {
	of := func(domain string) []Key {
		var out []Key
		for _, k := range m.o.Keys {
			if strings.EqualFold(k.Domain, domain) {
				out = append(out, k)
			}
		}
		return out
	}
	if want != "" {
		return of(want)
	}
	if from := fromDomain(headers); from != "" {
		for d := from; d != ""; {
			if keys := of(d); len(keys) > 0 {
				return keys
			}
			_, parent, ok := strings.Cut(d, ".")
			if !ok || !strings.Contains(parent, ".") {
				break // never sign as a top-level domain
			}
			d = parent
		}
	}
	return of(m.o.Keys[0].Domain)
}

// fromDomain is the domain of the first address of the last From field
// (the one verifiers and DMARC read), lower-cased; "" when there is none
// that could have a key (an IDN in UTF-8 or a domain literal has none).
func fromDomain(headers []Header) string {
	for i := len(headers) - 1; i >= 0; i-- {
		if !strings.EqualFold(strings.TrimSpace(headers[i].Name), "From") {
			continue
		}
		v := strings.NewReplacer("\r", "", "\n", "").Replace(headers[i].Value)
		dom := ""
		if list, err := mail.ParseAddressList(v); err == nil && len(list) > 0 {
			_, dom, _ = strings.Cut(list[0].Address, "@")
		} else if at := strings.LastIndexByte(v, '@'); at >= 0 {
			// not RFC 5322: the name after the last @, as far as it goes
			dom = v[at+1:]
			end := 0
			for end < len(dom) && (dom[end] == '.' || validName(dom[end:end+1])) {
				end++
			}
			dom = dom[:end]
		}
		dom = strings.ToLower(strings.TrimSuffix(dom, "."))
		if !validName(dom) {
			return ""
		}
		return dom
	}
	return ""
}
