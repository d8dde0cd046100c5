package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
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

// Redis is the shared store, on github.com/redis/go-redis/v9: SET ... PX ...
// NX and GET over a pool of connections, safe for concurrent use. Several
// tollgate daemons (behind several MTAs) pointed at one Redis reverse each
// other's addresses. Entries expire in Redis itself (PX).
//
// A Redis that is down, hung or refusing our credentials makes Put and Get
// return an error wrapping ErrUnavailable within the timeouts; go-redis dials
// again as needed, so the client recovers by itself when Redis comes back,
// and it checks an idle connection before reusing it (Redis restarted since).
type Redis struct {
	o      RedisOptions
	c      *redis.Client
	closed atomic.Bool
}

var _ Store = (*Redis)(nil)

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
	network, address := "tcp", o.Addr
	if path, ok := strings.CutPrefix(o.Addr, "unix:"); ok {
		network, address = "unix", path
		if path == "" {
			bad("address %q: no socket path after unix:", o.Addr)
		}
	} else {
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
	db := o.DB
	c := redis.NewClient(&redis.Options{
		Network:      network,
		Addr:         address,
		Username:     o.Username,
		Password:     o.Password,
		DialTimeout:  o.DialTimeout,
		ReadTimeout:  o.ReadTimeout,
		WriteTimeout: o.WriteTimeout,
		PoolSize:     o.PoolSize,
		PoolTimeout:  o.DialTimeout + o.WriteTimeout + o.ReadTimeout,
		// RESP2: two commands need nothing of RESP3, whose features (push
		// notifications, client-side caching) only add state to the pool.
		Protocol: 2,
		// The caller's deadline shortens the socket deadlines.
		ContextTimeoutEnabled: true,
		// No retries: the pool checks an idle connection before reusing it
		// (Redis restarted since), and a retry would double the wait for a
		// hung Redis; mail is retried by the MTA after a 4xx.
		MaxRetries: -1,
		// One dial a command, no backoff sleeps: a Redis that is down is
		// answered at once. After PoolSize failed dials go-redis answers
		// with the last dial error without dialling, and probes once a
		// second until Redis is back.
		DialerRetries: 1,
		// Only SELECT here, so that its failure names the step (db 99);
		// go-redis itself does AUTH (HELLO, or AUTH on servers without it).
		OnConnect: func(ctx context.Context, cn *redis.Conn) error {
			if db == 0 {
				return nil
			}
			if err := cn.Select(ctx, db).Err(); err != nil {
				return selectError{err}
			}
			return nil
		},
		// No identity sent on connect (CLIENT SETINFO): one round trip less,
		// and nothing for an old server to refuse.
		DisableIdentity: true,
	})
	return &Redis{o: o, c: c}, nil
}

// selectError names the step that failed. It has no Unwrap on purpose:
// go-redis unwraps an OnConnect error once before returning it, which would
// drop the step's name.
type selectError struct{ err error }

func (e selectError) Error() string { return "SELECT: " + e.err.Error() }

func init() {
	// go-redis logs to stderr by itself (dial failures, pool states); every
	// failure reaches our callers as an error, which they log rate-limited.
	redis.SetLogger(silent{})
}

type silent struct{}

func (silent) Printf(context.Context, string, ...any) {}

// Addr returns the address as configured.
func (r *Redis) Addr() string { return r.o.Addr }

// Ping checks that Redis answers (PING): nil or an error wrapping
// ErrUnavailable. For health checks.
func (r *Redis) Ping(ctx context.Context) error {
	return r.run(ctx, "PING", func(ctx context.Context) error { return r.c.Ping(ctx).Err() })
}

// Put stores addr under Prefix+key for ttl (rounded up to a millisecond)
// with SET key addr PX ttl NX: ErrKeyExists if the key is in use.
func (r *Redis) Put(ctx context.Context, key, addr string, ttl time.Duration) error {
	if err := checkPut(key, ttl); err != nil {
		return err
	}
	ms := ttl / time.Millisecond
	if ttl%time.Millisecond != 0 {
		ms++
	}
	var stored bool
	err := r.run(ctx, "SET", func(ctx context.Context) error {
		// PX always (go-redis would write EX for whole seconds): the same
		// command whatever the ttl.
		res, err := r.c.Do(ctx, "SET", r.o.Prefix+key, addr, "PX", int64(ms), "NX").Result()
		if errors.Is(err, redis.Nil) {
			return nil
		}
		if err != nil {
			return err
		}
		if s, ok := res.(string); !ok || s != "OK" {
			return fmt.Errorf("unexpected reply %v", res)
		}
		stored = true
		return nil
	})
	switch {
	case err != nil:
		return err
	case !stored:
		return ErrKeyExists
	}
	return nil
}

// Get returns the address under Prefix+key (GET): ErrNotFound if there is
// none (never stored, or expired in Redis).
func (r *Redis) Get(ctx context.Context, key string) (string, error) {
	if key == "" || len(key) > maxKeyLen {
		return "", ErrNotFound
	}
	var addr string
	found := true
	err := r.run(ctx, "GET", func(ctx context.Context) error {
		v, err := r.c.Get(ctx, r.o.Prefix+key).Result()
		if errors.Is(err, redis.Nil) {
			found = false
			return nil
		}
		addr = v
		return err
	})
	switch {
	case err != nil:
		return "", err
	case !found:
		return "", ErrNotFound
	}
	return addr, nil
}

// Close closes the connections and makes every later command fail with
// ErrUnavailable.
func (r *Redis) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	return r.c.Close()
}

var errClosed = errors.New("client closed")

// run runs one command and maps its failure to ErrUnavailable. go-redis
// bounds a command by the timeouts and the context's deadline, but does not
// interrupt a socket read when the context is cancelled: run returns then,
// and the command ends by itself within its timeouts, holding its pool slot
// until then.
func (r *Redis) run(ctx context.Context, cmd string, op func(context.Context) error) error {
	if r.closed.Load() {
		return r.unavailable(cmd, errClosed)
	}
	if err := ctx.Err(); err != nil {
		return r.unavailable(cmd, err)
	}
	done := make(chan error, 1)
	go func() { done <- op(ctx) }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err == nil {
		return nil
	}
	// Say why, when it was the context: its deadline, set on the socket,
	// may fire before the context's own timer.
	cerr := ctx.Err()
	if dl, ok := ctx.Deadline(); cerr == nil && ok && !time.Now().Before(dl) {
		cerr = context.DeadlineExceeded
	}
	if cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("%w (%w)", cerr, err)
	}
	return r.unavailable(cmd, err)
}

// unavailable: Redis could not be reached, or answered with an error (out of
// memory, a read-only replica, a key of another type, refused credentials).
// None is the caller's fault; all are for an operator, and temporary for
// mail. go-redis's messages name no password.
func (r *Redis) unavailable(cmd string, err error) error {
	return fmt.Errorf("%w: redis %s: %s: %w", ErrUnavailable, r.o.Addr, cmd, err)
}
