package milter

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// DefaultLogInterval is how often a repeating warning is summed up.
const DefaultLogInterval = time.Minute

// rateKeyAttrs are the attributes that tell one kind of trouble from another
// (a DCC outage from a scanner outage); per-message values (queue id, client)
// never split a key, so a burst of one trouble stays one line.
var rateKeyAttrs = map[string]bool{"module": true, "stage": true, "kind": true, "backend": true, "reason": true, "limit": true}

// RateLimitedHandler passes records below Warn through and lets each kind of
// warning or error through once per interval: the first at once, then, if it
// repeated, one line with the count at the end of the interval. The kind is
// the message and the attributes in rateKeyAttrs. Per-message facts belong in
// the summary line and the metrics, which this never touches.
type RateLimitedHandler struct {
	next     slog.Handler
	interval time.Duration
	state    *rateState
	keyAttrs string // from WithAttrs
}

type rateState struct {
	mu      sync.Mutex
	entries map[string]*rateEntry
}

type rateEntry struct {
	until      time.Time // the end of the interval that started with the last line written
	suppressed int
	last       slog.Record
	handler    slog.Handler
	timer      *time.Timer
}

// NewRateLimitedHandler wraps next; interval 0 means DefaultLogInterval.
func NewRateLimitedHandler(next slog.Handler, interval time.Duration) *RateLimitedHandler {
	if interval <= 0 {
		interval = DefaultLogInterval
	}
	return &RateLimitedHandler{next: next, interval: interval, state: &rateState{entries: map[string]*rateEntry{}}}
}

// RateLimited returns a logger that writes to log's handler through a
// RateLimitedHandler.
func RateLimited(log *slog.Logger, interval time.Duration) *slog.Logger {
	return slog.New(NewRateLimitedHandler(log.Handler(), interval))
}

func (h *RateLimitedHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *RateLimitedHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(attrs)
	c.keyAttrs += keyOf(attrs)
	return &c
}

func (h *RateLimitedHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	return &c
}

func keyOf(attrs []slog.Attr) string {
	var b strings.Builder
	for _, a := range attrs {
		if rateKeyAttrs[a.Key] {
			b.WriteString("\x00" + a.Key + "=" + a.Value.String())
		}
	}
	return b.String()
}

func (h *RateLimitedHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return h.next.Handle(ctx, r)
	}
	var attrs []slog.Attr
	r.Attrs(func(a slog.Attr) bool {
		if rateKeyAttrs[a.Key] {
			attrs = append(attrs, a)
		}
		return true
	})
	key := r.Message + h.keyAttrs + keyOf(attrs)
	now := time.Now()
	s := h.state
	s.mu.Lock()
	e := s.entries[key]
	if e == nil || now.After(e.until) && e.suppressed == 0 {
		if e == nil {
			e = &rateEntry{}
			s.entries[key] = e
		}
		e.until = now.Add(h.interval)
		s.mu.Unlock()
		return h.next.Handle(ctx, r)
	}
	e.suppressed++
	e.last = r.Clone()
	e.handler = h.next
	if e.timer == nil {
		e.timer = time.AfterFunc(time.Until(e.until), func() { h.flush(key) })
	}
	s.mu.Unlock()
	return nil
}

// flush writes the last suppressed record of key with the count of those
// suppressed since the previous line.
func (h *RateLimitedHandler) flush(key string) {
	s := h.state
	s.mu.Lock()
	e := s.entries[key]
	if e == nil || e.suppressed == 0 {
		if e != nil {
			e.timer = nil
		}
		s.mu.Unlock()
		return
	}
	r, n, next := e.last, e.suppressed, e.handler
	e.suppressed, e.timer = 0, nil
	e.until = time.Now().Add(h.interval)
	s.mu.Unlock()
	r.Time = time.Now()
	r.AddAttrs(slog.Int("repeated", n), slog.String("repeated_over", h.interval.String()))
	// A log handler that fails has nowhere to report it.
	_ = next.Handle(context.Background(), r)
}
