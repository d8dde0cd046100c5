package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// clock is a settable clock for expiry tests.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock    { c := &clock{}; c.ns.Store(t.UnixNano()); return c }
func (c *clock) Now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) Add(d time.Duration) { c.ns.Add(int64(d)) }

var t0 = time.Date(2024, 1, 15, 12, 0, 0, 0, time.UTC)

func openBolt(t testing.TB, path string, o BoltOptions) *Bolt {
	t.Helper()
	if o.SweepInterval == 0 {
		o.SweepInterval = -1 // tests sweep by hand unless they say otherwise
	}
	b, err := OpenBoltWith(path, o)
	if err != nil {
		t.Fatalf("OpenBoltWith(%s): %v", path, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// counts returns the number of entries in the addr and expiry buckets.
func (b *Bolt) counts(t testing.TB) (addrs, index int) {
	t.Helper()
	err := b.db.View(func(tx *bolt.Tx) error {
		addrs = tx.Bucket(bucketAddr).Stats().KeyN
		index = tx.Bucket(bucketExpiry).Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return addrs, index
}

func mustPut(t testing.TB, s Store, key, addr string, ttl time.Duration) {
	t.Helper()
	if err := s.Put(context.Background(), key, addr, ttl); err != nil {
		t.Fatalf("Put(%q, %q): %v", key, addr, err)
	}
}

func wantGet(t testing.TB, s Store, key, want string) {
	t.Helper()
	got, err := s.Get(context.Background(), key)
	if err != nil || got != want {
		t.Fatalf("Get(%q) = %q, %v; want %q", key, got, err, want)
	}
}

func wantNotFound(t testing.TB, s Store, key string) {
	t.Helper()
	got, err := s.Get(context.Background(), key)
	if !errors.Is(err, ErrNotFound) || got != "" {
		t.Fatalf("Get(%q) = %q, %v; want ErrNotFound", key, got, err)
	}
	if errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get(%q): %v is both not found and unavailable", key, err)
	}
}

// storeBasics is the contract every Store keeps, without expiry.
func storeBasics(t *testing.T, s Store) {
	ctx := context.Background()
	long := strings.Repeat("x", 200) + "@" + strings.Repeat("d", 60) + ".example"
	odd := `"a@b c"+tag=x@Exämple.ORG`
	for key, addr := range map[string]string{"abcdefghij": "user@orig.example", "k2": long, "k3": odd, "k4": ""} {
		mustPut(t, s, key, addr, time.Hour)
		wantGet(t, s, key, addr)
	}
	wantNotFound(t, s, "nosuchkey0")
	wantNotFound(t, s, "")

	// NX: a taken key is never overwritten.
	if err := s.Put(ctx, "abcdefghij", "thief@evil.example", time.Hour); !errors.Is(err, ErrKeyExists) {
		t.Fatalf("Put on a taken key: %v, want ErrKeyExists", err)
	}
	wantGet(t, s, "abcdefghij", "user@orig.example")

	// Arguments no caller should pass: plain errors, neither verdict.
	for _, c := range []struct {
		key string
		ttl time.Duration
	}{{"", time.Hour}, {"k", 0}, {"k", -time.Second}, {strings.Repeat("k", 257), time.Hour}} {
		err := s.Put(ctx, c.key, "a@b", c.ttl)
		if err == nil || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrKeyExists) {
			t.Errorf("Put(key of %d bytes, ttl %v) = %v, want an argument error", len(c.key), c.ttl, err)
		}
	}

	// A cancelled context: unavailable (temporary), not a verdict.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Put(cctx, "cancelled0", "a@b", time.Hour); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a cancelled context: %v", err)
	}
	if _, err := s.Get(cctx, "abcdefghij"); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a cancelled context: %v", err)
	}
}

func TestBoltBasics(t *testing.T) {
	path := filepath.Join(t.TempDir(), "srs.db")
	b := openBolt(t, path, BoltOptions{})
	storeBasics(t, b)

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("file mode %04o, want 0600", perm)
	}
	if b.Path() != path {
		t.Errorf("Path() = %q", b.Path())
	}

	// After Close: unavailable, not a verdict; Close is idempotent.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := b.Get(context.Background(), "abcdefghij"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Get after Close: %v", err)
	}
	if err := b.Put(context.Background(), "k5", "a@b", time.Hour); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Put after Close: %v", err)
	}
}

func TestBoltExpiry(t *testing.T) {
	clk := newClock(t0)
	b := openBolt(t, filepath.Join(t.TempDir(), "srs.db"), BoltOptions{Now: clk.Now})
	mustPut(t, b, "short", "a@one.example", time.Hour)
	mustPut(t, b, "long", "b@two.example", 2*time.Hour)

	clk.Add(time.Hour - time.Nanosecond)
	wantGet(t, b, "short", "a@one.example")
	clk.Add(time.Nanosecond) // exactly the ttl: gone
	wantNotFound(t, b, "short")
	wantGet(t, b, "long", "b@two.example")

	// Expired but not swept: invisible, and the key may be used again. The
	// new entry must survive the sweep of the old one's index entry.
	mustPut(t, b, "short", "c@three.example", 2*time.Hour) // due at t0+3h
	wantGet(t, b, "short", "c@three.example")
	if a, i := b.counts(t); a != 2 || i != 2 {
		t.Fatalf("after reusing an expired key: %d entries, %d index entries; want 2, 2", a, i)
	}
	clk.Add(time.Hour)
	if n, err := b.Sweep(); err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1 (long)", n, err)
	}
	wantGet(t, b, "short", "c@three.example")
	wantNotFound(t, b, "long")
	clk.Add(time.Hour)
	if n, err := b.Sweep(); err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1 (short)", n, err)
	}
	if a, i := b.counts(t); a != 0 || i != 0 {
		t.Fatalf("after sweeping all: %d entries, %d index entries", a, i)
	}
}

func TestBoltSweepIsBounded(t *testing.T) {
	clk := newClock(t0)
	b := openBolt(t, filepath.Join(t.TempDir(), "srs.db"), BoltOptions{Now: clk.Now, SweepLimit: 100})
	// 250 entries due in 1..250 minutes, 50 due in a day; written in one
	// transaction to keep the test fast.
	err := b.db.Update(func(tx *bolt.Tx) error {
		for i := range 300 {
			ttl := time.Duration(i+1) * time.Minute
			if i >= 250 {
				ttl = 24 * time.Hour
			}
			exp := clk.Now().Add(ttl).UnixNano()
			key := fmt.Sprintf("key%04d", (i*7919)%300) // not in expiry order
			val := append(indexKey(exp, "")[:8], "x@y.example"...)
			if err := tx.Bucket(bucketAddr).Put([]byte(key), val); err != nil {
				return err
			}
			if err := tx.Bucket(bucketExpiry).Put(indexKey(exp, key), nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(250 * time.Minute)
	for i, want := range []int{100, 100, 50, 0} {
		if n, err := b.Sweep(); err != nil || n != want {
			t.Fatalf("sweep %d = %d, %v; want %d", i+1, n, err, want)
		}
	}
	if a, i := b.counts(t); a != 50 || i != 50 {
		t.Fatalf("left %d entries, %d index entries; want the 50 not due", a, i)
	}
}

func TestBoltBackgroundSweeper(t *testing.T) {
	clk := newClock(t0)
	b := openBolt(t, filepath.Join(t.TempDir(), "srs.db"), BoltOptions{Now: clk.Now, SweepInterval: 5 * time.Millisecond, SweepLimit: 2})
	for i := range 5 {
		mustPut(t, b, fmt.Sprintf("k%d", i), "a@b.example", time.Minute)
	}
	mustPut(t, b, "keep", "a@b.example", time.Hour)
	clk.Add(time.Minute)
	deadline := time.Now().Add(5 * time.Second)
	for {
		a, i := b.counts(t)
		if a == 1 && i == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("background sweeper left %d entries, %d index entries; want 1, 1", a, i)
		}
		time.Sleep(5 * time.Millisecond)
	}
	wantGet(t, b, "keep", "a@b.example")
	done := make(chan struct{})
	go func() { b.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not stop the sweeper")
	}
}

func TestBoltReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "srs.db")
	clk := newClock(t0)
	b := openBolt(t, path, BoltOptions{Now: clk.Now})
	mustPut(t, b, "persist", "user@orig.example", time.Hour)
	mustPut(t, b, "brief", "other@orig.example", time.Minute)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	clk.Add(30 * time.Minute)
	b = openBolt(t, path, BoltOptions{Now: clk.Now})
	wantGet(t, b, "persist", "user@orig.example")
	wantNotFound(t, b, "brief") // its expiry was stored with it
	if n, err := b.Sweep(); err != nil || n != 1 {
		t.Fatalf("Sweep after reopen = %d, %v; want 1", n, err)
	}
}

func TestBoltConcurrent(t *testing.T) {
	b := openBolt(t, filepath.Join(t.TempDir(), "srs.db"), BoltOptions{SweepInterval: time.Millisecond})
	const workers, each = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			ctx := context.Background()
			for i := range each {
				key, addr := fmt.Sprintf("w%dk%d", w, i), fmt.Sprintf("u%d.%d@orig.example", w, i)
				if err := b.Put(ctx, key, addr, time.Hour); err != nil {
					errs <- err
					return
				}
				// Read back our own and someone else's.
				if got, err := b.Get(ctx, key); err != nil || got != addr {
					errs <- fmt.Errorf("Get(%s) = %q, %v", key, got, err)
					return
				}
				if _, err := b.Get(ctx, fmt.Sprintf("w%dk%d", (w+1)%workers, i)); err != nil && !errors.Is(err, ErrNotFound) {
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
	if a, _ := b.counts(t); a != workers*each {
		t.Errorf("%d entries, want %d", a, workers*each)
	}
}

// TestBoltLocked: a second opener, in this process and in another one, gets
// a clear error after the lock timeout instead of hanging.
func TestBoltLocked(t *testing.T) {
	if path := os.Getenv("TOLLGATE_TEST_BOLT_SECOND_OPENER"); path != "" {
		// The child: try to open the file the parent holds.
		_, err := OpenBoltWith(path, BoltOptions{LockTimeout: 200 * time.Millisecond})
		fmt.Printf("child: %v\n", err)
		return
	}
	path := filepath.Join(t.TempDir(), "srs.db")
	openBolt(t, path, BoltOptions{})

	start := time.Now()
	_, err := OpenBoltWith(path, BoltOptions{LockTimeout: 200 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "locked by another process") || !strings.Contains(err.Error(), path) {
		t.Fatalf("second open in this process: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("second open took %v", d)
	}

	start = time.Now()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBoltLocked$", "-test.count=1")
	cmd.Env = append(os.Environ(), "TOLLGATE_TEST_BOLT_SECOND_OPENER="+path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "child: srs store: "+path+" is locked by another process") {
		t.Fatalf("second process opening the file:\n%s", out)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("second process took %v", d)
	}
}

func TestBoltRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.db")
	b := openBolt(t, open, BoltOptions{})
	b.Close()
	if err := os.Chmod(open, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBolt(open); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable file: %v", err)
	}

	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, []byte(strings.Repeat("not a bolt file\n", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBolt(junk); err == nil || !strings.Contains(err.Error(), junk) {
		t.Errorf("junk file: %v", err)
	}
	if _, err := OpenBolt(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	if _, err := OpenBolt(filepath.Join(dir, "missing", "srs.db")); err == nil {
		t.Error("missing directory: no error")
	}

	// A newer format is refused, not misread.
	newer := filepath.Join(dir, "newer.db")
	b = openBolt(t, newer, BoltOptions{})
	err := b.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyVersion, []byte("2")) })
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	if _, err := OpenBolt(newer); err == nil || !strings.Contains(err.Error(), "format version") {
		t.Errorf("format version 2: %v", err)
	}
}
