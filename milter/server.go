package milter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gomilter "github.com/d--j/go-milter"
)

// Server serves the milter protocol to any number of MTA connections. Each
// connection gets the Runtime current when it was negotiated.
type Server struct {
	log     *slog.Logger
	warnLog *slog.Logger // rate-limited: warnings that can repeat per packet, message or connection
	metrics *Metrics
	milter  *gomilter.Server
	lim     atomic.Pointer[Limits]

	mu       sync.Mutex
	current  Runtime
	previous Runtime // kept for connections negotiated just before a reload

	progressInterval time.Duration

	nextID   atomic.Uint64
	active   atomic.Int64
	draining atomic.Bool
}

// ServerOptions configures a Server.
type ServerOptions struct {
	Logger  *slog.Logger
	Metrics *Metrics
	// ProgressInterval is how often the MTA hears from tollgate while
	// end-of-message work waits on a backend (dccifd, a scanner); default
	// 10 s, well inside the MTAs' command timeouts.
	ProgressInterval time.Duration
	// Limits bound what one MTA peer can make the daemon hold; zero fields
	// get the defaults.
	Limits Limits
	// LogInterval is how often a repeating warning is summed up (default
	// DefaultLogInterval).
	LogInterval time.Duration
}

// NewServer creates a server that starts with rt.
func NewServer(rt Runtime, opts ServerOptions) *Server {
	s := &Server{log: opts.Logger, metrics: opts.Metrics, current: rt, progressInterval: opts.ProgressInterval}
	hold(rt)
	if s.progressInterval <= 0 {
		s.progressInterval = 10 * time.Second
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.warnLog = RateLimited(s.log, opts.LogInterval)
	s.SetLimits(opts.Limits)
	s.showMode(rt)
	setWarningSink(s)
	milterOpts := []gomilter.Option{
		gomilter.WithDynamicMilter(s.newConnection),
		gomilter.WithNegotiationCallback(s.negotiate),
	}
	for stage, names := range requestedMacros {
		milterOpts = append(milterOpts, gomilter.WithMacroRequest(macroStage(stage), names))
	}
	s.milter = gomilter.NewServer(milterOpts...)
	return s
}

func macroStage(s Stage) gomilter.MacroStage {
	switch s {
	case StageConnect:
		return gomilter.StageConnect
	case StageHelo:
		return gomilter.StageHelo
	case StageMail:
		return gomilter.StageMail
	case StageRcpt:
		return gomilter.StageRcpt
	}
	return gomilter.StageEOM
}

// SetRuntime swaps in a new configuration for connections that start from now on.
func (s *Server) SetRuntime(rt Runtime) {
	hold(rt)
	s.mu.Lock()
	retired := s.previous
	s.previous, s.current = s.current, rt
	s.mu.Unlock()
	if retired != nil {
		release(retired) // sessions that started with it still hold it
	}
	s.showMode(rt)
}

// showMode sets tollgate_monitor_mode for the configuration new connections get.
func (s *Server) showMode(rt Runtime) {
	if s.metrics == nil {
		return
	}
	v := 0.0
	if monitorOf(rt).On {
		v = 1
	}
	s.metrics.MonitorMode.Set(v)
}

// Runtime returns the configuration new connections get.
func (s *Server) Runtime() Runtime {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current
}

// SetLimits changes the limits; a connection open now gets the new ones from
// its next packet on.
func (s *Server) SetLimits(l Limits) {
	l = l.withDefaults()
	s.lim.Store(&l)
}

func (s *Server) limits() Limits { return *s.lim.Load() }

// limitHit counts a limit that was reached and says so, once per interval.
func (s *Server) limitHit(limit, msg string, attrs ...any) {
	s.metrics.LimitsHit.WithLabelValues(limit).Inc()
	s.warnLog.Warn(msg, append([]any{"limit", limit}, attrs...)...)
}

// Serve accepts MTA connections on ln until Shutdown. Temporary accept
// errors (out of file descriptors) never end it.
func (s *Server) Serve(ln net.Listener) error {
	err := s.milter.Serve(&guardedListener{Listener: ln, guard: &wireGuard{srv: s}, sleep: time.Sleep})
	if errors.Is(err, gomilter.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections and waits until the sessions in flight
// end or ctx expires; then the remaining ones are closed (their MTA applies its
// milter_default_action to what was in flight).
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	return s.milter.Shutdown(ctx)
}

// Draining reports whether Shutdown was called.
func (s *Server) Draining() bool { return s.draining.Load() }

// ActiveSessions is the number of MTA connections open now.
func (s *Server) ActiveSessions() int64 { return s.active.Load() }

func (s *Server) sessionDone() { s.active.Add(-1) }

// negotiate asks the MTA only for the events and changes the current
// configuration needs, and never for replies at stages where nothing decides.
func (s *Server) negotiate(mtaVersion, _ uint32, mtaActions, _ gomilter.OptAction, mtaProtocol, _ gomilter.OptProtocol, offered gomilter.DataSize) (uint32, gomilter.OptAction, gomilter.OptProtocol, gomilter.DataSize, error) {
	if mtaVersion < 2 {
		return 0, 0, 0, 0, fmt.Errorf("milter: MTA speaks milter protocol version %d, at least 2 is needed", mtaVersion)
	}
	version := min(mtaVersion, gomilter.MaxServerProtocolVersion)
	needs := RuntimeNeeds(s.Runtime())
	want := needs.Actions.milter()
	actions := want & mtaActions
	if actions != want {
		s.warnLog.Warn("the MTA does not allow every change this configuration makes; those changes will fail",
			"wanted", want.String(), "offered", mtaActions.String())
	}
	actions |= gomilter.OptSetMacros & mtaActions
	return version, actions, protocolFor(needs) & mtaProtocol, chunkSize(offered, s.limits().MaxPacket), nil
}

func protocolFor(n Needs) gomilter.OptProtocol {
	p := gomilter.OptNoUnknown | gomilter.OptNoData | gomilter.OptNoEOH |
		gomilter.OptNoHeaderReply | gomilter.OptNoBodyReply | gomilter.OptNoEOHReply |
		gomilter.OptNoDataReply | gomilter.OptNoUnknownReply
	if n.Headers {
		p |= gomilter.OptHeaderLeadingSpace
	} else {
		p |= gomilter.OptNoHeaders
	}
	if !n.Body {
		p |= gomilter.OptNoBody
	}
	noReply := map[Stage]gomilter.OptProtocol{
		StageConnect: gomilter.OptNoConnReply, StageHelo: gomilter.OptNoHeloReply,
		StageMail: gomilter.OptNoMailReply, StageRcpt: gomilter.OptNoRcptReply,
	}
	for stage, flag := range noReply {
		if !n.Reply[stage] {
			p |= flag
		}
	}
	return p
}

// fits reports whether a connection negotiated with actions and protocol can
// serve a runtime that needs n.
func fits(n Needs, actions gomilter.OptAction, protocol gomilter.OptProtocol) bool {
	if n.Headers && protocol&gomilter.OptNoHeaders != 0 || n.Body && protocol&gomilter.OptNoBody != 0 {
		return false
	}
	for stage, flag := range map[Stage]gomilter.OptProtocol{StageConnect: gomilter.OptNoConnReply,
		StageHelo: gomilter.OptNoHeloReply, StageMail: gomilter.OptNoMailReply, StageRcpt: gomilter.OptNoRcptReply} {
		if n.Reply[stage] && protocol&flag != 0 {
			return false
		}
	}
	want := n.Actions.milter()
	return want&actions == want
}

func (s *Server) newConnection(_ uint32, actions gomilter.OptAction, protocol gomilter.OptProtocol, _ gomilter.DataSize) gomilter.Milter {
	s.mu.Lock()
	rt, prev := s.current, s.previous
	// A reload between negotiation and here would leave the connection with
	// events the new configuration needs but did not ask for: then the
	// configuration it was negotiated for serves it.
	if !fits(RuntimeNeeds(rt), actions, protocol) && prev != nil && fits(RuntimeNeeds(prev), actions, protocol) {
		rt = prev
	}
	hold(rt) // under the lock: a reload cannot release it in between
	s.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	needs := RuntimeNeeds(rt)
	c := &connection{
		srv:          s,
		sess:         &Session{ID: s.nextID.Add(1), runtime: rt, Vars: map[string]string{}},
		ctx:          ctx,
		cancel:       cancel,
		protocol:     protocol,
		leadingSpace: protocol&gomilter.OptHeaderLeadingSpace != 0,
		keepHeaders:  needs.Headers,
		mon:          monitorState{mode: monitorOf(rt)},
	}
	for _, m := range rt.Modules() {
		_, h := m.(HeaderHook)
		_, b := m.(BodyHook)
		_, e := m.(EndOfHeadersHook)
		c.headerHooks = c.headerHooks || h
		c.bodyHooks = c.bodyHooks || b
		c.eohHooks = c.eohHooks || e
	}
	s.active.Add(1)
	s.metrics.SessionsActive.Inc()
	s.metrics.Sessions.Inc()
	return guarded{c}
}

// go-milter reports protocol trouble through a package-level function; it is
// pointed at the newest server once, and counted there.
var (
	warningSink     atomic.Pointer[Server]
	warningSinkOnce sync.Once
)

func setWarningSink(s *Server) {
	warningSink.Store(s)
	warningSinkOnce.Do(func() {
		gomilter.LogWarning = func(format string, v ...any) {
			if srv := warningSink.Load(); srv != nil {
				srv.metrics.ProtocolWarnings.Inc()
				// The format up to its first value is the kind of trouble;
				// the values (addresses, codes) would make every line a kind
				// of its own.
				kind := format
				if i := strings.IndexByte(format, '%'); i > 0 {
					kind = strings.TrimRight(format[:i], " :")
				}
				srv.warnLog.Warn("milter protocol: "+kind, "detail", fmt.Sprintf(format, v...))
			}
		}
	})
}
