package policy

import (
	"fmt"
	"strings"
	"sync"

	"context"
	"log/slog"
	"net/netip"
	"regexp"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/arc"
	"github.com/tollgate/tollgate/bmi"
	"github.com/tollgate/tollgate/dcc"
	"github.com/tollgate/tollgate/srs"
	"github.com/tollgate/tollgate/srs/store"

	"github.com/tollgate/tollgate/milter"
)

type evalCtx struct {
	stage milter.Stage
	s     *milter.Session
	t     *milter.Txn
	r     *milter.Recipient
}

type condition interface {
	match(e *evalCtx) bool
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

// Evaluate runs a stage's ACL with Exim's semantics: the first rule whose verb
// takes effect ends the ACL; warn never does; require fails into a deny; the
// end of a defined ACL denies; a stage without an ACL accepts.
func (p *Policy) evaluate(log *slog.Logger, metrics *milter.Metrics, stage milter.Stage, s *milter.Session, t *milter.Txn, r *milter.Recipient) milter.Decision {
	a := p.acls[stage]
	if a == nil {
		return milter.Decision{}
	}
	e := &evalCtx{stage: stage, s: s, t: t, r: r}
	for _, ru := range a.rules {
		matched, deferred := true, false
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
		if deferred && ru.verb == verbWarn {
			continue // Exim ignores a warn it cannot decide
		}
		if deferred {
			// Exim: a condition that cannot be decided defers the ACL.
			metrics.PolicyDecisions.WithLabelValues(stage.String(), ru.name, "defer").Inc()
			return dccDefer(e, ru.name)
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
	if ru.bmiOptin != nil && e.r != nil && e.r.BMI != nil {
		e.r.BMI.Optins = append(e.r.BMI.Optins, bmi.SplitOptins(ru.bmiOptin.expand(e))...)
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
}

// Env is what outlives one configuration: the logger, the core metrics and
// the features' metrics, registered once per process whatever the reloads.
type Env struct {
	Log      *slog.Logger
	Metrics  *milter.Metrics
	registry prometheus.Registerer

	srsOnce    sync.Once
	srsMetrics *srs.Metrics
	dccOnce    sync.Once
	dccMetrics *dcc.Metrics
	arcOnce    sync.Once
	arcMetrics *arc.Metrics
	bmiOnce    sync.Once
	bmiMetrics *bmi.Metrics
	resolvers  map[string]*arc.DNSResolver // kept across reloads for their caches

	mu     sync.Mutex
	stores map[string]store.Store // SRS database stores, kept across reloads
}

// NewEnv registers the core metrics on reg.
func NewEnv(log *slog.Logger, reg prometheus.Registerer) *Env {
	return &Env{Log: log, Metrics: milter.NewMetrics(reg), registry: reg}
}

// Runtime builds the modules a policy configures. It fails only when a store
// cannot be opened; a daemon then keeps its previous configuration.
func (e *Env) Runtime(p *Policy) (*Runtime, error) {
	if e.Log == nil {
		e.Log = slog.Default()
	}
	rt := &Runtime{Policy: p, log: e.Log, metrics: e.Metrics}
	if p.srs != nil {
		e.srsOnce.Do(func() { e.srsMetrics = srs.NewMetrics(e.registry) })
		o := srs.ModuleOptions{SRS: p.srs.srs, Local: p.srs.local, Metrics: e.srsMetrics, Log: e.Log}
		if p.srs.db != nil {
			st, err := e.srsStore(p.srs.db)
			if err != nil {
				return nil, err
			}
			o.DB, o.Always = store.NewDB(p.srs.srs, st, p.srs.maxAge), p.srs.db.always
		}
		rt.modules = append(rt.modules, srs.NewModule(o))
	}
	if p.dcc != nil {
		e.dccOnce.Do(func() { e.dccMetrics = dcc.NewMetrics(e.registry) })
		rt.modules = append(rt.modules, dcc.NewModule(dcc.ModuleOptions{Options: p.dcc.options, HeloMap: p.dcc.heloMap,
			AddHeader: p.dcc.addHeader, Metrics: e.dccMetrics, Log: e.Log}))
	}
	if p.bmi != nil {
		// After the other checks: the scan sees the headers as they left them.
		e.bmiOnce.Do(func() { e.bmiMetrics = bmi.NewMetrics(e.registry) })
		b := p.bmi
		rt.modules = append(rt.modules, bmi.NewModule(bmi.ModuleOptions{Backend: b.backend, Rules: b.rules, Profiles: b.profiles,
			Optins: b.optins, SpoolMemory: b.spoolMemory, SpoolDir: b.spoolDir, DeferOnError: b.deferOnError,
			SpamHeaders: b.spamHeaders, Metrics: e.bmiMetrics, Log: e.Log}))
	}
	if p.arc != nil {
		// Last: its seal must sign the headers as every other module left them.
		e.arcOnce.Do(func() { e.arcMetrics = arc.NewMetrics(e.registry) })
		rt.modules = append(rt.modules, arc.NewModule(arc.ModuleOptions{AuthServID: p.arc.authServID, Resolver: e.resolver(p.arc.dns),
			MinRSABits: p.arc.minRSABits, Timeout: p.arc.timeout, RemoveForged: p.arc.removeForged, AddAuthResults: p.arc.addAR,
			RemoteIP: p.arc.remoteIP, Seal: p.arc.seal, Metrics: e.arcMetrics, Log: e.Log}))
	}
	return rt, nil
}

// resolver returns the DNS resolver for these options, the same one across
// reloads so its cache survives them.
func (e *Env) resolver(o arc.DNSOptions) *arc.DNSResolver {
	e.mu.Lock()
	defer e.mu.Unlock()
	key := o.Server + "|" + o.Timeout.String()
	if r, ok := e.resolvers[key]; ok {
		return r
	}
	if e.resolvers == nil {
		e.resolvers = map[string]*arc.DNSResolver{}
	}
	r := arc.NewDNSResolver(o)
	e.resolvers[key] = r
	return r
}

// srsStore opens a database-mode store once and hands the same one to every
// later configuration naming it (bolt's file lock forbids a second open). A
// Redis store connects lazily, so a Redis that is down delays bounces (4xx)
// but not the daemon.
func (e *Env) srsStore(db *srsDB) (store.Store, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if st, ok := e.stores[db.key()]; ok {
		return st, nil
	}
	var st store.Store
	var err error
	if db.bolt != "" {
		st, err = store.OpenBolt(db.bolt)
	} else {
		st, err = store.NewRedis(*db.redis)
	}
	if err != nil {
		return nil, fmt.Errorf("srs database: %w", err)
	}
	if e.stores == nil {
		e.stores = map[string]store.Store{}
	}
	e.stores[db.key()] = st
	return st, nil
}

// Close closes the stores; the daemon calls it once no session is left.
func (e *Env) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, st := range e.stores {
		st.Close()
		delete(e.stores, k)
	}
}

func (rt *Runtime) Modules() []milter.Module { return rt.modules }

func (rt *Runtime) PolicyNeeds() milter.Needs { return rt.Policy.needs }

func (rt *Runtime) OnError() milter.Decision { return rt.Policy.OnError }

func (rt *Runtime) Identity() *milter.IdentityConfig { return &rt.Policy.identity }

func (rt *Runtime) Evaluate(_ context.Context, stage milter.Stage, s *milter.Session, t *milter.Txn, r *milter.Recipient) (milter.Decision, error) {
	if stage != milter.StageRcpt {
		return rt.Policy.evaluate(rt.log, rt.metrics, stage, s, t, r), nil
	}
	// As in Exim, headers added while evaluating the ACL for a recipient that
	// is then refused are dropped with it.
	np, na := len(t.Mutations.Prepend), len(t.Mutations.Append)
	d := rt.Policy.evaluate(rt.log, rt.metrics, stage, s, t, r)
	if d.Verdict != milter.Continue && d.Verdict != milter.Accept {
		t.Mutations.Prepend, t.Mutations.Append = t.Mutations.Prepend[:np], t.Mutations.Append[:na]
	}
	return d, nil
}
