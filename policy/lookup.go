package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tollgate/tollgate/internal/cdb"
	"github.com/tollgate/tollgate/internal/lmdb"
)

// Key lookups in databases, for list items (cdb:/path, lmdb:/path) and
// expansions (${lookup{key}lmdb{/path}}). A database is opened once per
// load, however many lists and expansions name it, and belongs to the
// policy that opened it: a reload (SIGHUP, or a watched file that changed)
// opens the new file beside the old, which sessions in flight keep using.

// lookupDB is one opened database.
type lookupDB struct {
	kind string // "cdb" or "lmdb": the metric's label, never the path
	path string
	get  func(key string) ([]byte, bool, error)
	// close is for tests (a failing lookup); a policy's databases close
	// when nothing refers to them any more.
	close func() error
	// report is set by the Runtime that serves the policy: a failed lookup
	// is counted and logged there, as a list item cannot return an error.
	report atomic.Pointer[func(kind string, err error)]
}

// value returns the value under key, "" and false when there is none or the
// lookup failed (after reporting the failure).
func (db *lookupDB) value(key string) (string, bool) {
	v, ok, err := db.get(key)
	if err != nil {
		if r := db.report.Load(); r != nil {
			(*r)(db.kind, fmt.Errorf("%s:%s: %w", db.kind, db.path, err))
		}
		return "", false
	}
	return string(v), ok
}

func (db *lookupDB) has(key string) bool {
	_, ok := db.value(key)
	return ok
}

// lookupKinds are the database kinds an item or a lookup may name.
var lookupKinds = []string{"cdb", "lmdb"}

// openLookup opens the database of kind at path for the item or expansion
// at line, or reports why it cannot and returns nil; where prefixes the
// message ("path:line: " for an item read from a file).
func (d *decoder) openLookup(line int, where, kind, path string) *lookupDB {
	key := kind + ":" + path
	if db, ok := d.dbs[key]; ok {
		return db
	}
	if !filepath.IsAbs(path) {
		d.errorf(line, "%s%s: the path must be absolute (the daemon's working directory is not the configuration's)", where, key)
		return nil
	}
	db := &lookupDB{kind: kind, path: path}
	d.watch(path)
	switch kind {
	case "cdb":
		c, err := cdb.Open(path)
		if err != nil {
			d.errorf(line, "%s%s: %v", where, key, strings.TrimPrefix(err.Error(), "cdb: "+path+": "))
			return nil
		}
		db.get = func(k string) ([]byte, bool, error) {
			v, ok := c.Get(k)
			return v, ok, nil
		}
		db.close = func() error { return nil }
	case "lmdb":
		l, err := lmdb.Open(path)
		if errors.Is(err, lmdb.ErrNoLMDB) {
			d.errorf(line, "%s%s: %v", where, key, err)
			return nil
		}
		if err != nil {
			d.errorf(line, "%s%s: %v", where, key, strings.TrimPrefix(err.Error(), "lmdb: "+path+": "))
			return nil
		}
		db.get, db.close = l.Get, l.Close
		if fi, err := os.Stat(path); err == nil && fi.IsDir() {
			d.watch(filepath.Join(path, "data.mdb"))
		}
	default:
		d.errorf(line, "%s%q is not a lookup type (%s)", where, kind, strings.Join(lookupKinds, ", "))
		return nil
	}
	if d.dbs == nil {
		d.dbs = map[string]*lookupDB{}
	}
	d.dbs[key] = db
	return db
}

// fileStamp is what the watcher compares to tell that a file changed: a
// rename over it (a new inode), a rewrite (size, time), or its removal.
type fileStamp struct {
	path  string
	ino   uint64
	dev   uint64
	size  int64
	mtime time.Time
	err   string // why it could not be read; a file that comes back is a change
}

func stampFile(path string) fileStamp {
	st := fileStamp{path: path}
	fi, err := os.Stat(path)
	if err != nil {
		st.err = unwrapPathError(err).Error()
		return st
	}
	st.size, st.mtime = fi.Size(), fi.ModTime()
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino, st.dev = sys.Ino, uint64(sys.Dev) //nolint:unconvert // Dev is not uint64 everywhere
	}
	return st
}

// watch records a file the policy read, stamped before it is read: a
// change while it is being read then shows at the next check.
func (d *decoder) watch(path string) {
	for _, st := range d.watched {
		if st.path == path {
			return
		}
	}
	d.watched = append(d.watched, stampFile(path))
}

// FileStamps are the stamps of the files a policy read.
type FileStamps []fileStamp

// Equal reports whether two sets of stamps describe the same files in the
// same state.
func (s FileStamps) Equal(o FileStamps) bool {
	if len(s) != len(o) {
		return false
	}
	for i := range s {
		if s[i] != o[i] {
			return false
		}
	}
	return true
}

// Paths are the files' names, for a log line.
func (s FileStamps) Paths() []string {
	out := make([]string, len(s))
	for i, st := range s {
		out[i] = st.path
	}
	return out
}

// Changed returns the files that differ from when the policy read them, and
// the current stamps of all its files (to pass over a change a reload
// refused until the files change again). It only stats the files.
func (p *Policy) Changed() (changed, now FileStamps) {
	now = make(FileStamps, len(p.watched))
	for i, st := range p.watched {
		now[i] = stampFile(st.path)
		if now[i] != st {
			changed = append(changed, now[i])
		}
	}
	return changed, now
}

// Reread compiles the policy again from the configuration it was loaded
// from, as it was then (the file on disk may have been edited since: only
// SIGHUP reads that), so the lists and lookups read their files anew. The
// old policy is unchanged and keeps its databases open while in use.
func (p *Policy) Reread() (*Policy, error) {
	return Parse(p.File, p.source, p.specs...)
}
