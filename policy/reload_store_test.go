package policy

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/srs/store"
)

func redisConfig(addr, pwFile, timeout string) string {
	return fmt.Sprintf("srs:\n  domain: fwd.example.org\n  secrets: [s3cret]\n  database:\n    use: always\n    redis: {address: %q, password_file: %q, timeout: %s}\n", addr, pwFile, timeout)
}

// A reload keeps a store whose options did not change, builds a new one for
// changed options and closes the old one once the last runtime using it is
// released (the server's hold and every session's).
func TestReloadRebuildsChangedStores(t *testing.T) {
	dir := t.TempDir()
	pw := writeFile(t, dir, "pw", "first\n")
	env := NewEnv(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	t.Cleanup(env.Close)
	runtime := func(config string) *Runtime {
		t.Helper()
		p, err := Parse("t.yaml", []byte(config), testFeatures...)
		if err != nil {
			t.Fatal(err)
		}
		rt, err := env.Runtime(p)
		if err != nil {
			t.Fatal(err)
		}
		rt.Hold()
		return rt
	}
	// the stores of features; the shared DNS resolver is one more, kept
	// as long as any runtime lives
	featureStores := func() int {
		n := 0
		for k := range env.stores {
			if !strings.HasPrefix(k, "core:") {
				n++
			}
		}
		return n
	}
	rt1 := runtime(redisConfig("127.0.0.1:1", pw, "1s"))
	rt2 := runtime(redisConfig("127.0.0.1:1", pw, "1s"))
	if featureStores() != 1 {
		t.Fatalf("unchanged options: %d stores, want the one kept", featureStores())
	}
	first := env.stores[rt1.stores[len(rt1.stores)-1]].st.(store.Store)
	rt1.Release()
	if featureStores() != 1 {
		t.Fatalf("released while another runtime uses it")
	}
	writeFile(t, dir, "pw", "second\n")
	rt3 := runtime(redisConfig("127.0.0.1:1", pw, "1s"))
	rt4 := runtime(redisConfig("127.0.0.1:1", pw, "2s"))
	if featureStores() != 3 {
		t.Fatalf("a new password and a new timeout: %d stores, want 3", featureStores())
	}
	rt2.Release()
	if featureStores() != 2 {
		t.Fatalf("the old store is still open: %d stores", featureStores())
	}
	if _, err := first.Get(t.Context(), "k"); err == nil {
		t.Error("the old store still answers after its last runtime went")
	}
	rt3.Release()
	rt4.Release()
	if len(env.stores) != 0 {
		t.Errorf("%d stores left", len(env.stores))
	}
}

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
