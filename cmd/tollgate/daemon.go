package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tollgate/tollgate/internal/sigcrypto"
	"github.com/tollgate/tollgate/milter"
	"github.com/tollgate/tollgate/policy"
)

func cmdRun(args []string, stderr io.Writer) int {
	c := newCommand("run", "[--config FILE] [--listen ADDR] [--metrics-listen ADDR]",
		"Runs the milter daemon: SIGHUP reloads the configuration, SIGTERM drains and stops.")
	config := c.String("config", defaultConfig, "the configuration `FILE`")
	listen := c.String("listen", "", "the milter socket `ADDR` (unix:/path or inet:host:port), instead of the configuration's listen")
	metricsListen := c.String("metrics-listen", "", "the metrics and health `ADDR` host:port (off: none), instead of the configuration's metrics_listen")
	if code, done := c.parse(args, os.Stdout, stderr); done {
		return code
	}
	if c.NArg() != 0 {
		return c.usageError(stderr, "unexpected argument %q", c.Arg(0))
	}
	p, err := policy.LoadFile(*config, features...)
	if err != nil {
		printConfigErrors(stderr, err)
		return 1
	}
	if errs := validateForRun(p, *listen, *metricsListen); len(errs) > 0 {
		printConfigErrors(stderr, errs)
		return 1
	}
	d := &daemon{configPath: *config, listenFlag: *listen, metricsFlag: *metricsListen, stderr: stderr}
	if err := d.start(p); err != nil {
		fmt.Fprintf(stderr, "tollgate: %v\n", err)
		d.closeSyslog()
		return 1
	}
	return d.wait()
}

// daemon is the running service: the milter server, the metrics endpoint and
// the signal handling around them.
type daemon struct {
	configPath  string
	listenFlag  string
	metricsFlag string
	stderr      io.Writer

	log      *slog.Logger
	level    *slog.LevelVar
	syslog   *syslogWriter // nil unless log.syslog
	registry *prometheus.Registry
	env      *policy.Env
	metrics  *milter.Metrics
	server   *milter.Server
	listener net.Listener
	address  milter.Address
	http     *http.Server

	mu       sync.Mutex
	policy   *policy.Policy
	serveErr chan error
	sigs     chan os.Signal // caught from start on

	// listsRefused are the list files as they were when rebuilding the
	// policy from them failed: the watcher waits for them to change again
	// rather than fail (and log) at every check.
	listsRefused policy.FileStamps
}

func (d *daemon) start(p *policy.Policy) error {
	d.level = new(slog.LevelVar)
	d.level.Set(parseLevel(p.LogLevel))
	d.log = newLogger(d.stderr, p.LogFormat, d.level)
	if p.Syslog != nil {
		w, err := dialSyslog(p.Syslog, milter.RateLimited(d.log, milter.DefaultLogInterval))
		if err != nil {
			return err
		}
		d.syslog = w
		d.log = slog.New(slog.NewMultiHandler(d.log.Handler(), newSyslogHandler(w, p.LogFormat, d.level)))
	}
	d.registry = prometheus.NewRegistry()
	d.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "tollgate", Name: "syslog_dropped_total",
		Help: "Log lines not sent to syslog (log.syslog): the queue was full or the syslog daemon did not take them; standard error has them."},
		func() float64 {
			if d.syslog == nil {
				return 0
			}
			return float64(d.syslog.Dropped())
		}))
	d.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	crypto, whyNotOpenSSL := sigcrypto.Default()
	cryptoAttrs := []any{"crypto", crypto.Name(), "library", crypto.Library()}
	if whyNotOpenSSL != nil {
		cryptoAttrs = append(cryptoAttrs, "why", whyNotOpenSSL.Error())
	}
	d.log.Info("signature crypto", cryptoAttrs...)
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "tollgate", Name: "build_info",
		Help: "Version of the running tollgate; crypto is the library that signs and verifies (openssl or go)."},
		[]string{"version", "goversion", "crypto"})
	buildInfo.WithLabelValues(version, runtime.Version(), crypto.Name()).Set(1)
	d.registry.MustRegister(buildInfo)
	// Modules warn per message while a backend is down: one line per kind of
	// trouble and interval is enough, the summary lines keep the facts.
	d.env = policy.NewEnv(milter.RateLimited(d.log, milter.DefaultLogInterval), d.registry)
	d.env.Serving = true
	d.metrics = d.env.Metrics
	d.policy = p
	rt, err := d.env.Runtime(p)
	if err != nil {
		return err
	}
	d.server = milter.NewServer(rt, milter.ServerOptions{Logger: d.log, Metrics: d.metrics, Limits: p.Limits})
	d.metrics.ConfigLastReload.SetToCurrentTime()
	d.metrics.ConfigLastOK.Set(1)

	d.address = p.Listen
	if d.listenFlag != "" {
		a, err := milter.ParseAddress(d.listenFlag)
		if err != nil {
			return fmt.Errorf("--listen: %w", err)
		}
		d.address = a
	}
	ln, err := milter.Listen(d.address, p.Socket)
	if err != nil {
		return fmt.Errorf("milter socket: %w", err)
	}
	d.listener = ln

	metricsAddr := p.MetricsListen
	if d.metricsFlag != "" {
		metricsAddr = d.metricsFlag
	}
	if metricsAddr != "off" {
		mln, err := net.Listen("tcp", metricsAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("metrics_listen: %w", err)
		}
		d.http = &http.Server{Handler: d.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := d.http.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.log.Error("metrics endpoint stopped", "err", err)
			}
		}()
		metricsAddr = mln.Addr().String()
	}
	// Signals are caught before anyone can know the daemon is up: a SIGHUP
	// sent right after "tollgate started" must reload, not kill it.
	d.sigs = make(chan os.Signal, 4)
	signal.Notify(d.sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	d.serveErr = make(chan error, 1)
	go func() { d.serveErr <- d.server.Serve(ln) }()
	attrs := []any{"version", version, "config", d.configPath, "listen", listenerName(d.address, ln),
		"metrics", metricsAddr, "on_error", p.OnError.Verdict.String()}
	if p.Monitor.On {
		attrs = append(attrs, "mode", "monitor")
	}
	if p.Syslog != nil {
		attrs = append(attrs, "syslog", p.Syslog.FacilityName)
	}
	d.log.Info("tollgate started", attrs...)
	return nil
}

func listenerName(a milter.Address, ln net.Listener) string {
	if a.Network == "tcp" {
		return "inet:" + ln.Addr().String()
	}
	return a.String()
}

func (d *daemon) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(d.registry, promhttp.HandlerOpts{Registry: d.registry}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if d.server.Draining() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// wait serves until SIGTERM or SIGINT, reloading on SIGHUP and when a list
// file changes. Both happen here, one at a time.
func (d *daemon) wait() int {
	sigs := d.sigs
	defer signal.Stop(sigs)
	var watch listWatch
	defer watch.stop()
	for {
		watch.set(d.policy.ListsCheckInterval)
		select {
		case err := <-d.serveErr:
			d.log.Error("milter server stopped", "err", err)
			d.cleanup()
			d.closeSyslog()
			return 1
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				d.reload()
				continue
			}
			return d.shutdown(sigs)
		case <-watch.tick():
			d.reloadLists()
		}
	}
}

// listWatch is the ticker of lists_check_interval, changed by a reload.
type listWatch struct {
	every  time.Duration
	ticker *time.Ticker
}

func (w *listWatch) set(every time.Duration) {
	if every == w.every {
		return
	}
	w.stop()
	w.every = every
	if every > 0 {
		w.ticker = time.NewTicker(every)
	}
}

// tick is nil, a channel that never delivers, when the watch is off.
func (w *listWatch) tick() <-chan time.Time {
	if w.ticker == nil {
		return nil
	}
	return w.ticker.C
}

func (w *listWatch) stop() {
	if w.ticker != nil {
		w.ticker.Stop()
		w.ticker = nil
	}
}

// reloadLists rebuilds the policy in use from the same configuration when a
// file of its lists or lookups changed, and swaps it in as a reload does; a
// file that cannot be read or has a bad line keeps the policy (and so the
// old contents) in use, with one error line and tollgate_list_reloads_total.
func (d *daemon) reloadLists() {
	d.mu.Lock()
	p := d.policy
	d.mu.Unlock()
	changed, now := p.Changed()
	if changed == nil || now.Equal(d.listsRefused) {
		return
	}
	next, err := p.Reread()
	var rt *policy.Runtime
	if err == nil {
		rt, err = d.env.Runtime(next)
	}
	if err != nil {
		d.listsRefused = now
		d.metrics.ListReloads.WithLabelValues("error").Inc()
		// The Env's logger is rate-limited: an editor saving a broken file
		// many times a minute makes one line and a count.
		d.env.Log.Error("list files changed but the policy cannot be rebuilt from them; the previous contents stay in use",
			"files", changed.Paths(), "errors", errorLines(err))
		return
	}
	d.listsRefused = nil
	d.mu.Lock()
	d.policy = next
	d.mu.Unlock()
	d.server.SetRuntime(rt)
	d.metrics.ListReloads.WithLabelValues("ok").Inc()
	d.log.Info("list files changed; policy rebuilt", "files", changed.Paths())
}

func errorLines(err error) []string {
	var list policy.ErrorList
	if !errors.As(err, &list) {
		return []string{err.Error()}
	}
	out := make([]string, len(list))
	for i, e := range list {
		out[i] = e.Error()
	}
	return out
}

// reload builds the new configuration beside the old one and swaps it in only
// when it is valid; sessions already open keep the one they started with.
func (d *daemon) reload() {
	p, err := policy.LoadFile(d.configPath, features...)
	var rt *policy.Runtime
	if err == nil {
		rt, err = d.env.Runtime(p)
	}
	if err != nil {
		d.metrics.ConfigReloads.WithLabelValues("failure").Inc()
		d.metrics.ConfigLastOK.Set(0)
		d.log.Error("configuration reload refused; the previous configuration stays in use", "config", d.configPath, "errors", errorLines(err))
		return
	}
	d.listsRefused = nil
	d.mu.Lock()
	old := d.policy
	d.policy = p
	d.mu.Unlock()
	if p.HasListen && p.Listen != old.Listen && d.listenFlag == "" || p.MetricsListen != old.MetricsListen && d.metricsFlag == "" {
		d.log.Warn("listen addresses changed in the configuration; they take effect on restart")
	}
	if !sameSyslog(p.Syslog, old.Syslog) || p.LogFormat != old.LogFormat {
		d.log.Warn("log.syslog, log.syslog_address and log.format changed in the configuration; they take effect on restart")
	}
	d.level.Set(parseLevel(p.LogLevel))
	d.server.SetLimits(p.Limits)
	d.server.SetRuntime(rt)
	d.metrics.ConfigReloads.WithLabelValues("success").Inc()
	// Only here: a refused reload changes nothing in use, so "last reload"
	// keeps meaning "when the configuration now serving was loaded".
	d.metrics.ConfigLastReload.SetToCurrentTime()
	d.metrics.ConfigLastOK.Set(1)
	if p.Monitor.On != old.Monitor.On {
		mode := "enforce"
		if p.Monitor.On {
			mode = "monitor"
		}
		d.log.Info("configuration reloaded", "config", d.configPath, "mode", mode)
		return
	}
	d.log.Info("configuration reloaded", "config", d.configPath)
}

// shutdown drains: no new connections, sessions in flight get the drain time
// to finish; a second SIGTERM or SIGINT stops at once. A SIGHUP (logrotate)
// during the drain changes nothing: reloading a configuration no new session
// will use is pointless, and cutting the drain for it loses mail.
func (d *daemon) shutdown(sigs <-chan os.Signal) int {
	d.mu.Lock()
	drain := d.policy.DrainTimeout
	d.mu.Unlock()
	d.log.Info("shutting down", "active_sessions", d.server.ActiveSessions(), "drain_timeout", drain.String())
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	go func() {
		for {
			select {
			case sig := <-sigs:
				if sig == syscall.SIGHUP {
					d.log.Info("SIGHUP ignored while draining", "active_sessions", d.server.ActiveSessions())
					continue
				}
				d.log.Warn("second signal: closing remaining sessions now", "signal", sig.String())
				cancel()
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	err := d.server.Shutdown(ctx)
	if err != nil {
		d.log.Warn("drain time over; remaining sessions were closed", "err", err)
	}
	d.cleanup()
	d.env.Close()
	d.log.Info("stopped")
	d.closeSyslog()
	return 0
}

// closeSyslog sends what is queued for syslog and closes its socket.
func (d *daemon) closeSyslog() {
	if d.syslog != nil {
		d.syslog.Close()
	}
}

func sameSyslog(a, b *policy.Syslog) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func (d *daemon) cleanup() {
	if d.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		d.http.Shutdown(ctx)
		cancel()
	}
	if d.address.Network == "unix" {
		os.Remove(d.address.Addr)
	}
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}

func newLogger(w io.Writer, format string, level slog.Leveler) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
