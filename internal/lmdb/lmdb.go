// Package lmdb reads LMDB databases (as mdb_load writes them) for key
// lookups in policy lists and expansions: the keys of the unnamed (main)
// database, byte for byte, as Exim's lmdb lookup reads them.
//
// The database is opened read-only and without LMDB's lock file
// (MDB_RDONLY|MDB_NOLOCK). That needs no write access anywhere (the lock
// file would have to be writable by the daemon), never blocks a writer and
// lets one process open the same file twice: a reload opens the new file
// while sessions still read the old one, and LMDB's POSIX locks would be
// dropped for both when the old one is closed. The price is that a writer
// cannot see our readers: a database rewritten in place (mdb_load into the
// live file) may reuse pages a lookup is reading, so a lookup during such a
// write can fail or, in principle, answer wrongly. Update a database by
// writing a new file and renaming it over the old one (mdb_load -n -f
// FILE.tmp, then mv FILE.tmp FILE): the open map keeps the old file's pages
// until it is closed, and the next load opens the new one.
//
// This package needs cgo (LMDB is C); a build without cgo has Open return
// ErrNoLMDB.
package lmdb

import "errors"

// ErrNoLMDB is Open's error in a build without cgo.
var ErrNoLMDB = errors.New("this build has no LMDB support (built without cgo)")

// ErrClosed is Get's error after Close.
var ErrClosed = errors.New("lmdb: the database is closed")
