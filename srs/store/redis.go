package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Redis defaults.
const (
	DefaultRedisAddr     = "127.0.0.1:6379"
	DefaultRedisPrefix   = "tollgate:srs:"
	DefaultRedisTimeout  = time.Second // dial, read and write, each
	DefaultRedisPoolSize = 8
)

// RedisOptions configures the Redis store. Zero values mean the defaults.
type RedisOptions struct {
	// Addr is host:port ("127.0.0.1:6379", "[::1]:6379",
	// "redis.example:6379") or unix:/path/to/redis.sock. Default
	// 127.0.0.1:6379.
	Addr string

	// Username and Password: AUTH after connecting, if Password is set;
	// with a Username, the Redis 6 ACL form (AUTH user pass).
	Username string
	Password string

	// DB is the database number (SELECT), default 0.
	DB int

	// Prefix is put before every key, default "tollgate:srs:", so that the
	// SRS keys of several daemons (sharing a Redis) are one namespace that
	// no other application's keys run into.
	Prefix string

	// DialTimeout, ReadTimeout and WriteTimeout bound each step of a
	// command (default 1 s each); the caller's context can only shorten
	// them. A Redis that is down or hung costs a caller at most about
	// their sum, twice if all PoolSize connections are busy.
	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration

	// PoolSize is the most connections open at once (default 8); idle ones
	// are kept for reuse. A command waits for a free connection no longer
	// than the three timeouts together.
	PoolSize int
}

// Redis is the shared store: a small RESP2 client for SET ... PX ... NX and
// GET, with a pool of connections, safe for concurrent use. Several tollgate
// daemons (behind several MTAs) pointed at one Redis reverse each other's
// addresses. Entries expire in Redis itself (PX).
//
// A Redis that is down, hung or refusing our credentials makes Put and Get
// return an error wrapping ErrUnavailable within the timeouts; every command
// dials again as needed, so the client recovers by itself when Redis comes
// back. A connection that fails is closed, never reused; after a failure on a
// reused idle connection (Redis restarted since) the command is tried once
// more on a new one.
type Redis struct {
	o                RedisOptions
	network, address string
	slots            chan struct{} // one per connection allowed open

	mu     sync.Mutex
	idle   []*redisConn
	closed bool
}

var _ Store = (*Redis)(nil)

type redisConn struct {
	nc     net.Conn
	br     *bufio.Reader
	wbuf   []byte
	broken bool // the context's AfterFunc ran: its deadline may hit later
}

// NewRedis checks o and returns a client without connecting: the first
// command dials, so tollgate starts while Redis may be down (commands then
// fail with ErrUnavailable until it is up); Ping checks the connection and
// credentials.
func NewRedis(o RedisOptions) (*Redis, error) {
	if o.Addr == "" {
		o.Addr = DefaultRedisAddr
	}
	if o.Prefix == "" {
		o.Prefix = DefaultRedisPrefix
	}
	if o.PoolSize == 0 {
		o.PoolSize = DefaultRedisPoolSize
	}
	for _, d := range []*time.Duration{&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout} {
		if *d == 0 {
			*d = DefaultRedisTimeout
		}
	}
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("srs store: redis: "+format, a...)) }
	r := &Redis{o: o}
	if path, ok := strings.CutPrefix(o.Addr, "unix:"); ok {
		r.network, r.address = "unix", path
		if path == "" {
			bad("address %q: no socket path after unix:", o.Addr)
		}
	} else {
		r.network, r.address = "tcp", o.Addr
		host, port, err := net.SplitHostPort(o.Addr)
		if err != nil {
			bad("address %q: want host:port or unix:/path", o.Addr)
		} else if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 || host == "" {
			bad("address %q: want host:port with a port from 1 to 65535", o.Addr)
		}
	}
	if o.DB < 0 {
		bad("db %d: must not be negative", o.DB)
	}
	if o.Username != "" && o.Password == "" {
		bad("username %q without a password", o.Username)
	}
	if o.PoolSize < 0 {
		bad("pool size %d: must be positive", o.PoolSize)
	}
	if o.DialTimeout < 0 || o.ReadTimeout < 0 || o.WriteTimeout < 0 {
		bad("timeouts must be positive")
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	r.slots = make(chan struct{}, o.PoolSize)
	return r, nil
}

// Addr returns the address as configured.
func (r *Redis) Addr() string { return r.o.Addr }

// Ping checks that Redis answers (PING): nil or an error wrapping
// ErrUnavailable. For health checks.
func (r *Redis) Ping(ctx context.Context) error {
	v, err := r.do(ctx, "PING")
	if err != nil {
		return err
	}
	if v.kind != '+' || v.str != "PONG" {
		return r.replyErr("PING", v)
	}
	return nil
}

// Put stores addr under Prefix+key for ttl (rounded up to a millisecond)
// with SET key addr PX ttl NX: ErrKeyExists if the key is in use.
func (r *Redis) Put(ctx context.Context, key, addr string, ttl time.Duration) error {
	if err := checkPut(key, ttl); err != nil {
		return err
	}
	ms := int64(ttl / time.Millisecond)
	if ttl%time.Millisecond != 0 {
		ms++
	}
	v, err := r.do(ctx, "SET", r.o.Prefix+key, addr, "PX", strconv.FormatInt(ms, 10), "NX")
	switch {
	case err != nil:
		return err
	case v.kind == '+' && v.str == "OK":
		return nil
	case v.kind == '$' && v.null:
		return ErrKeyExists
	}
	return r.replyErr("SET", v)
}

// Get returns the address under Prefix+key (GET): ErrNotFound if there is
// none (never stored, or expired in Redis).
func (r *Redis) Get(ctx context.Context, key string) (string, error) {
	if key == "" || len(key) > maxKeyLen {
		return "", ErrNotFound
	}
	v, err := r.do(ctx, "GET", r.o.Prefix+key)
	switch {
	case err != nil:
		return "", err
	case v.kind == '$' && v.null:
		return "", ErrNotFound
	case v.kind == '$':
		return v.str, nil
	}
	return "", r.replyErr("GET", v)
}

// Close closes the idle connections and makes every later command fail with
// ErrUnavailable; connections in use are closed when their command ends.
func (r *Redis) Close() error {
	r.mu.Lock()
	idle := r.idle
	r.idle, r.closed = nil, true
	r.mu.Unlock()
	for _, c := range idle {
		c.nc.Close()
	}
	return nil
}

// redisError is an error reply (-ERR ..., -WRONGPASS ..., -OOM ...).
type redisError string

func (e redisError) Error() string { return string(e) }

func (r *Redis) unavailable(err error) error {
	return fmt.Errorf("%w: redis %s: %w", ErrUnavailable, r.o.Addr, err)
}

// replyErr: Redis answered, but not as it should: an error reply (out of
// memory, a read-only replica, a key of another type) or a reply of the wrong
// kind. Neither is the caller's fault; both are for an operator, and
// temporary for mail.
func (r *Redis) replyErr(cmd string, v reply) error {
	if v.kind == '-' {
		return r.unavailable(fmt.Errorf("%s: %w", cmd, redisError(v.str)))
	}
	return r.unavailable(fmt.Errorf("%s: %w: unexpected reply type %q", cmd, errProtocol, v.kind))
}

var errClosed = errors.New("client closed")

// do runs one command on a pooled connection. It returns the reply, which
// may be an error reply, or an error wrapping ErrUnavailable.
func (r *Redis) do(ctx context.Context, args ...string) (reply, error) {
	if err := ctx.Err(); err != nil {
		return reply{}, r.unavailable(err)
	}
	if err := r.acquire(ctx); err != nil {
		return reply{}, r.unavailable(err)
	}
	defer func() { <-r.slots }()
	for attempt := 0; ; attempt++ {
		c, reused, err := r.conn(ctx)
		if err != nil {
			return reply{}, r.unavailable(err)
		}
		v, err := c.roundTrip(ctx, &r.o, args...)
		if err == nil && !c.broken {
			r.release(c)
			return v, nil
		}
		c.nc.Close()
		if err == nil {
			return v, nil
		}
		if reused && attempt == 0 && stale(err) && ctx.Err() == nil {
			// Redis closed this idle connection (restart, idle timeout):
			// so, most likely, all the idle ones. Try once on a new one.
			r.dropIdle()
			continue
		}
		return reply{}, r.unavailable(err)
	}
}

// acquire takes a connection slot, waiting no longer than the timeouts
// together (a connection in use frees its slot within them).
func (r *Redis) acquire(ctx context.Context) error {
	select {
	case r.slots <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(r.o.DialTimeout + r.o.WriteTimeout + r.o.ReadTimeout)
	defer t.Stop()
	select {
	case r.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("all %d connections busy", cap(r.slots))
	}
}

// conn returns an idle connection (reused true) or a new one.
func (r *Redis) conn(ctx context.Context) (*redisConn, bool, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, false, errClosed
	}
	if n := len(r.idle); n > 0 {
		c := r.idle[n-1]
		r.idle = r.idle[:n-1]
		r.mu.Unlock()
		return c, true, nil
	}
	r.mu.Unlock()
	c, err := r.dial(ctx)
	return c, false, err
}

func (r *Redis) release(c *redisConn) {
	r.mu.Lock()
	if !r.closed {
		r.idle = append(r.idle, c)
		c = nil
	}
	r.mu.Unlock()
	if c != nil {
		c.nc.Close()
	}
}

func (r *Redis) dropIdle() {
	r.mu.Lock()
	idle := r.idle
	r.idle = nil
	r.mu.Unlock()
	for _, c := range idle {
		c.nc.Close()
	}
}

// dial connects, then AUTH and SELECT as configured.
func (r *Redis) dial(ctx context.Context) (*redisConn, error) {
	d := net.Dialer{Timeout: r.o.DialTimeout}
	nc, err := d.DialContext(ctx, r.network, r.address)
	if err != nil {
		return nil, err
	}
	c := &redisConn{nc: nc, br: bufio.NewReaderSize(nc, maxLine)}
	var steps [][]string
	switch {
	case r.o.Username != "":
		steps = append(steps, []string{"AUTH", r.o.Username, r.o.Password})
	case r.o.Password != "":
		steps = append(steps, []string{"AUTH", r.o.Password})
	}
	if r.o.DB != 0 {
		steps = append(steps, []string{"SELECT", strconv.Itoa(r.o.DB)})
	}
	for _, args := range steps {
		v, err := c.roundTrip(ctx, &r.o, args...)
		if err == nil && (v.kind != '+' || v.str != "OK") {
			// Name the command, never its arguments: one is the password.
			if v.kind == '-' {
				err = fmt.Errorf("%s: %w", args[0], redisError(v.str))
			} else {
				err = fmt.Errorf("%s: %w: unexpected reply type %q", args[0], errProtocol, v.kind)
			}
		}
		if err == nil && c.broken {
			err = ctx.Err()
		}
		if err != nil {
			nc.Close()
			return nil, err
		}
	}
	return c, nil
}

// aLongTimeAgo is a deadline in the past: it wakes a blocked read or write.
var aLongTimeAgo = time.Unix(1, 0)

// roundTrip writes one command and reads its reply, each step under its
// timeout and the context's deadline; cancelling the context interrupts it.
func (c *redisConn) roundTrip(ctx context.Context, o *RedisOptions, args ...string) (reply, error) {
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(aLongTimeAgo) })
	v, err := c.exchange(ctx, o, args)
	if !stop() {
		// The context ended during the exchange: the deadline was or will
		// be set in the past at any moment, so the connection is done for.
		c.broken = true
	}
	if err != nil {
		// Say why, when it was the context: its deadline, set on the
		// socket, may fire before the context's own timer.
		cerr := ctx.Err()
		if dl, ok := ctx.Deadline(); cerr == nil && ok && !time.Now().Before(dl) {
			cerr = context.DeadlineExceeded
		}
		if cerr != nil {
			err = fmt.Errorf("%w (%w)", cerr, err)
		}
	}
	return v, err
}

func (c *redisConn) exchange(ctx context.Context, o *RedisOptions, args []string) (reply, error) {
	c.wbuf = appendCommand(c.wbuf[:0], args...)
	if cap(c.wbuf) > 64<<10 {
		defer func() { c.wbuf = nil }()
	}
	c.nc.SetWriteDeadline(deadline(ctx, o.WriteTimeout))
	if _, err := c.nc.Write(c.wbuf); err != nil {
		return reply{}, err
	}
	c.nc.SetReadDeadline(deadline(ctx, o.ReadTimeout))
	return readReply(c.br)
}

// deadline is now+d, or the context's deadline if sooner.
func deadline(ctx context.Context, d time.Duration) time.Time {
	t := time.Now().Add(d)
	if dl, ok := ctx.Deadline(); ok && dl.Before(t) {
		return dl
	}
	return t
}

// stale reports whether err is what a connection that the server closed
// while it sat idle gives (Redis restarted, or its idle timeout): the command
// was almost surely not run. Trying again is harmless for GET; for SET NX the
// worst case (the first try did run) is ErrKeyExists, which DB.Forward
// answers with a new key. Never a timeout: a hung Redis would double the
// wait.
func stale(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
