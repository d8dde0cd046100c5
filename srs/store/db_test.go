package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/srs"
)

const (
	dbDomain = "fwd.example.org"
	dbSecret = "n3w-s3cr3t"
	dbOld    = "0ld-s3cr3t"
)

func newSRS(t testing.TB, now func() time.Time, mod ...func(*srs.Options)) *srs.SRS {
	t.Helper()
	o := srs.Options{Domain: dbDomain, Secrets: []string{dbSecret, dbOld}, Now: now}
	for _, m := range mod {
		m(&o)
	}
	s, err := srs.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// countingStore counts Gets, to show the store is not asked about forged
// or expired addresses.
type countingStore struct {
	Store
	gets atomic.Int64
}

func (c *countingStore) Get(ctx context.Context, key string) (string, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, key)
}

// realRedis, set by redis_test.go under the e2e build tag, starts a real
// Redis and returns a client and a function that stops the server.
var realRedis func(t *testing.T) (st Store, down func())

// dbStores runs f against the embedded store and, in the e2e build, a real
// Redis.
func dbStores(t *testing.T, f func(t *testing.T, st Store, down func())) {
	t.Run("bolt", func(t *testing.T) {
		b := openBolt(t, filepath.Join(t.TempDir(), "srs.db"), BoltOptions{})
		f(t, b, func() { b.Close() })
	})
	if realRedis != nil {
		t.Run("redis", func(t *testing.T) {
			st, down := realRedis(t)
			f(t, st, down)
		})
	}
}

var dbSenders = []string{
	"user@orig.example",
	"User.Name+tag@Orig.EXAMPLE",
	"a=b@orig.example",
	`"odd @ local"@orig.example`,
	"J\u00f6rg@xn--bcher-kva.example",
	"SRS0=Ak0K=JK=orig.example=alice@hop1.example",
	"SRS1=UuHG=hop1.example==Ak0K=JK=orig.example=alice@hop2.example",
	strings.Repeat("l", 200) + "@" + strings.Repeat("d", 63) + ".example",
}

func TestDBRoundTrip(t *testing.T) {
	dbStores(t, func(t *testing.T, st Store, down func()) {
		ctx := context.Background()
		clk := newClock(t0)
		s := newSRS(t, clk.Now)
		d := NewDB(s, st, 0)
		for _, sender := range dbSenders {
			addr, key, err := d.Forward(ctx, sender)
			if err != nil {
				t.Fatalf("Forward(%q): %v", sender, err)
			}
			local, domain, _ := strings.Cut(addr, "@")
			wantPrefix := "SRS0="
			if !strings.HasPrefix(addr, wantPrefix) || domain != dbDomain || len(local) > 64 || !strings.HasSuffix(local, "=_db="+key) {
				t.Errorf("Forward(%q) = %q: want SRS0=HASH=TT=_db=%s@%s, local part at most 64", sender, addr, key, dbDomain)
			}
			if !validKey(key) || !IsDBAddress(addr) || !s.IsOurs(addr) || !srs.IsSRS(addr) {
				t.Errorf("Forward(%q) = %q, key %q: not a database-mode address of ours", sender, addr, key)
			}
			for _, form := range []string{addr, strings.ToUpper(addr), strings.ToLower(addr)} {
				orig, k, err := d.Reverse(ctx, form)
				if err != nil || orig != sender || k != key {
					t.Errorf("Reverse(%q) = %q, %q, %v; want %q, %q", form, orig, k, err, sender, key)
				}
			}
			// The ordinary path must never be handed one: it would reverse
			// it to <key>@_db.
			if back, err := s.Reverse(addr); err != nil || back != key+"@_db" {
				t.Errorf("srs.Reverse(%q) = %q, %v", addr, back, err)
			}
		}

		// Still valid max_age days later (stamp and store both), expired
		// one day more: by the stamp, before the store is asked.
		addr, _, err := d.Forward(ctx, "late@orig.example")
		if err != nil {
			t.Fatal(err)
		}
		clk.Add(srs.DefaultMaxAge)
		if orig, _, err := d.Reverse(ctx, addr); err != nil || orig != "late@orig.example" {
			t.Errorf("after max_age: %q, %v", orig, err)
		}
		clk.Add(srs.Day)
		cs := &countingStore{Store: st}
		if _, _, err := NewDB(s, cs, 0).Reverse(ctx, addr); !errors.Is(err, srs.ErrExpired) || srs.StatusOf(err) != srs.StatusExpired || cs.gets.Load() != 0 {
			t.Errorf("a day after max_age: %v (%d store lookups), want srs.ErrExpired without a lookup", err, cs.gets.Load())
		}

		// Store down: both directions are temporary failures.
		down()
		if _, _, err := d.Forward(ctx, "user@orig.example"); !errors.Is(err, ErrUnavailable) || srs.Reason(err) != "db_unavailable" {
			t.Errorf("Forward with the store down: %v", err)
		}
		clk.Add(-srs.DefaultMaxAge - srs.Day)
		start := time.Now()
		_, key, err := d.Reverse(ctx, addr)
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotFound) || key == "" {
			t.Errorf("Reverse with the store down: key %q, %v", key, err)
		}
		if el := time.Since(start); el > time.Second {
			t.Errorf("Reverse with the store down took %v", el)
		}
	})
}

func TestDBRejects(t *testing.T) {
	ctx := context.Background()
	clk := newClock(t0)
	s := newSRS(t, clk.Now)
	cs := &countingStore{Store: openBolt(t, filepath.Join(t.TempDir(), "srs.db"), BoltOptions{})}
	d := NewDB(s, cs, 0)
	addr, key, err := d.Forward(ctx, "user@orig.example")
	if err != nil {
		t.Fatal(err)
	}
	local, domain, _ := strings.Cut(addr, "@")
	f := strings.Split(local, "=") // SRS0 HASH TT _db key
	hash := f[1]

	// Tampered: the store is never asked.
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	otherKey := NewKey()
	for _, c := range []struct {
		addr string
		want error
	}{
		{fmt.Sprintf("SRS0=%s=%s=_db=%s@%s", flip(hash, 0), f[2], key, domain), srs.ErrBadHash},
		{fmt.Sprintf("SRS0=%s=%s=_db=%s@%s", hash, f[2], otherKey, domain), srs.ErrBadHash},
		{fmt.Sprintf("SRS0=%s=%s=_db=%s@%s", hash[:3], f[2], key, domain), srs.ErrHashTooShort},
		{fmt.Sprintf("SRS0=%s=%s=_db=%s@%s", hash, "A1", key, domain), srs.ErrBadStamp},
		{fmt.Sprintf("SRS0=%s=%s=_db=%s=x@%s", hash, f[2], key, domain), srs.ErrBadHash},
		{fmt.Sprintf("SRS0==%s=_db=%s@%s", f[2], key, domain), srs.ErrHashTooShort},
	} {
		orig, _, err := d.Reverse(ctx, c.addr)
		if !errors.Is(err, c.want) || orig != "" || srs.StatusOf(err) != srs.StatusInvalid {
			t.Errorf("Reverse(%q) = %q, %v; want %v", c.addr, orig, err, c.want)
		}
	}
	if n := cs.gets.Load(); n != 0 {
		t.Errorf("%d store lookups for forged addresses", n)
	}

	// The field boundary moved: the hash still matches (fields are hashed
	// without separators), the domain field still starts with "_": refused,
	// never reversed to an address.
	for _, moved := range []string{
		fmt.Sprintf("SRS0=%s=%s=_db%s=%s@%s", hash, f[2], key[:1], key[1:], domain),
		fmt.Sprintf("SRS0=%s=%s=_d=b%s@%s", hash, f[2], key, domain),
	} {
		if back, err := s.Reverse(moved); err != nil {
			t.Fatalf("srs.Reverse(%q): %v (the test expects the hash to match)", moved, err)
		} else if !IsDBAddress(moved) {
			t.Errorf("IsDBAddress(%q) = false: srs.Reverse would turn it into %q", moved, back)
		}
		if orig, _, err := d.Reverse(ctx, moved); !errors.Is(err, srs.ErrBadFormat) || orig != "" {
			t.Errorf("Reverse(%q) = %q, %v; want srs.ErrBadFormat", moved, orig, err)
		}
	}

	// Signed by us but never stored (or lost): not found, with the key.
	forged, err := s.Forward(otherKey + "@_db")
	if err != nil {
		t.Fatal(err)
	}
	orig, k, err := d.Reverse(ctx, forged)
	if !errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnavailable) || k != otherKey || orig != "" || srs.Reason(err) != "db_not_found" {
		t.Errorf("Reverse(%q) = %q, %q, %v; want ErrNotFound with key %s", forged, orig, k, err, otherKey)
	}
	// Signed, but not a key of ours (possible only with use_hash off, or a
	// forgery that guessed the hash).
	signed, _ := s.Forward("not-a-key@_db")
	if _, _, err := d.Reverse(ctx, signed); !errors.Is(err, srs.ErrBadFormat) {
		t.Errorf("Reverse(%q): %v, want srs.ErrBadFormat", signed, err)
	}

	// Not database mode: left to srs.Reverse.
	plain, _ := s.Forward("user@orig.example")
	for _, a := range []string{plain, "user@orig.example", "SRS1=xxxx=hop.example==" + hash + "=" + f[2] + "=_db=" + key + "@" + domain, "SRS0=" + hash + "=" + f[2] + "=db=" + key + "@" + domain, ""} {
		if _, _, err := d.Reverse(ctx, a); err != ErrNotDB || srs.Reason(err) != "not_db" {
			t.Errorf("Reverse(%q): %v, want ErrNotDB", a, err)
		}
		if IsDBAddress(a) {
			t.Errorf("IsDBAddress(%q)", a)
		}
	}
	for _, a := range []string{addr, "srs0+x=AA=_DB=k@x", "SRS0-x=AA=_db=k=z", "SRS0=x=AA=_db=", "SRS0=x=AA=_other=k@x"} {
		if !IsDBAddress(a) {
			t.Errorf("IsDBAddress(%q) = false", a)
		}
	}
}

func TestDBForwardRules(t *testing.T) {
	ctx := context.Background()
	s := newSRS(t, nil)
	d := NewDB(s, openBolt(t, filepath.Join(t.TempDir(), "srs.db"), BoltOptions{}), 0)
	for _, c := range []struct {
		sender string
		want   error
	}{
		{"", srs.ErrNullSender},
		{"<>", srs.ErrNullSender},
		{"nodomain", srs.ErrBadAddress},
		{"@orig.example", srs.ErrBadAddress},
		{"user@", srs.ErrBadAddress},
		{"us\ner@orig.example", srs.ErrBadAddress},
		{strings.Repeat("x", 1020) + "@o.ex", srs.ErrBadAddress},
	} {
		if addr, key, err := d.Forward(ctx, c.sender); !errors.Is(err, c.want) || addr != "" || key != "" {
			t.Errorf("Forward(%q) = %q, %q, %v; want %v", c.sender, addr, key, err, c.want)
		}
	}
	// Ours: unchanged, nothing stored.
	for _, a := range []string{"x@" + dbDomain, "SRS0=abcd=AA=o.ex=u@FWD.example.org"} {
		if addr, key, err := d.Forward(ctx, a); err != nil || addr != a || key != "" {
			t.Errorf("Forward(%q) = %q, %q, %v; want it unchanged", a, addr, key, err)
		}
	}
}

// TestDBLength: the local part stays within 64 whatever the sender and the
// hash length, with every separator.
func TestDBLength(t *testing.T) {
	ctx := context.Background()
	st := openBolt(t, filepath.Join(t.TempDir(), "srs.db"), BoltOptions{})
	sender := strings.Repeat("a", 200) + "@" + strings.Repeat("b", 200) + ".example"
	for _, hl := range []int{4, 6, 27} {
		for _, sep := range []byte("=+-") {
			s := newSRS(t, nil, func(o *srs.Options) { o.HashLength, o.Separator = hl, sep })
			d := NewDB(s, st, 0)
			addr, _, err := d.Forward(ctx, sender)
			if err != nil {
				t.Fatal(err)
			}
			local := addr[:strings.LastIndexByte(addr, '@')]
			if len(local) != 23+hl || len(local) > 64 || local[4] != sep {
				t.Errorf("hash length %d, separator %c: %q is %d characters, want %d", hl, sep, local, len(local), 23+hl)
			}
			if orig, _, err := d.Reverse(ctx, addr); err != nil || orig != sender {
				t.Errorf("Reverse(%q) = %q, %v", addr, orig, err)
			}
		}
	}
	// A plain SRS0 address for the same sender would be far over.
	plain, _ := newSRS(t, nil).Forward(sender)
	if n := strings.LastIndexByte(plain, '@'); n <= 64 {
		t.Fatalf("plain SRS0 local part %d characters: the test sender is too short", n)
	}
}

// TestDBSecretRotation: an address signed before a rotation still reverses
// while the old secret verifies.
func TestDBSecretRotation(t *testing.T) {
	ctx := context.Background()
	st := openBolt(t, filepath.Join(t.TempDir(), "srs.db"), BoltOptions{})
	before := NewDB(newSRS(t, nil, func(o *srs.Options) { o.Secrets = []string{dbOld} }), st, 0)
	addr, _, err := before.Forward(ctx, "user@orig.example")
	if err != nil {
		t.Fatal(err)
	}
	after := NewDB(newSRS(t, nil), st, 0) // new secret first, old still verifying
	if orig, _, err := after.Reverse(ctx, addr); err != nil || orig != "user@orig.example" {
		t.Errorf("after rotation: %q, %v", orig, err)
	}
	dropped := NewDB(newSRS(t, nil, func(o *srs.Options) { o.Secrets = []string{dbSecret} }), st, 0)
	if _, _, err := dropped.Reverse(ctx, addr); !errors.Is(err, srs.ErrBadHash) {
		t.Errorf("old secret dropped: %v, want srs.ErrBadHash", err)
	}
}

// collidingStore says every key is taken.
type collidingStore struct {
	Store
	puts int
}

func (c *collidingStore) Put(ctx context.Context, key, addr string, ttl time.Duration) error {
	c.puts++
	if c.puts <= c.collide() {
		return ErrKeyExists
	}
	return c.Store.Put(ctx, key, addr, ttl)
}

func (c *collidingStore) collide() int { return 2 }

func TestDBKeyCollision(t *testing.T) {
	ctx := context.Background()
	st := &collidingStore{Store: openBolt(t, filepath.Join(t.TempDir(), "srs.db"), BoltOptions{})}
	d := NewDB(newSRS(t, nil), st, 0)
	addr, key, err := d.Forward(ctx, "user@orig.example")
	if err != nil || st.puts != 3 {
		t.Fatalf("two collisions: %q, %v after %d puts; want success on the third", addr, err, st.puts)
	}
	if orig, k, err := d.Reverse(ctx, addr); err != nil || orig != "user@orig.example" || k != key {
		t.Errorf("Reverse after collisions: %q, %q, %v", orig, k, err)
	}

	// Keys that always collide (a broken random source): a bounded number
	// of tries, then unavailable.
	b := openBolt(t, filepath.Join(t.TempDir(), "srs2.db"), BoltOptions{})
	d = NewDB(newSRS(t, nil), b, 0)
	d.newKey = func() string { return "aaaaaaaaaa" }
	if _, _, err := d.Forward(ctx, "first@orig.example"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Forward(ctx, "second@orig.example"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("constant keys: %v, want ErrUnavailable", err)
	}
	wantGet(t, b, "aaaaaaaaaa", "first@orig.example") // never overwritten
}

// TestDBTTL: entries outlive the stamp's validity. Written at 23:59 on day
// D, the address is valid until the end of day D+max_age, more than max_age
// later: a store ttl of max_age alone would lose it in its last minute.
func TestDBTTL(t *testing.T) {
	ctx := context.Background()
	clk := newClock(time.Date(2024, 1, 15, 23, 59, 0, 0, time.UTC))
	st := openBolt(t, filepath.Join(t.TempDir(), "srs.db"), BoltOptions{Now: clk.Now})
	s := newSRS(t, clk.Now, func(o *srs.Options) { o.MaxAge = 21 * srs.Day })
	d := NewDB(s, st, 21*srs.Day)
	addr, _, err := d.Forward(ctx, "user@orig.example")
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(21*srs.Day + 30*time.Second) // 23:59:30 on day D+21
	if orig, _, err := d.Reverse(ctx, addr); err != nil || orig != "user@orig.example" {
		t.Errorf("last minute of the stamp's validity: %q, %v", orig, err)
	}
	clk.Add(time.Minute) // day D+22: the stamp says expired
	if _, _, err := d.Reverse(ctx, addr); !errors.Is(err, srs.ErrExpired) {
		t.Errorf("day D+22: %v, want srs.ErrExpired", err)
	}
}

func TestNewKey(t *testing.T) {
	seen := map[string]bool{}
	for range 10000 {
		k := NewKey()
		if !validKey(k) || seen[k] {
			t.Fatalf("NewKey() = %q (valid %v, seen %v)", k, validKey(k), seen[k])
		}
		seen[k] = true
	}
	for _, k := range []string{"", "abcdefghi", "abcdefghijk", "ABCDEFGHIJ", "abcdefghi1", "abcdefghi="} {
		if validKey(k) {
			t.Errorf("validKey(%q)", k)
		}
	}
}
