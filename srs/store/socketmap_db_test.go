package store

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/srs"
)

// The socketmap in database mode: a long sender goes through the store, its
// address reverses through it, and a store that is down is TEMP (postsrsd
// says PERM; TEMP makes Postfix try again).
func TestSocketmapDatabaseMode(t *testing.T) {
	s, err := srs.New(srs.Options{Domain: "fwd.example", Secrets: []string{"tops3cr3t"}})
	if err != nil {
		t.Fatal(err)
	}
	bolt, err := OpenBolt(filepath.Join(t.TempDir(), "srs.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	sm := srs.NewSocketmap(srs.ModuleOptions{SRS: s, DB: NewDB(s, bolt, srs.DefaultMaxAge)}, srs.SocketmapOptions{})
	long := strings.Repeat("very.long.local.part.", 4) + "x@example.net"
	fwd := sm.Lookup(t.Context(), "forward", long)
	addr, ok := strings.CutPrefix(fwd, "OK ")
	if !ok || !IsDBAddress(addr) {
		t.Fatalf("forward of a long sender: %q, want a database address", fwd)
	}
	if got := sm.Lookup(t.Context(), "reverse", addr); got != "OK "+long {
		t.Errorf("reverse: %q", got)
	}
	short := sm.Lookup(t.Context(), "forward", "a@example.net")
	if a, _ := strings.CutPrefix(short, "OK "); IsDBAddress(a) || sm.Lookup(t.Context(), "reverse", a) != "OK a@example.net" {
		t.Errorf("a short sender: %q", short)
	}
	// A signed key the store does not have.
	other, err := OpenBolt(filepath.Join(t.TempDir(), "other.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	sm.SetRewriter(srs.ModuleOptions{SRS: s, DB: NewDB(s, other, srs.DefaultMaxAge)})
	if got := sm.Lookup(t.Context(), "reverse", addr); got != "NOTFOUND Unknown alias." {
		t.Errorf("unknown key: %q", got)
	}

	// The store is down.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close()
	redis, err := NewRedis(RedisOptions{Addr: down, DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer redis.Close()
	sm.SetRewriter(srs.ModuleOptions{SRS: s, DB: NewDB(s, redis, srs.DefaultMaxAge), Always: true})
	for _, req := range [][2]string{{"forward", "a@example.net"}, {"reverse", addr}} {
		if got := sm.Lookup(t.Context(), req[0], req[1]); got != "TEMP Database error." {
			t.Errorf("%s with the store down: %q", req[0], got)
		}
	}
}
