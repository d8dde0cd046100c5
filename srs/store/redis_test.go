//go:build e2e

package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/e2e"
)

// The Redis tests run a real redis-server (Debian package redis-server) on
// a free loopback port and a unix socket, with a private directory and no
// persistence. A missing server fails them: CI installs it
// (scripts/install-test-deps.sh).

func init() {
	realRedis = func(t *testing.T) (Store, func()) {
		s := startRedis(t)
		return dialRedis(t, fast(s.Addr)), s.Stop
	}
}

// startRedis starts a private redis-server (internal/e2e), killed at the
// end of the test.
func startRedis(t testing.TB, extra ...string) *e2e.Redis { return e2e.StartRedis(t, extra...) }

func dialRedis(t testing.TB, o RedisOptions) *Redis {
	t.Helper()
	r, err := dialAndPing(o)
	if err != nil {
		t.Fatalf("dialAndPing(%s): %v", o.Addr, err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// dialRedisLater makes a client without connecting (NewRedis).
func dialRedisLater(t testing.TB, o RedisOptions) *Redis {
	t.Helper()
	r, err := NewRedis(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// raw runs a command as is (no prefix) and returns the reply.
func raw(t testing.TB, r *Redis, args ...string) reply {
	t.Helper()
	v, err := r.do(context.Background(), args...)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return v
}

func TestRedisBasics(t *testing.T) {
	s := startRedis(t)
	r := dialRedis(t, RedisOptions{Addr: s.Addr})
	storeBasics(t, r)

	// Keys live under the prefix, with Redis's own expiry.
	if v := raw(t, r, "GET", "tollgate:srs:abcdefghij"); v.str != "user@orig.example" {
		t.Errorf("raw GET under the default prefix: %+v", v)
	}
	if v := raw(t, r, "PTTL", "tollgate:srs:abcdefghij"); v.kind != ':' || v.n <= 0 || v.n > 3600_000 {
		t.Errorf("PTTL: %+v, want 1..3600000", v)
	}
	if v := raw(t, r, "GET", "abcdefghij"); !v.null {
		t.Errorf("a key outside the prefix: %+v", v)
	}

	// Another prefix is another namespace.
	other := dialRedis(t, RedisOptions{Addr: s.Addr, Prefix: "mx2:"})
	wantNotFound(t, other, "abcdefghij")
	mustPut(t, other, "abcdefghij", "someone@else.example", time.Hour)
	wantGet(t, other, "abcdefghij", "someone@else.example")
	wantGet(t, r, "abcdefghij", "user@orig.example")
	if v := raw(t, r, "GET", "mx2:abcdefghij"); v.str != "someone@else.example" {
		t.Errorf("raw GET under prefix mx2: %+v", v)
	}

	// The unix socket.
	unix := dialRedis(t, RedisOptions{Addr: "unix:" + s.Sock})
	wantGet(t, unix, "abcdefghij", "user@orig.example")
	if unix.Addr() != "unix:"+s.Sock {
		t.Errorf("Addr() = %q", unix.Addr())
	}

	// After Close: unavailable.
	unix.Close()
	if _, err := unix.Get(context.Background(), "abcdefghij"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Get after Close: %v", err)
	}
}

func TestRedisTTL(t *testing.T) {
	s := startRedis(t)
	r := dialRedis(t, RedisOptions{Addr: s.Addr})
	ctx := context.Background()

	mustPut(t, r, "onehalf", "a@one.example", 1500*time.Millisecond)
	if v := raw(t, r, "PTTL", DefaultRedisPrefix+"onehalf"); v.n <= 1000 || v.n > 1500 {
		t.Errorf("PTTL after a 1.5 s Put: %d ms", v.n)
	}
	// A ttl under a millisecond is rounded up, not sent as PX 0 (an error).
	if err := r.Put(ctx, "tiny", "a@b.example", time.Microsecond); err != nil {
		t.Errorf("Put with a 1 µs ttl: %v", err)
	}

	// Real expiry, short.
	mustPut(t, r, "brief", "b@two.example", 200*time.Millisecond)
	wantGet(t, r, "brief", "b@two.example")
	time.Sleep(300 * time.Millisecond)
	wantNotFound(t, r, "brief")
	mustPut(t, r, "brief", "c@three.example", time.Hour) // NX lets an expired key be used again
	wantGet(t, r, "brief", "c@three.example")

	// And the 1.5 s one, cut short with PEXPIRE rather than waited for.
	wantGet(t, r, "onehalf", "a@one.example")
	raw(t, r, "PEXPIRE", DefaultRedisPrefix+"onehalf", "1")
	time.Sleep(20 * time.Millisecond)
	wantNotFound(t, r, "onehalf")
}

func TestRedisAuthSelect(t *testing.T) {
	const pw = "s3cret pw"
	s := startRedis(t, "--requirepass", pw)

	_, err := dialAndPing(fast(s.Addr))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "NOAUTH") {
		t.Errorf("no password: %v", err)
	}
	o := fast(s.Addr)
	o.Password = "wrong"
	_, err = dialAndPing(o)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "WRONGPASS") || strings.Contains(err.Error(), "wrong") {
		t.Errorf("wrong password: %v (must say WRONGPASS, must not show the password)", err)
	}
	// Lazily: every command fails the same way.
	lazy, err := NewRedis(o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lazy.Get(context.Background(), "k"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("lazy client, wrong password: Get: %v", err)
	}
	lazy.Close()

	db3 := dialRedis(t, RedisOptions{Addr: s.Addr, Password: pw, DB: 3})
	mustPut(t, db3, "selected", "u@db3.example", time.Hour)
	db0 := dialRedis(t, RedisOptions{Addr: s.Addr, Password: pw})
	wantNotFound(t, db0, "selected")
	if v := raw(t, db3, "GET", DefaultRedisPrefix+"selected"); v.str != "u@db3.example" {
		t.Errorf("raw GET in db 3: %+v", v)
	}
	// The ACL form, AUTH user pass (Redis 6+), with the default user.
	acl := dialRedis(t, RedisOptions{Addr: "unix:" + s.Sock, Username: "default", Password: pw, DB: 3})
	wantGet(t, acl, "selected", "u@db3.example")

	o = fast(s.Addr)
	o.Password, o.DB = pw, 99
	if _, err := dialAndPing(o); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "SELECT") {
		t.Errorf("db 99: %v", err)
	}
}

func TestRedisConcurrent(t *testing.T) {
	s := startRedis(t)
	const pool, workers, each = 4, 16, 100
	r := dialRedis(t, RedisOptions{Addr: s.Addr, PoolSize: pool})
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			ctx := context.Background()
			for i := range each {
				key, addr := fmt.Sprintf("w%dk%d", w, i), fmt.Sprintf("u%d.%d@orig.example", w, i)
				if err := r.Put(ctx, key, addr, time.Minute); err != nil {
					errs <- err
					return
				}
				if got, err := r.Get(ctx, key); err != nil || got != addr {
					errs <- fmt.Errorf("Get(%s) = %q, %v", key, got, err)
					return
				}
				if _, err := r.Get(ctx, fmt.Sprintf("w%dk%d", (w+1)%workers, i)); err != nil && !errors.Is(err, ErrNotFound) {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	r.mu.Lock()
	idle := len(r.idle)
	r.mu.Unlock()
	if idle > pool {
		t.Errorf("%d idle connections, pool size %d", idle, pool)
	}
	// Redis counts our connections: the pool's, plus the one asking.
	info := raw(t, r, "INFO", "clients").str
	if n := infoInt(info, "connected_clients"); n < 1 || n > pool {
		t.Errorf("connected_clients = %d, want 1..%d\n%s", n, pool, info)
	}
	if v := raw(t, r, "DBSIZE"); v.n != workers*each {
		t.Errorf("DBSIZE = %d, want %d", v.n, workers*each)
	}
}

func infoInt(info, field string) int {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return -1
}

// wantUnavailable runs op and checks it fails with ErrUnavailable within
// limit.
func wantUnavailable(t testing.TB, what string, limit time.Duration, op func() error) error {
	t.Helper()
	start := time.Now()
	err := op()
	d := time.Since(start)
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotFound) {
		t.Errorf("%s: %v, want ErrUnavailable", what, err)
	}
	if d > limit {
		t.Errorf("%s took %v, more than %v", what, d, limit)
	}
	return err
}

func TestRedisDownAndBack(t *testing.T) {
	s := startRedis(t)
	r := dialRedis(t, fast(s.Addr))
	ctx := context.Background()
	mustPut(t, r, "before", "a@one.example", time.Hour)

	// Killed: refused at once, each time, never a hang.
	s.Stop()
	for i := range 3 {
		wantUnavailable(t, fmt.Sprintf("Get %d with Redis down", i), time.Second, func() error {
			_, err := r.Get(ctx, "before")
			return err
		})
		wantUnavailable(t, fmt.Sprintf("Put %d with Redis down", i), time.Second, func() error {
			return r.Put(ctx, "during", "b@two.example", time.Hour)
		})
	}
	if _, err := dialAndPing(fast(s.Addr)); !errors.Is(err, ErrUnavailable) {
		t.Errorf("DialRedis with Redis down: %v", err)
	}

	// Back on the same port: the next command works (the data is gone: no
	// persistence in these tests).
	s.Start()
	wantNotFound(t, r, "before")
	mustPut(t, r, "after", "c@three.example", time.Hour)
	wantGet(t, r, "after", "c@three.example")

	// Restarted while our connections sat idle: the stale connection is
	// noticed and the command retried on a new one, transparently.
	s.Stop()
	s.Start()
	mustPut(t, r, "after2", "d@four.example", time.Hour)
	wantGet(t, r, "after2", "d@four.example")
}

func TestRedisHung(t *testing.T) {
	s := startRedis(t)
	o := fast(s.Addr)
	o.PoolSize = 2
	r := dialRedis(t, o)
	ctx := context.Background()
	mustPut(t, r, "before", "a@one.example", time.Hour)

	// SIGSTOP: the kernel still accepts connections, nobody answers.
	s.Signal(syscall.SIGSTOP)
	err := wantUnavailable(t, "Get with Redis hung", time.Second, func() error {
		_, err := r.Get(ctx, "before")
		return err
	})
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("hung Redis: %v, want a timeout", err)
	}

	// The caller's deadline wins when sooner (here than 2 s timeouts).
	slow := dialRedisLater(t, RedisOptions{Addr: s.Addr, DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
	dctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err = wantUnavailable(t, "Get with a 50 ms deadline", time.Second, func() error {
		_, err := slow.Get(dctx, "before")
		return err
	})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("50 ms deadline: %v, want DeadlineExceeded in the chain", err)
	}
	// Cancelling interrupts a command in flight.
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(50*time.Millisecond, cancel)
	err = wantUnavailable(t, "Put cancelled after 50 ms", time.Second, func() error {
		return slow.Put(cctx, "cancelled", "x@y.example", time.Hour)
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Put: %v, want Canceled in the chain", err)
	}

	// More callers than connections: each still ends within the timeouts
	// (waiting for a connection, then its own command).
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			wantUnavailable(t, fmt.Sprintf("concurrent Get %d with Redis hung", i), 3*time.Second, func() error {
				_, err := r.Get(ctx, "before")
				return err
			})
		})
	}
	wg.Wait()

	s.Signal(syscall.SIGCONT)
	wantGet(t, r, "before", "a@one.example")
}

// dialAndPing checks o, connects, authenticates, selects the database and
// pings, so that a wrong address or password shows at startup. The error
// wraps ErrUnavailable when Redis could not be reached or refused us.
func dialAndPing(o RedisOptions) (*Redis, error) {
	r, err := NewRedis(o)
	if err != nil {
		return nil, err
	}
	if err := r.Ping(context.Background()); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}
