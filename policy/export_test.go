package policy

import (
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
