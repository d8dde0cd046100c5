//go:build e2e

package cdb

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Databases written by Debian's tinycdb (scripts/install-test-deps.sh) with
// enough keys to fill every hash table and collide within them.
func TestTinycdbDatabases(t *testing.T) {
	tool, err := exec.LookPath("cdb")
	if err != nil {
		t.Fatalf("tinycdb's cdb is not installed (scripts/install-test-deps.sh): %v", err)
	}
	dir := t.TempDir()
	var in strings.Builder
	const n = 20000
	for i := range n {
		fmt.Fprintf(&in, "host%d.example.org value-%d\n", i, i)
	}
	src, db := filepath.Join(dir, "keys.txt"), filepath.Join(dir, "keys.cdb")
	if err := os.WriteFile(src, []byte(in.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(tool, "-c", "-m", db, src).CombinedOutput(); err != nil {
		t.Fatalf("cdb -c: %v\n%s", err, out)
	}
	d, err := Open(db)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		key := fmt.Sprintf("host%d.example.org", i)
		if v, ok := d.Get(key); !ok || string(v) != fmt.Sprintf("value-%d", i) {
			t.Fatalf("Get(%q) = %q, %v", key, v, ok)
		}
		if absent := fmt.Sprintf("host%d.example.net", i); hasKey(d, absent) {
			t.Fatalf("Has(%q)", absent)
		}
	}
}

func hasKey(d *DB, key string) bool {
	_, ok := d.Get(key)
	return ok
}
