package store

// Redis client tests that need no redis-server: a peer that is not Redis,
// and option checks. The tests against a real server are in redis_test.go (e2e).

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// fast are timeouts short enough for the failure tests.
func fast(addr string) RedisOptions {
	return RedisOptions{Addr: addr, DialTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond}
}

// TestRedisNotRedis: a server speaking something else is a protocol error
// (unavailable), and its connection is not reused.
func TestRedisNotRedis(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var accepted sync.WaitGroup
	var count int
	var mu sync.Mutex
	accepted.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			count++
			mu.Unlock()
			go func() {
				defer c.Close()
				buf := make([]byte, 1024)
				c.Read(buf)
				c.Write([]byte("HTTP/1.0 400 Bad Request\r\n\r\n"))
				c.Read(buf)
			}()
		}
	})
	r, err := NewRedis(fast(l.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for range 2 {
		_, err := r.Get(context.Background(), "k")
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, errProtocol) {
			t.Errorf("Get from an HTTP server: %v", err)
		}
	}
	l.Close()
	accepted.Wait()
	if count != 2 {
		t.Errorf("%d connections for 2 commands: a broken one was reused", count)
	}
}

func TestRedisOptions(t *testing.T) {
	for _, o := range []RedisOptions{
		{Addr: "localhost"},
		{Addr: "localhost:0"},
		{Addr: "localhost:http"},
		{Addr: ":6379"},
		{Addr: "unix:"},
		{DB: -1},
		{Username: "u"},
		{PoolSize: -1},
		{ReadTimeout: -time.Second},
	} {
		if _, err := NewRedis(o); err == nil || !strings.HasPrefix(err.Error(), "srs store: redis: ") {
			t.Errorf("NewRedis(%+v) = %v, want an error", o, err)
		}
	}
	r, err := NewRedis(RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Addr() != DefaultRedisAddr || r.o.Prefix != DefaultRedisPrefix || cap(r.slots) != DefaultRedisPoolSize || r.o.ReadTimeout != DefaultRedisTimeout {
		t.Errorf("defaults: %+v", r.o)
	}
	for _, addr := range []string{"127.0.0.1:6379", "[::1]:6379", "redis.example:6379", "unix:/run/redis/redis.sock"} {
		if _, err := NewRedis(RedisOptions{Addr: addr}); err != nil {
			t.Errorf("NewRedis(%q): %v", addr, err)
		}
	}
}
