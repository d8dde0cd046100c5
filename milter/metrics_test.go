package milter

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	// Every vector needs a series to be linted.
	m.Recipients.WithLabelValues("accept").Inc()
	m.StageDuration.WithLabelValues("rcpt").Observe(0.001)
	m.ModuleDuration.WithLabelValues("arc", "data").Observe(0.001)
	m.ModuleErrors.WithLabelValues("arc", "panic").Inc()
	m.PolicyDecisions.WithLabelValues("rcpt", "relay", "deny").Inc()
	m.PolicyErrors.WithLabelValues("data").Inc()
	m.MTAErrors.WithLabelValues("modify").Inc()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	if len(mfs) < 15 {
		t.Errorf("only %d metric families", len(mfs))
	}
}
