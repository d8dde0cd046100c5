package policy

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/internal/resolver"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/feature"

	"github.com/tollgate/tollgate/milter"
)

type evalCtx struct {
	stage   milter.Stage
	s       *milter.Session
	t       *milter.Txn
	r       *milter.Recipient
	log     *slog.Logger
	metrics *milter.Metrics
	limit   *logLimiter
	vars    map[string]variable
	fe      feature.Eval // the same, as features see it

	// What the dnslists condition looks up with: the runtime's resolver
	// (nil in tests that evaluate a bare Policy), the deadline of one
	// list, the lookups counter.
	ctx      context.Context
	dns      resolver.Resolver
	dnsWait  time.Duration
	dnsLists *prometheus.CounterVec
}

func (e *evalCtx) feature() *feature.Eval { return &e.fe }

type condition interface {
	match(e *evalCtx) bool
}

// deferring is a condition that can leave the ACL undecided-but-temporary:
// deferred is then the decision (Exim defers the ACL whatever the verb).
type deferring interface {
	eval(e *evalCtx) (matched bool, deferred *milter.Decision)
}

type hostsCond struct{ list *HostList }

func (c hostsCond) match(e *evalCtx) bool {
	a := e.s.Identity.ClientAddr
	if !a.IsValid() {
		a = netip.Addr{}
	}
	return c.list.Match(a)
}

type proxiedCond bool

func (c proxiedCond) match(e *evalCtx) bool { return e.s.Identity.ProxySession == bool(c) }

// proxyHostsCond matches the proxy's own address (known in a proxied session
// when one proxy is configured).
type proxyHostsCond struct{ list *HostList }

func (c proxyHostsCond) match(e *evalCtx) bool {
	id := &e.s.Identity
	if !id.ProxySession && !id.ProxyHandoff {
		return false
	}
	return c.list.Match(id.ProxyLocalAddr)
}

type authCond struct{ list *PatternList }

func (c authCond) match(e *evalCtx) bool { return c.list.Match(e.s.Identity.AuthLogin) }

type sendersCond struct{ list *AddressList }

func (c sendersCond) match(e *evalCtx) bool { return c.list.Match(e.t.Sender) }

type senderDomainsCond struct{ list *DomainList }

func (c senderDomainsCond) match(e *evalCtx) bool { return c.list.Match(milter.Domain(e.t.Sender)) }

type recipientsCond struct{ list *AddressList }

func (c recipientsCond) match(e *evalCtx) bool { return c.list.Match(e.r.Addr) }

type recipientDomainsCond struct{ list *DomainList }

func (c recipientDomainsCond) match(e *evalCtx) bool { return c.list.Match(milter.Domain(e.r.Addr)) }

// headerCond is true when any instance of the header matches (regex), or when
// none does (not_regex, also true when the header is absent).
type headerCond struct {
	name   string
	re     *regexp.Regexp
	negate bool
}

func (c headerCond) match(e *evalCtx) bool {
	for _, h := range e.t.Headers {
		if strings.EqualFold(h.Name, c.name) && c.re.MatchString(e.t.HeaderValue(h)) {
			return !c.negate
		}
	}
	return c.negate
}

type sizeCond struct {
	op string
	n  int64
}

func (c sizeCond) match(e *evalCtx) bool {
	size := e.t.Size()
	switch c.op {
	case ">":
		return size > c.n
	case ">=":
		return size >= c.n
	case "<":
		return size < c.n
	case "<=":
		return size <= c.n
	}
	return size == c.n
}

// evaluateWith runs a stage's ACL with Exim's semantics: the first rule
// whose verb takes effect ends the ACL; warn never does; require fails into a
// deny; the end of a defined ACL denies; a stage without an ACL accepts. e
// carries what the runtime adds (the resolver).
func (p *Policy) evaluateWith(e *evalCtx, stage milter.Stage, s *milter.Session, t *milter.Txn, r *milter.Recipient) milter.Decision {
	a := p.acls[stage]
	if a == nil {
		return milter.Decision{}
	}
	log, metrics := e.log, e.metrics
	e.stage, e.s, e.t, e.r, e.limit, e.vars = stage, s, t, r, &p.unknownLog, p.vars
	e.fe = feature.Eval{Stage: stage, Session: s, Txn: t, Rcpt: r}
	for _, ru := range a.rules {
		matched := true
		var deferred *milter.Decision
		for _, c := range ru.conds {
			if dc, ok := c.(deferring); ok {
				matched, deferred = dc.eval(e)
			} else {
				matched = c.match(e)
			}
			if !matched {
				break
			}
		}
		if deferred != nil && ru.verb == verbWarn {
			continue // Exim ignores a warn it cannot decide
		}
		if deferred != nil {
			// Exim: a condition that cannot be decided defers the ACL.
			metrics.PolicyDecisions.WithLabelValues(stage.String(), ru.name, "defer").Inc()
			d := *deferred
			d.Rule = ru.name
			return d
		}
		var d milter.Decision
		switch ru.verb {
		case verbWarn:
			if matched {
				ru.fire(log, metrics, e)
			}
			continue
		case verbRequire:
			if matched {
				continue
			}
			d = ru.decision(e, milter.Reject)
		default:
			if !matched {
				continue
			}
			d = ru.decision(e, verbVerdict[ru.verb])
		}
		ru.fire(log, metrics, e)
		return d
	}
	metrics.PolicyDecisions.WithLabelValues(stage.String(), stage.String()+"/end", "deny").Inc()
	return milter.Decision{Verdict: milter.Reject, Rule: stage.String() + "/end", Reason: "end of ACL reached (implicit deny)"}
}

var verbVerdict = [...]milter.Verdict{verbAccept: milter.Accept, verbDeny: milter.Reject,
	verbDefer: milter.TempFail, verbDiscard: milter.Discard, verbDrop: milter.Drop}

// ruleCounter caches a rule's tollgate_policy_decisions_total series: the
// label lookup showed in profiles of every message.
type ruleCounter struct {
	metrics *milter.Metrics
	c       prometheus.Counter
}

func (ru *rule) decisions(metrics *milter.Metrics, stage milter.Stage) prometheus.Counter {
	if rc := ru.counter.Load(); rc != nil && rc.metrics == metrics {
		return rc.c
	}
	c := metrics.PolicyDecisions.WithLabelValues(stage.String(), ru.name, ru.verb.String())
	ru.counter.Store(&ruleCounter{metrics, c})
	return c
}

func (ru *rule) decision(e *evalCtx, v milter.Verdict) milter.Decision {
	d := milter.Decision{Verdict: v, Rule: ru.name}
	if ru.message != nil {
		d.Reply = ru.reply
		d.Reply.Text = ru.message.expand(e)
		if d.Reply.Code == 0 {
			def := milter.DefaultReply(v)
			d.Reply.Code = def.Code
			if d.Reply.Enhanced == "" {
				d.Reply.Enhanced = def.Enhanced
			}
		}
	}
	return d
}

// fire applies a rule's modifiers once its verb takes effect (or, for warn,
// once its conditions hold).
func (ru *rule) fire(log *slog.Logger, metrics *milter.Metrics, e *evalCtx) {
	ru.decisions(metrics, e.stage).Inc()
	for _, sv := range ru.set {
		val := sv.value.expand(e)
		if sv.name[4] == 'c' {
			e.s.Vars[sv.name] = val
		} else if e.t != nil {
			if e.t.Vars == nil {
				e.t.Vars = map[string]string{}
			}
			e.t.Vars[sv.name] = val
		}
	}
	var logText string
	if ru.logMessage != nil {
		logText = ru.logMessage.expand(e)
		if e.t != nil {
			e.t.Logs = append(e.t.Logs, logText)
		}
	}
	if log.Enabled(context.Background(), slog.LevelDebug) {
		log.Debug("rule fired", "stage", e.stage.String(), "rule", ru.name, "verb", ru.verb.String(), "session", e.s.ID)
	}
	if logText != "" && e.t == nil {
		log.Info("acl log", "stage", e.stage.String(), "rule", ru.name, "client", e.s.Identity.Client(), "log", logText)
	}
	if e.t == nil {
		return
	}
	for _, fm := range ru.mods {
		fm.apply(e.feature(), fm.value.expand(e))
	}
	m := &e.t.Mutations
	for _, h := range ru.prepend {
		m.Prepend = append(m.Prepend, milter.HeaderField{Name: h.name, Value: h.value.expand(e)})
	}
	for _, h := range ru.append {
		m.Append = append(m.Append, milter.HeaderField{Name: h.name, Value: h.value.expand(e)})
	}
	m.RemoveAll = append(m.RemoveAll, ru.remove...)
	for _, c := range ru.controls {
		e.t.SetControl(c)
		if c == "freeze" {
			reason := logText
			if reason == "" {
				reason = "frozen by rule " + ru.name
			}
			m.Quarantine = reason
		}
	}
}

// Runtime serves a Policy to the milter pipeline.
type Runtime struct {
	Policy  *Policy
	modules []milter.Module
	log     *slog.Logger
	metrics *milter.Metrics

	holds    atomic.Int64
	released sync.Once
	stores   []string // keys of the Env's stores this runtime uses
	env      *Env
	dns      resolver.Resolver      // the dns: section's, for dnslists
	dnsWait  time.Duration          // dns.timeout: one DNS list's deadline
	dnsLists *prometheus.CounterVec // tollgate_dnslist_lookups_total
}

// Hold and Release count who may still use the runtime (milter.Held): the
// server while it is current or previous, and each session started with it.
// The last Release gives its stores back to the Env, which closes those no
// other runtime uses: a reload that changed a store's options closes the old
// one once the last session using it ends.
func (rt *Runtime) Hold() { rt.holds.Add(1) }

func (rt *Runtime) Release() {
	if rt.holds.Add(-1) == 0 && rt.env != nil {
		rt.released.Do(func() { rt.env.unref(rt.stores) })
	}
}

// Env is what outlives one configuration: the logger, the core metrics and
// the features' metrics, registered once per process whatever the reloads.
type Env struct {
	Log     *slog.Logger
	Metrics *milter.Metrics
	// Serving says the runtimes built with this Env serve the MTA (tollgate
	// run), not only judge messages (tollgate test): see
	// feature.ModuleEnv.Serving.
	Serving  bool
	registry prometheus.Registerer

	featureMetrics map[string]any // by feature: registered once per process
	dnsMetrics     *resolver.Metrics
	dnsLists       *prometheus.CounterVec

	mu     sync.Mutex
	stores map[string]*sharedStore // resources (SRS database stores) by their options, kept across reloads
}

// sharedStore is a resource and the number of runtimes that use it.
type sharedStore struct {
	st   io.Closer
	refs int
}

// NewEnv registers the core metrics on reg.
func NewEnv(log *slog.Logger, reg prometheus.Registerer) *Env {
	return &Env{Log: log, Metrics: milter.NewMetrics(reg), registry: reg, dnsMetrics: resolver.NewMetrics(reg),
		dnsLists: newDNSListMetrics(reg)}
}

// Runtime builds the modules a policy configures. It fails only when a store
// cannot be opened; a daemon then keeps its previous configuration.
func (e *Env) Runtime(p *Policy) (*Runtime, error) {
	if e.Log == nil {
		e.Log = slog.Default()
	}
	rt := &Runtime{Policy: p, log: e.Log, metrics: e.Metrics, env: e, dnsLists: e.dnsLists, dnsWait: p.DNSOptions().Timeout}
	report := func(kind string, err error) {
		if e.Metrics != nil {
			e.Metrics.LookupErrors.WithLabelValues(kind).Inc()
		}
		e.Log.Warn("policy: lookup failed; the key is taken as absent", "kind", kind, "err", err)
	}
	for _, db := range p.lookups {
		db.report.Store(&report)
	}
	mods, err := e.featureModules(p, rt)
	if err != nil {
		e.unref(rt.stores)
		return nil, err
	}
	rt.modules = append(rt.modules, mods...)
	return rt, nil
}

// shared returns the resource under key, opening it the first time; each
// call is one reference, given back with unref. A resource (a database
// store, a DNS resolver's cache) so outlives a reload that keeps its options.
func (e *Env) shared(key string, open func() (io.Closer, error)) (io.Closer, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if s, ok := e.stores[key]; ok {
		s.refs++
		return s.st, nil
	}
	c, err := open()
	if err != nil {
		return nil, err
	}
	if e.stores == nil {
		e.stores = map[string]*sharedStore{}
	}
	e.stores[key] = &sharedStore{st: c, refs: 1}
	return c, nil
}

// unref drops one reference to each store and closes those left without
// one.
func (e *Env) unref(keys []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, k := range keys {
		s, ok := e.stores[k]
		if !ok {
			continue
		}
		if s.refs--; s.refs <= 0 {
			s.st.Close()
			delete(e.stores, k)
		}
	}
}

// Close closes the stores; the daemon calls it once no session is left.
func (e *Env) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, s := range e.stores {
		s.st.Close()
		delete(e.stores, k)
	}
}

func (rt *Runtime) Modules() []milter.Module { return rt.modules }

func (rt *Runtime) PolicyNeeds() milter.Needs { return rt.Policy.needs }

func (rt *Runtime) OnError() milter.Decision { return rt.Policy.OnError }

func (rt *Runtime) Identity() *milter.IdentityConfig { return &rt.Policy.identity }

func (rt *Runtime) Evaluate(ctx context.Context, stage milter.Stage, s *milter.Session, t *milter.Txn, r *milter.Recipient) (milter.Decision, error) {
	e := &evalCtx{ctx: ctx, log: rt.log, metrics: rt.metrics, dns: rt.dns, dnsWait: rt.dnsWait, dnsLists: rt.dnsLists}
	if stage != milter.StageRcpt {
		return rt.Policy.evaluateWith(e, stage, s, t, r), nil
	}
	// As in Exim, headers added while evaluating the ACL for a recipient that
	// is then refused are dropped with it.
	np, na := len(t.Mutations.Prepend), len(t.Mutations.Append)
	d := rt.Policy.evaluateWith(e, stage, s, t, r)
	if d.Verdict != milter.Continue && d.Verdict != milter.Accept {
		t.Mutations.Prepend, t.Mutations.Append = t.Mutations.Prepend[:np], t.Mutations.Append[:na]
	}
	return d, nil
}
