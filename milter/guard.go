package milter

import (
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"syscall"
	"time"

	gomilter "github.com/d--j/go-milter"
)

// guardedListener is the listener go-milter's accept loop gets: it never
// hands go-milter a temporary accept error (go-milter's Serve would return
// and end the daemon), refuses connections over max_connections, and wraps
// every connection in the wire check.
type guardedListener struct {
	net.Listener
	guard *wireGuard
	sleep func(time.Duration) // time.Sleep; tests shorten it
}

func (l *guardedListener) Accept() (net.Conn, error) {
	s := l.guard.srv
	var delay time.Duration
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			if !temporaryAcceptError(err) {
				return nil, err
			}
			// As net/http: 5 ms doubling to 1 s, until the descriptors or
			// buffers the kernel ran out of are free again.
			if delay == 0 {
				delay = 5 * time.Millisecond
				s.warnLog.Warn("accepting MTA connections failed; retrying with back-off", "reason", "accept_error", "err", err)
			} else {
				delay = min(2*delay, time.Second)
			}
			s.metrics.AcceptErrors.Inc()
			l.sleep(delay)
			continue
		}
		if delay != 0 {
			s.log.Info("accepting MTA connections again")
			delay = 0
		}
		if max := s.limits().MaxConnections; max > 0 && l.guard.open.Load() >= int64(max) {
			conn.Close()
			s.limitHit(limitConnections, "too many MTA connections; new connection refused", "max_connections", max)
			continue
		}
		return l.guard.newConn(conn), nil
	}
}

// temporaryAcceptError reports an accept failure that passes by itself: out
// of descriptors (EMFILE, ENFILE), kernel memory, or a peer that left before
// accept (ECONNABORTED).
func temporaryAcceptError(err error) bool {
	// accept(2) on Linux: network errors of the connection being accepted
	// (EPROTO and the like) are to be retried as well.
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ECONNABORTED, syscall.ENOBUFS,
		syscall.ENOMEM, syscall.EINTR, syscall.EAGAIN, syscall.EPROTO, syscall.ENETDOWN, syscall.EHOSTUNREACH, syscall.ENETUNREACH} {
		if errors.Is(err, errno) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// guarded is the Milter go-milter calls: each callback recovers, so a panic in
// tollgate's pipeline ends this connection (the MTA applies its
// milter_default_action to that one SMTP session), never the daemon.
type guarded struct{ c *connection }

func (s *Server) recovered(where string, v any) {
	s.metrics.Panics.Inc()
	s.warnLog.Error("panic while serving an MTA connection; connection closed", "stage", where,
		"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
}

func (g guarded) catch(where string, err *error) {
	if v := recover(); v != nil {
		g.c.srv.recovered(where, v)
		*err = fmt.Errorf("milter: panic in %s: %v", where, v)
	}
}

func (g guarded) NewConnection(m gomilter.Modifier) (err error) {
	defer g.catch("new_connection", &err)
	return g.c.NewConnection(m)
}

func (g guarded) Connect(host, family string, port uint16, addr string, m gomilter.Modifier) (r *gomilter.Response, err error) {
	defer g.catch("connect", &err)
	return g.c.Connect(host, family, port, addr, m)
}

func (g guarded) Helo(name string, m gomilter.Modifier) (r *gomilter.Response, err error) {
	defer g.catch("helo", &err)
	return g.c.Helo(name, m)
}

func (g guarded) MailFrom(from, args string, m gomilter.Modifier) (r *gomilter.Response, err error) {
	defer g.catch("mail", &err)
	return g.c.MailFrom(from, args, m)
}

func (g guarded) RcptTo(to, args string, m gomilter.Modifier) (r *gomilter.Response, err error) {
	defer g.catch("rcpt", &err)
	return g.c.RcptTo(to, args, m)
}

func (g guarded) Data(m gomilter.Modifier) (r *gomilter.Response, err error) {
	defer g.catch("data", &err)
	return g.c.Data(m)
}

func (g guarded) Header(name, value string, m gomilter.Modifier) (r *gomilter.Response, err error) {
	defer g.catch("header", &err)
	return g.c.Header(name, value, m)
}

func (g guarded) Headers(m gomilter.Modifier) (r *gomilter.Response, err error) {
	defer g.catch("eoh", &err)
	return g.c.Headers(m)
}

func (g guarded) BodyChunk(chunk []byte, m gomilter.Modifier) (r *gomilter.Response, err error) {
	defer g.catch("body", &err)
	return g.c.BodyChunk(chunk, m)
}

func (g guarded) EndOfMessage(m gomilter.Modifier) (r *gomilter.Response, err error) {
	defer g.catch("eom", &err)
	return g.c.EndOfMessage(m)
}

func (g guarded) Abort(m gomilter.Modifier) (err error) {
	defer g.catch("abort", &err)
	return g.c.Abort(m)
}

func (g guarded) Unknown(cmd string, m gomilter.Modifier) (r *gomilter.Response, err error) {
	defer g.catch("unknown", &err)
	return g.c.Unknown(cmd, m)
}

func (g guarded) Cleanup(m gomilter.Modifier) {
	var err error
	defer g.catch("cleanup", &err)
	g.c.Cleanup(m)
}
