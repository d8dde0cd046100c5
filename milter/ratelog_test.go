package milter

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRateLimitedHandler(t *testing.T) {
	out := &syncBuffer{}
	log := slog.New(NewRateLimitedHandler(slog.NewTextHandler(out, nil), 200*time.Millisecond))
	for i := range 100 {
		log.Warn("dccifd gave no answer", "module", "dcc", "queue_id", i)
		log.Info("message", "queue_id", i)
	}
	log.Warn("dccifd gave no answer", "module", "bmi", "queue_id", 1) // another kind of trouble
	lines := func(s string) int { return strings.Count(out.String(), s) }
	if n := lines("msg=\"dccifd gave no answer\" module=dcc"); n != 1 {
		t.Errorf("%d lines during the burst, want 1:\n%s", n, out.String())
	}
	if lines("module=bmi") != 1 || lines("msg=message") != 100 {
		t.Errorf("another kind or info lines were held back:\n%s", out.String())
	}
	waitFor(t, func() bool { return lines("repeated=99") == 1 })
	if !strings.Contains(out.String(), "queue_id=99 repeated=99 repeated_over=200ms") {
		t.Errorf("the count line does not carry the last record:\n%s", out.String())
	}
	// After a quiet interval the next one is written at once again.
	time.Sleep(250 * time.Millisecond)
	log.Warn("dccifd gave no answer", "module", "dcc", "queue_id", 100)
	if n := lines("msg=\"dccifd gave no answer\" module=dcc"); n != 3 {
		t.Errorf("%d lines, want 3:\n%s", n, out.String())
	}
}

func TestProtocolWarningsRateLimited(t *testing.T) {
	out := &syncBuffer{}
	metrics := NewMetrics(prometheus.NewRegistry())
	NewServer(fullRuntime(), ServerOptions{Logger: slog.New(slog.NewTextHandler(out, nil)), Metrics: metrics, LogInterval: time.Hour})
	defer NewServer(fullRuntime(), ServerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: NewMetrics(prometheus.NewRegistry())})
	for range 50 {
		gomilter.LogWarning("Error reading milter command: %v", errors.New("connection reset by peer"))
	}
	if n := strings.Count(out.String(), "milter protocol: Error reading milter command"); n != 1 {
		t.Errorf("%d lines for 50 warnings:\n%s", n, out.String())
	}
	if got := testutil.ToFloat64(metrics.ProtocolWarnings); got != 50 {
		t.Errorf("milter_protocol_warnings_total = %v", got)
	}
}
