//go:build cgo

package lmdb

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync/atomic"

	lmdbgo "github.com/PowerDNS/lmdb-go/lmdb"
)

// DB is an open database; it may be used from many goroutines at once. It
// is closed when nothing refers to it any more (lmdb-go's finalizer), which
// is how a reload lets go of the file the previous configuration read.
type DB struct {
	env    *lmdbgo.Env
	dbi    lmdbgo.DBI
	closed atomic.Bool // LMDB crashes on a closed environment; Get must not reach it
}

// Open opens the database at path: a file written by mdb_load -n, or a
// directory holding data.mdb. Errors read "lmdb: PATH: reason".
func Open(path string) (*DB, error) {
	fail := func(err error) (*DB, error) {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("lmdb: %s: %w", path, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fail(err)
	}
	flags := uint(lmdbgo.Readonly | lmdbgo.NoLock | lmdbgo.NoReadahead)
	if !fi.IsDir() {
		if !fi.Mode().IsRegular() {
			return fail(errors.New("not a regular file or a directory"))
		}
		flags |= lmdbgo.NoSubdir
	}
	// Opening reads the file, so a file that is not LMDB (or cannot be
	// read) is refused here, at load time, not at the first lookup.
	f, err := os.Open(path)
	if err != nil {
		return fail(err)
	}
	f.Close()
	env, err := lmdbgo.NewEnv()
	if err != nil {
		return fail(err)
	}
	if err := env.Open(path, flags, 0o644); err != nil {
		env.Close()
		return fail(describe(err))
	}
	db := &DB{env: env}
	err = env.View(func(txn *lmdbgo.Txn) error {
		db.dbi, err = txn.OpenRoot(0)
		return err
	})
	if err != nil {
		env.Close()
		return fail(describe(err))
	}
	return db, nil
}

// describe turns LMDB's terse errors for a file that is not a database
// into words an operator can act on.
func describe(err error) error {
	switch {
	case lmdbgo.IsErrno(err, lmdbgo.Invalid):
		return errors.New("not an LMDB database (or one of another LMDB version)")
	case lmdbgo.IsErrno(err, lmdbgo.VersionMismatch):
		return errors.New("written by an incompatible LMDB version")
	case lmdbgo.IsErrno(err, lmdbgo.Corrupted):
		return errors.New("the database is corrupt")
	}
	return err
}

// Get returns the value stored under key, whether there is one, and an
// error when the lookup itself failed (a corrupt or truncated file). Each
// call is one read transaction, so it sees one committed state of the file.
func (db *DB) Get(key string) (value []byte, found bool, err error) {
	if key == "" {
		return nil, false, nil // LMDB refuses empty keys; none can be stored
	}
	if db.closed.Load() {
		return nil, false, ErrClosed
	}
	err = db.env.View(func(txn *lmdbgo.Txn) error {
		v, err := txn.Get(db.dbi, []byte(key))
		value = v // a copy: txn.RawRead is off
		return err
	})
	switch {
	case err == nil:
		return value, true, nil
	case lmdbgo.IsNotFound(err):
		return nil, false, nil
	}
	return nil, false, fmt.Errorf("lmdb: lookup: %w", err)
}

// Close closes the database at once; lookups after it fail with ErrClosed.
// It must not be called while a lookup may be running (a policy never calls
// it: its databases close when the policy is no longer referenced).
func (db *DB) Close() error {
	if db.closed.Swap(true) {
		return nil
	}
	return db.env.Close()
}
