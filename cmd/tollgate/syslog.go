package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// syslogWriter sends log lines to the local syslog daemon the way syslog(3)
// and Go's log/syslog do on a local socket: "<PRI>Mmm dd hh:mm:ss
// tollgate[PID]: message", one datagram per line, which rsyslog's imuxsock
// and journald parse. Unlike log/syslog it never holds up the mail flow: lines
// wait in a queue for one sender, and a line that finds the queue full, or
// that the syslog daemon does not take within writeTimeout, is lost (counted
// in tollgate_syslog_dropped_total); the same line is on standard error.
type syslogWriter struct {
	address  string
	facility int
	tag      string

	conn    net.Conn // only the sender goroutine uses it after dialSyslog
	lines   chan []byte
	done    chan struct{}
	mu      sync.RWMutex // closed and the close of lines
	closed  bool
	dropped atomic.Uint64
	// warn says why lines are lost, on standard error only (rate-limited):
	// syslog is where they would have gone.
	warn *slog.Logger
}

const (
	syslogWriteTimeout = time.Second
	syslogQueue        = 1024
	// rsyslog's default maxMessageSize is 8 KiB; longer datagrams would be cut
	// or refused.
	maxSyslogLine = 8000
)

// dialSyslog connects at once, so that a wrong address fails the start with
// a clear error rather than losing every line.
func dialSyslog(s *policy.Syslog, warn *slog.Logger) (*syslogWriter, error) {
	if warn == nil {
		warn = slog.New(slog.DiscardHandler)
	}
	w := &syslogWriter{address: s.Address, facility: s.Facility, tag: "tollgate",
		lines: make(chan []byte, syslogQueue), done: make(chan struct{}), warn: warn}
	if err := w.dial(); err != nil {
		return nil, fmt.Errorf("log.syslog: %w", err)
	}
	go w.run()
	return w, nil
}

func (w *syslogWriter) dial() error {
	c, err := net.Dial("unixgram", w.address)
	if err != nil {
		return err
	}
	w.conn = c
	return nil
}

// severity maps slog levels to syslog severities (RFC 5424 section 6.2.1).
func severity(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3 // err
	case l >= slog.LevelWarn:
		return 4 // warning
	case l >= slog.LevelInfo:
		return 6 // info
	}
	return 7 // debug
}

// send queues one line.
func (w *syslogWriter) send(sev int, line []byte) {
	line = bytes.TrimRight(line, "\n")
	if len(line) > maxSyslogLine {
		line = line[:maxSyslogLine]
	}
	packet := fmt.Appendf(nil, "<%d>%s %s[%d]: %s", w.facility*8+sev, time.Now().Format(time.Stamp), w.tag, os.Getpid(), line)
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.dropped.Add(1)
		return
	}
	select {
	case w.lines <- packet:
	default:
		w.drop("queue_full", nil)
	}
}

func (w *syslogWriter) run() {
	defer close(w.done)
	for p := range w.lines {
		w.write(p)
	}
	if w.conn != nil {
		w.conn.Close()
	}
}

// write sends one datagram; after a failure (the syslog daemon restarted and
// made a new socket) it dials once more and retries once.
func (w *syslogWriter) write(packet []byte) {
	var err error
	for range 2 {
		if w.conn == nil {
			if err = w.dial(); err != nil {
				break
			}
		}
		w.conn.SetWriteDeadline(time.Now().Add(syslogWriteTimeout))
		if _, err = w.conn.Write(packet); err == nil {
			return
		}
		w.conn.Close()
		w.conn = nil
	}
	w.drop("write_failed", err)
}

func (w *syslogWriter) drop(reason string, err error) {
	w.dropped.Add(1)
	attrs := []any{"reason", reason, "address", w.address, "dropped_total", w.dropped.Load()}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	w.warn.Warn("syslog line dropped; standard error still has it", attrs...)
}

// Close sends what is queued and closes the socket.
func (w *syslogWriter) Close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.lines)
	}
	w.mu.Unlock()
	<-w.done
}

// Dropped is the number of lines lost so far.
func (w *syslogWriter) Dropped() uint64 { return w.dropped.Load() }

// syslogHandler formats records as the stderr log does (text or json, without
// the time: syslog stamps each line) and sends each with its severity.
type syslogHandler struct {
	inner slog.Handler
	out   *syslogOut
}

// syslogOut is shared by a handler and its WithAttrs/WithGroup children: the
// formatter writes into buf while mu is held, then the line is sent.
type syslogOut struct {
	mu  sync.Mutex
	buf bytes.Buffer
	w   *syslogWriter
}

func newSyslogHandler(w *syslogWriter, format string, level slog.Leveler) *syslogHandler {
	out := &syslogOut{w: w}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}
	var inner slog.Handler = slog.NewTextHandler(&out.buf, opts)
	if format == "json" {
		inner = slog.NewJSONHandler(&out.buf, opts)
	}
	return &syslogHandler{inner: inner, out: out}
}

func (h *syslogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *syslogHandler) Handle(ctx context.Context, r slog.Record) error {
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	h.out.buf.Reset()
	if err := h.inner.Handle(ctx, r); err != nil {
		return err
	}
	h.out.w.send(severity(r.Level), h.out.buf.Bytes())
	return nil
}

func (h *syslogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &syslogHandler{inner: h.inner.WithAttrs(attrs), out: h.out}
}

func (h *syslogHandler) WithGroup(name string) slog.Handler {
	return &syslogHandler{inner: h.inner.WithGroup(name), out: h.out}
}
