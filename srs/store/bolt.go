package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Bolt defaults.
const (
	DefaultLockTimeout   = time.Second
	DefaultSweepInterval = time.Minute
	DefaultSweepLimit    = 1000
)

// Buckets of the bolt file. Format version 1:
//
//	addr:   key -> expiry (8 bytes, Unix nanoseconds, big-endian) + address
//	expiry: expiry (8 bytes, as above) + key -> empty
//	meta:   "version" -> "1"
//
// The expiry bucket is an index in expiry order, so a sweep reads only
// entries that are due, however many are alive.
var (
	bucketAddr   = []byte("addr")
	bucketExpiry = []byte("expiry")
	bucketMeta   = []byte("meta")
	keyVersion   = []byte("version")
	formatV1     = []byte("1")
)

// BoltOptions tunes OpenBoltWith. Zero values mean the defaults.
type BoltOptions struct {
	// LockTimeout bounds the wait for the file's lock (bolt's flock): a
	// second process opening the same file gets an error after this long
	// instead of hanging. Default 1 s.
	LockTimeout time.Duration

	// SweepInterval is how often a background goroutine deletes expired
	// entries. Default 1 min; negative: no background sweeping (call Sweep).
	SweepInterval time.Duration

	// SweepLimit bounds the entries one sweep deletes, and so how long it
	// holds bolt's single writer lock. Default 1000. When a sweep hits the
	// limit the next one runs after at most a second.
	SweepLimit int

	// Now is the clock for expiry; nil means time.Now.
	Now func() time.Time
}

// Bolt is the embedded store: one bbolt file on the local disk, for a single
// machine (the file is locked by one process at a time). Entries carry their
// expiry; expired entries are invisible to Get at once and deleted by the
// sweeper later. Every Put is committed and fsync'ed before it returns (Puts
// made at the same time share the commit), so an acknowledged forward
// survives a crash.
type Bolt struct {
	db    *bolt.DB
	now   func() time.Time
	limit int

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*Bolt)(nil)

// OpenBolt opens or creates the bolt file at path with the defaults.
func OpenBolt(path string) (*Bolt, error) { return OpenBoltWith(path, BoltOptions{}) }

// OpenBoltWith opens or creates the bolt file at path (mode 0600; its
// directory must exist). An existing file must be a regular file with no
// access for group or others: it holds senders' addresses. Errors name the
// path; a lock held by another process gives an error saying so after
// LockTimeout.
func OpenBoltWith(path string, o BoltOptions) (*Bolt, error) {
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	if o.SweepLimit <= 0 {
		o.SweepLimit = DefaultSweepLimit
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if fi, err := os.Stat(path); err == nil {
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("srs store: %s: not a regular file", path)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			return nil, fmt.Errorf("srs store: %s: mode %04o gives group or others access to senders' addresses; it must be private to its owner (chmod 600 %s)", path, perm, path)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: o.LockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("srs store: %s is locked by another process (another tollgate with the same srs database?); gave up after %v", path, o.LockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("srs store: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		switch v := meta.Get(keyVersion); {
		case v == nil:
			if err := meta.Put(keyVersion, formatV1); err != nil {
				return err
			}
		case !bytes.Equal(v, formatV1):
			return fmt.Errorf("format version %q, this tollgate reads %q", v, formatV1)
		}
		for _, name := range [][]byte{bucketAddr, bucketExpiry} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("srs store: %s: %w", path, err)
	}
	b := &Bolt{db: db, now: o.Now, limit: o.SweepLimit, stop: make(chan struct{}), done: make(chan struct{})}
	if o.SweepInterval > 0 {
		go b.sweeper(o.SweepInterval)
	} else {
		close(b.done)
	}
	return b, nil
}

// Path returns the file's path.
func (b *Bolt) Path() string { return b.db.Path() }

// Put stores addr under key until now+ttl, unless the key is in use
// (ErrKeyExists). An expired entry under the same key is replaced.
func (b *Bolt) Put(ctx context.Context, key, addr string, ttl time.Duration) error {
	if err := checkPut(key, ttl); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	now := b.now().UnixNano()
	exp := now + int64(ttl)
	if exp < now { // overflow: a ttl of centuries
		exp = 1<<63 - 1
	}
	// Batch: concurrent Puts share one transaction and one fsync (which
	// costs milliseconds to tens of milliseconds), for at most
	// bolt.DefaultMaxBatchDelay (10 ms) of added latency. The function may
	// run more than once (when another in the batch fails): it is
	// idempotent.
	err := b.db.Batch(func(tx *bolt.Tx) error {
		addrs, index := tx.Bucket(bucketAddr), tx.Bucket(bucketExpiry)
		if old := addrs.Get([]byte(key)); old != nil {
			oldExp, _, ok := decodeEntry(old)
			if ok && oldExp > now {
				return ErrKeyExists
			}
			if ok {
				if err := index.Delete(indexKey(oldExp, key)); err != nil {
					return err
				}
			}
		}
		val := make([]byte, 8+len(addr))
		binary.BigEndian.PutUint64(val, uint64(exp))
		copy(val[8:], addr)
		if err := addrs.Put([]byte(key), val); err != nil {
			return err
		}
		return index.Put(indexKey(exp, key), nil)
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrKeyExists):
		return err
	}
	return fmt.Errorf("%w: bolt %s: %w", ErrUnavailable, b.db.Path(), err)
}

// Get returns the address under key, or ErrNotFound if there is none or it
// has expired (even if not yet swept).
func (b *Bolt) Get(ctx context.Context, key string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if key == "" || len(key) > maxKeyLen {
		return "", ErrNotFound
	}
	now := b.now().UnixNano()
	var addr string
	found := false
	err := b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketAddr).Get([]byte(key))
		if v == nil {
			return nil
		}
		exp, a, ok := decodeEntry(v)
		if !ok {
			return fmt.Errorf("%w: corrupt entry for key %q", ErrNotFound, key)
		}
		if exp > now {
			addr, found = string(a), true // copied: v lives only in the transaction
		}
		return nil
	})
	switch {
	case errors.Is(err, ErrNotFound):
		return "", err
	case err != nil:
		return "", fmt.Errorf("%w: bolt %s: %w", ErrUnavailable, b.db.Path(), err)
	case !found:
		return "", ErrNotFound
	}
	return addr, nil
}

// Sweep deletes up to SweepLimit expired entries, oldest first, in one
// transaction, and returns how many it deleted. The background sweeper calls
// it; it is exported for tests and maintenance.
func (b *Bolt) Sweep() (int, error) {
	now := b.now().UnixNano()
	n := 0
	err := b.db.Update(func(tx *bolt.Tx) error {
		addrs, index := tx.Bucket(bucketAddr), tx.Bucket(bucketExpiry)
		// Collect first, delete after: deleting under a bolt cursor can make
		// Next skip an item.
		var due [][]byte
		c := index.Cursor()
		for k, _ := c.First(); k != nil && len(due) < b.limit; k, _ = c.Next() {
			if len(k) < 8 || int64(binary.BigEndian.Uint64(k)) > now {
				break
			}
			due = append(due, bytes.Clone(k))
		}
		for _, k := range due {
			exp, key := int64(binary.BigEndian.Uint64(k)), k[8:]
			// The entry may have been replaced under the same key with a
			// later expiry: delete it only if it is the one indexed here.
			if v := addrs.Get(key); v != nil {
				if vexp, _, ok := decodeEntry(v); !ok || vexp == exp {
					if err := addrs.Delete(key); err != nil {
						return err
					}
				}
			}
			if err := index.Delete(k); err != nil {
				return err
			}
		}
		n = len(due)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("%w: bolt %s: sweep: %w", ErrUnavailable, b.db.Path(), err)
	}
	return n, nil
}

func (b *Bolt) sweeper(every time.Duration) {
	defer close(b.done)
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		next := every
		// A failed sweep (disk full, say) is retried at the next tick; Put
		// and Get report the same trouble to their callers.
		if n, err := b.Sweep(); err == nil && n >= b.limit {
			next = min(every, time.Second) // more are due: keep going, in steps
		}
		t.Reset(next)
	}
}

// Close stops the sweeper and closes the file (releasing its lock). Put and
// Get after Close return ErrUnavailable.
func (b *Bolt) Close() error {
	b.closeOnce.Do(func() {
		close(b.stop)
		<-b.done
		b.closeErr = b.db.Close()
	})
	return b.closeErr
}

func indexKey(exp int64, key string) []byte {
	k := make([]byte, 8+len(key))
	binary.BigEndian.PutUint64(k, uint64(exp))
	copy(k[8:], key)
	return k
}

func decodeEntry(v []byte) (exp int64, addr []byte, ok bool) {
	if len(v) < 8 {
		return 0, nil, false
	}
	return int64(binary.BigEndian.Uint64(v)), v[8:], true
}
