package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	gomilter "github.com/d--j/go-milter"
)

// subject is a milter being measured: a target, or a null milter baseline.
type subject struct {
	Name       string   `json:"name"`
	Baseline   bool     `json:"baseline"`
	Address    string   `json:"address"`
	Command    []string `json:"command,omitempty"`
	Protocol   string   `json:"negotiated_protocol"`
	Actions    string   `json:"negotiated_actions"`
	InProcess  bool     `json:"in_process,omitempty"`
	protoBits  gomilter.OptProtocol
	actionBits gomilter.OptAction
	network    string
	addr       string
	child      *child
	null       *nullServer
}

func (s *subject) stop() error {
	var err error
	if s.child != nil {
		err = s.child.stop()
	}
	if s.null != nil {
		err = errors.Join(err, s.null.Close())
	}
	return err
}

// probe opens one session to learn what the milter negotiates.
func probe(network, addr string, timeout time.Duration) (gomilter.OptProtocol, gomilter.OptAction, error) {
	s, err := newClient(network, addr, timeout).Session(nil)
	if err != nil {
		return 0, 0, err
	}
	defer s.Close()
	var p gomilter.OptProtocol
	var a gomilter.OptAction
	for bit := 0; bit < 32; bit++ {
		if s.ProtocolOption(gomilter.OptProtocol(1 << bit)) {
			p |= gomilter.OptProtocol(1 << bit)
		}
		if s.ActionOption(gomilter.OptAction(1 << bit)) {
			a |= gomilter.OptAction(1 << bit)
		}
	}
	return p, a, nil
}

func describeProtocol(p gomilter.OptProtocol) string {
	if p == 0 {
		return "none (every event, a reply to each)"
	}
	return strings.ReplaceAll(p.String(), "Opt", "")
}

func describeActions(a gomilter.OptAction) string {
	if a == 0 {
		return "none"
	}
	return strings.ReplaceAll(a.String(), "Opt", "")
}

// benchRun holds what runBench sets up.
type benchRun struct {
	o        *options
	tmp      string
	subjects []*subject
	msgs     []*message
	log      io.Writer
	// nullInProcess runs baselines inside the bench (tests; no CPU or RSS figures).
	nullInProcess bool
}

// runBench runs every subject under every concurrency level for the rounds
// asked and builds the report.
func runBench(ctx context.Context, o *options, log io.Writer) (*Report, error) {
	return (&benchRun{o: o, log: log}).run(ctx)
}

func (b *benchRun) run(ctx context.Context) (rep *Report, err error) {
	o := b.o
	if o.corpus != "" {
		if b.msgs, err = loadCorpus(o.corpus); err != nil {
			return nil, err
		}
	} else {
		b.msgs = []*message{generateMessage(o.size, o.headers)}
	}
	if b.tmp, err = os.MkdirTemp("", "tollgate-bench-"); err != nil {
		return nil, err
	}
	defer os.RemoveAll(b.tmp)
	defer func() {
		for _, s := range b.subjects {
			if serr := s.stop(); serr != nil {
				fmt.Fprintf(b.log, "tollgate-bench: %s: %v\n", s.Name, serr)
			}
		}
	}()

	var targets []*subject
	for i, spec := range o.subjects {
		s, err := b.startTarget(ctx, i, spec)
		if s != nil {
			b.subjects = append(b.subjects, s)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", spec.label, err)
		}
		targets = append(targets, s)
	}
	network := "unix"
	if len(targets) > 0 {
		network = targets[0].network
	}
	var baselines []*subject
	for _, p := range o.baselineProtocols {
		if p != "mirror" {
			proto, _ := parseProtocol(p)
			s, err := b.startNull(ctx, "null("+p+")", network, proto, 0)
			if s != nil {
				b.subjects = append(b.subjects, s)
			}
			if err != nil {
				return nil, err
			}
			baselines = append(baselines, s)
			continue
		}
		mirrored := map[[2]uint32]bool{}
		for _, t := range targets {
			key := [2]uint32{uint32(t.protoBits), uint32(t.actionBits)}
			if mirrored[key] {
				continue // one null milter per distinct negotiation
			}
			mirrored[key] = true
			s, err := b.startNull(ctx, "null(mirror "+t.Name+")", network, t.protoBits, t.actionBits)
			if s != nil {
				b.subjects = append(b.subjects, s)
			}
			if err != nil {
				return nil, err
			}
			baselines = append(baselines, s)
		}
	}
	order := append(baselines, targets...)

	rep = newReport(o, b.msgs, order)
	for _, c := range o.concurrency {
		level := Level{Concurrency: c}
		rounds := make([][]*Result, len(order))
		for r := 0; r < o.rounds; r++ {
			for i, s := range order {
				if ctx.Err() != nil {
					return rep, ctx.Err()
				}
				res, err := b.measure(ctx, s, c)
				if err != nil {
					return rep, fmt.Errorf("%s at concurrency %d: %w", s.Name, c, err)
				}
				rounds[i] = append(rounds[i], res)
				fmt.Fprintf(b.log, "concurrency %d round %d %s: %.0f msg/s, p99 %.2f ms, %d messages, %d failed\n",
					c, r+1, s.Name, res.MessagesPerSec, res.Latency["message"].P99, res.Messages, res.Outcomes["error"])
			}
		}
		for i, s := range order {
			level.Results = append(level.Results, summarizeSubject(s, rounds, i, order))
		}
		rep.Levels = append(rep.Levels, level)
	}
	return rep, nil
}

func (b *benchRun) loadSpec(s *subject, concurrency, messages int, duration time.Duration) loadSpec {
	o := b.o
	return loadSpec{
		network: s.network, addr: s.addr, concurrency: concurrency,
		messages: messages, duration: duration, perSession: o.perSession, timeout: o.timeout, msgs: b.msgs,
		env: envelope{from: o.from, rcpt: o.rcpt, rcpts: o.rcpts, client: o.client, clientName: o.clientName,
			helo: o.helo, login: o.login, macros: o.macros},
	}
}

// measure warms a subject up and then measures it once.
func (b *benchRun) measure(ctx context.Context, s *subject, concurrency int) (*Result, error) {
	if s.child != nil && !s.child.running() {
		return nil, fmt.Errorf("the milter exited (%v)", s.child.waitErr)
	}
	if b.o.warmup > 0 {
		w := runLoad(ctx, b.loadSpec(s, concurrency, b.o.warmup, b.o.duration))
		if w.Messages > 0 && w.Outcomes["error"] == w.Messages {
			return nil, fmt.Errorf("warm-up: every message failed: %s", w.FirstError)
		}
	}
	var before, after, idle procSnapshot
	var cumulative bool
	if s.child != nil {
		cumulative = !resetPeakRSS(s.child.pid())
		idle = b.snapshot(s)
		before = b.snapshot(s) // idle..before is the cost of one scrape
	}
	res := runLoad(ctx, b.loadSpec(s, concurrency, b.o.messages, b.o.duration))
	if s.child != nil {
		after = b.snapshot(s)
		ps := &ProcessStats{CPUSeconds: after.cpu - before.cpu, PeakRSSCumulative: cumulative}
		if res.Messages > 0 {
			ps.CPUPerMsg = ps.CPUSeconds * 1000 / float64(res.Messages)
		}
		if rss, err := peakRSS(s.child.pid()); err == nil {
			ps.PeakRSSMiB = float64(rss) / (1 << 20)
		}
		if after.scraped && before.scraped && idle.scraped && res.Messages > 0 {
			scrape := before.alloc - idle.alloc
			ps.AllocPerMsgKiB = max(after.alloc-before.alloc-scrape, 0) / float64(res.Messages) / 1024
			ps.MallocsPerMsg = max(after.mallocs-before.mallocs-(before.mallocs-idle.mallocs), 0) / float64(res.Messages)
		}
		res.Process = ps
	}
	return res, nil
}

func (b *benchRun) snapshot(s *subject) procSnapshot {
	var ps procSnapshot
	ps.cpu, _ = cpuSeconds(s.child.pid())
	if s.child.metrics != "" {
		a, m, err := scrapeGoMem(s.child.metrics)
		if err == nil {
			ps.alloc, ps.mallocs, ps.scraped = a, m, true
		} else {
			fmt.Fprintf(b.log, "tollgate-bench: %s: %v\n", s.Name, err)
		}
	}
	return ps
}

// startTarget starts (with --exec) and probes one target.
func (b *benchRun) startTarget(ctx context.Context, i int, spec subjectSpec) (*subject, error) {
	s := &subject{Name: spec.label}
	target := spec.target
	if len(spec.exec) > 0 {
		sock := filepath.Join(b.tmp, fmt.Sprintf("target%d.sock", i+1))
		metrics := ""
		if spec.metrics {
			var err error
			if metrics, err = freeLoopbackPort(); err != nil {
				return nil, err
			}
		}
		argv := make([]string, len(spec.exec))
		for j, a := range spec.exec {
			argv[j] = strings.NewReplacer("{socket}", sock, "{metrics}", metrics).Replace(a)
		}
		if target == "" {
			target = "unix:" + sock
		}
		network, addr, err := parseTarget(target)
		if err != nil {
			return nil, err
		}
		s.network, s.addr, s.Address, s.Command = network, addr, target, argv
		c, err := startChild(argv, b.o.execLog)
		if err != nil {
			return nil, err
		}
		c.metrics = metrics
		s.child = c
		if err := c.waitReady(ctx, network, addr, b.o.startupTimeout); err != nil {
			return s, err
		}
	} else {
		network, addr, err := parseTarget(target)
		if err != nil {
			return nil, err
		}
		s.network, s.addr, s.Address = network, addr, target
	}
	p, a, err := probe(s.network, s.addr, b.o.timeout)
	if err != nil {
		return s, fmt.Errorf("negotiation probe: %w", err)
	}
	s.protoBits, s.actionBits = p, a
	s.Protocol, s.Actions = describeProtocol(p), describeActions(a)
	return s, nil
}

// startNull starts a null milter baseline, as a child of the bench (or in
// process), on the same kind of socket as the targets.
func (b *benchRun) startNull(ctx context.Context, name, network string, proto gomilter.OptProtocol, actions gomilter.OptAction) (*subject, error) {
	s := &subject{Name: name, Baseline: true, network: network, protoBits: proto, actionBits: actions,
		Protocol: describeProtocol(proto), Actions: describeActions(actions)}
	if network == "unix" {
		s.addr = filepath.Join(b.tmp, fmt.Sprintf("null%d.sock", len(b.subjects)+1))
		s.Address = "unix:" + s.addr
	} else {
		addr, err := freeLoopbackPort()
		if err != nil {
			return nil, err
		}
		s.addr, s.Address = addr, "inet:"+addr
	}
	if b.nullInProcess {
		ln, err := listen(s.Address)
		if err != nil {
			return nil, err
		}
		s.null = startNull(ln, proto, actions)
		s.InProcess = true
	} else {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		metrics, err := freeLoopbackPort()
		if err != nil {
			return nil, err
		}
		s.Command = []string{exe, "null", "--listen", s.Address, "--protocol", fmt.Sprintf("%#x", uint32(proto)),
			"--actions", fmt.Sprintf("%#x", uint32(actions)), "--metrics-listen", metrics,
			"--max-time", (b.o.duration*time.Duration(b.o.rounds*len(b.o.concurrency)*(len(b.o.subjects)+len(b.o.baselineProtocols))) + time.Hour).String()}
		c, err := startChild(s.Command, b.o.execLog)
		if err != nil {
			return nil, err
		}
		c.metrics = metrics
		s.child = c
		if err := c.waitReady(ctx, s.network, s.addr, b.o.startupTimeout); err != nil {
			return s, err
		}
	}
	// What the null milter negotiated, as the MTA sees it.
	p, a, err := probe(s.network, s.addr, b.o.timeout)
	if err != nil {
		return s, fmt.Errorf("%s: negotiation probe: %w", name, err)
	}
	s.Protocol, s.Actions = describeProtocol(p), describeActions(a)
	return s, nil
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

func loopbackNote(network string) string {
	if network == "tcp" {
		return "inet (loopback)"
	}
	return network
}
