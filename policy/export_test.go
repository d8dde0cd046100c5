package policy

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/milter"
)

// NewRuntime is Env.Runtime for tests and tools that keep no registry (the
// features' metrics go to a private one) and open no store: it panics on a
// configuration whose stores cannot be opened.
func NewRuntime(p *Policy, log *slog.Logger, metrics *milter.Metrics) *Runtime {
	env := &Env{Log: log, Metrics: metrics, registry: prometheus.NewRegistry()}
	rt, err := env.Runtime(p)
	if err != nil {
		panic(err)
	}
	return rt
}

// evaluate runs a stage's ACL with Exim's semantics: the first rule whose verb
// takes effect ends the ACL; warn never does; require fails into a deny; the
// end of a defined ACL denies; a stage without an ACL accepts.
func (p *Policy) evaluate(log *slog.Logger, metrics *milter.Metrics, stage milter.Stage, s *milter.Session, t *milter.Txn, r *milter.Recipient) milter.Decision {
	return p.evaluateWith(&evalCtx{ctx: context.Background(), log: log, metrics: metrics}, stage, s, t, r)
}
