//go:build !cgo

package lmdb

// DB is never returned by this build.
type DB struct{}

// Open always fails in a build without cgo.
func Open(path string) (*DB, error) { return nil, ErrNoLMDB }

// Get is never reached: Open returns no DB.
func (db *DB) Get(key string) ([]byte, bool, error) { return nil, false, ErrNoLMDB }

// Close does nothing.
func (db *DB) Close() error { return nil }
