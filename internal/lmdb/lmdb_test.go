//go:build cgo

package lmdb_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	lmdbgo "github.com/PowerDNS/lmdb-go/lmdb"

	"github.com/tollgate/tollgate/internal/lmdb"
)

// writeDB writes pairs into a new database with lmdb-go's own writer (the
// e2e test uses Debian's mdb_load); subdir chooses data.mdb in a directory
// over a single file.
func writeDB(t testing.TB, path string, subdir bool, pairs map[string]string) {
	t.Helper()
	env, err := lmdbgo.NewEnv()
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	if err := env.SetMapSize(64 << 20); err != nil {
		t.Fatal(err)
	}
	flags := uint(0)
	if subdir {
		if err := os.MkdirAll(path, 0o755); err != nil {
			t.Fatal(err)
		}
	} else {
		flags = lmdbgo.NoSubdir
	}
	if err := env.Open(path, flags, 0o644); err != nil {
		t.Fatal(err)
	}
	err = env.Update(func(txn *lmdbgo.Txn) error {
		dbi, err := txn.OpenRoot(0)
		if err != nil {
			return err
		}
		for k, v := range pairs {
			if err := txn.Put(dbi, []byte(k), []byte(v), 0); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The writer's lock file goes, so that a reader making one shows.
	os.Remove(lockFile(path, subdir))
}

func lockFile(path string, subdir bool) string {
	if subdir {
		return filepath.Join(path, "lock.mdb")
	}
	return path + "-lock"
}

func TestGet(t *testing.T) {
	for _, subdir := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "db")
		writeDB(t, path, subdir, map[string]string{"example.org": "relay", "10.0.0.1": "", "Mixed.Case": "x"})
		db, err := lmdb.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		for key, want := range map[string]string{"example.org": "relay", "10.0.0.1": ""} {
			v, ok, err := db.Get(key)
			if err != nil || !ok || string(v) != want {
				t.Errorf("subdir=%v Get(%q) = %q, %v, %v; want %q", subdir, key, v, ok, err, want)
			}
		}
		// Keys are bytes: no case folding in the database itself.
		for _, key := range []string{"example.net", "mixed.case", ""} {
			if v, ok, err := db.Get(key); ok || err != nil {
				t.Errorf("Get(%q) = %q, %v, %v; want not found", key, v, ok, err)
			}
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := db.Get("example.org"); !errors.Is(err, lmdb.ErrClosed) {
			t.Errorf("Get after Close = %v; want ErrClosed", err)
		}
		// No lock file was made beside the database: read-only needs no write access.
		if _, err := os.Stat(lockFile(path, subdir)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("subdir=%v: a lock file was created: %v", subdir, err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk")
	if err := os.WriteFile(junk, []byte(strings.Repeat("not lmdb\n", 2000)), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	unreadable := filepath.Join(dir, "unreadable")
	writeDB(t, unreadable, false, map[string]string{"a": "b"})
	if err := os.Chmod(unreadable, 0); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		filepath.Join(dir, "missing"): "no such file or directory",
		junk:                          "not an LMDB database",
		empty:                         "",
		"/dev/null":                   "not a regular file",
	} {
		_, err := lmdb.Open(path)
		if err == nil || !strings.HasPrefix(err.Error(), "lmdb: "+path+": ") || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%s) = %v; want lmdb: %s: ...%s", path, err, path, want)
		}
	}
	if os.Geteuid() != 0 { // root reads a mode-0 file
		if _, err := lmdb.Open(unreadable); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("Open(unreadable) = %v", err)
		}
	}
}

// TestReplacedByRename is the documented way to update a database: the
// open one keeps answering from the old file, a new Open sees the new one.
func TestReplacedByRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "db")
	writeDB(t, path, false, map[string]string{"old.example": "1"})
	db, err := lmdb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	writeDB(t, path+".tmp", false, map[string]string{"new.example": "2"})
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := db.Get("old.example"); !ok || err != nil {
		t.Errorf("old handle lost its data: %v %v", ok, err)
	}
	db2, err := lmdb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if _, ok, _ := db2.Get("new.example"); !ok {
		t.Error("new handle does not see the new file")
	}
	if _, ok, _ := db2.Get("old.example"); ok {
		t.Error("new handle sees the old file")
	}
}
