//go:build e2e

package policy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/e2e"
	"github.com/tollgate/tollgate/milter"
	"github.com/tollgate/tollgate/srs"
)

// forwardThrough runs the SRS module of rt on one accepted message from
// sender with srs_forward on, and returns the sender it leaves with ("" when
// it was left unchanged: database mode could not store it).
func forwardThrough(t *testing.T, rt *Runtime, sender string) string {
	t.Helper()
	for _, m := range rt.Modules() {
		if m.Name() != "srs" {
			continue
		}
		tx := &milter.Txn{Session: &milter.Session{}, Sender: sender}
		tx.SetControl(srs.ControlForward)
		if err := m.(milter.FinalizeHook).Finalize(context.Background(), tx, milter.Decision{Verdict: milter.Accept}); err != nil {
			t.Fatal(err)
		}
		if s := tx.Mutations.Envelope.Sender(); s != nil {
			return s.Addr
		}
		return ""
	}
	t.Fatal("no srs module")
	return ""
}

// redisCommand sends one command as an inline command and returns the
// reply's first line.
func redisCommand(t *testing.T, addr string, cmds ...string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	var last string
	for _, cmd := range cmds {
		fmt.Fprintf(c, "%s\r\n", cmd)
		last, err = br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
	}
	return strings.TrimSpace(last)
}

// A reload with a new Redis password (password_file changed, the server's
// requirepass changed) uses the new one: the store was cached by address,
// db, prefix and username and kept the old credentials while the log said
// "configuration reloaded" (issue 13, point 4).
func TestReloadUsesNewRedisPassword(t *testing.T) {
	redis := e2e.StartRedis(t, "--requirepass", "first-pw")
	dir := t.TempDir()
	pwFile := writeFile(t, dir, "redis.pw", "first-pw\n")
	config := redisConfig(redis.Addr, pwFile, "1s")
	env := NewEnv(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	t.Cleanup(env.Close)
	load := func() *Runtime {
		t.Helper()
		p, err := Parse("t.yaml", []byte(config), testFeatures...)
		if err != nil {
			t.Fatal(err)
		}
		rt, err := env.Runtime(p)
		if err != nil {
			t.Fatal(err)
		}
		return rt
	}
	// The daemon's server holds the runtimes it serves.
	srv := milter.NewServer(load(), milter.ServerOptions{Metrics: milter.NewMetrics(prometheus.NewRegistry())})
	old := srv.Runtime().(*Runtime)
	if got := forwardThrough(t, old, "alice@example.net"); !strings.HasPrefix(got, "SRS0=") {
		t.Fatalf("first password: sender %q, want a database SRS address", got)
	}

	// The operator changes the password on Redis and in the file, then reloads.
	// Connections authenticated before stay so: drop them, as a Redis
	// restart would.
	if r := redisCommand(t, redis.Addr, "AUTH first-pw", "CONFIG SET requirepass second-pw", "CLIENT KILL TYPE normal"); !strings.HasPrefix(r, ":") {
		t.Fatalf("CONFIG SET, CLIENT KILL: %s", r)
	}
	writeFile(t, dir, "redis.pw", "second-pw\n")
	if got := forwardThrough(t, old, "bob@example.net"); got != "" {
		t.Fatalf("old credentials still accepted (%q): the test proves nothing", got)
	}
	srv.SetRuntime(load())
	srv.SetRuntime(load()) // a second reload retires the first configuration
	if got := forwardThrough(t, srv.Runtime().(*Runtime), "carol@example.net"); !strings.HasPrefix(got, "SRS0=") {
		t.Errorf("after the reload: sender %q, want a database SRS address (the new password)", got)
	}
	if _, open := old.env.stores[old.stores[len(old.stores)-1]]; open { // the last: the first is the shared resolver
		t.Error("the store with the old password is still open")
	}
}
