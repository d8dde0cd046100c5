// Package cdb reads constant databases (D. J. Bernstein's cdb format, as
// written by tinycdb's "cdb -c" and cdbmake) for key lookups in policy lists.
//
// It is hand-written rather than a dependency: the format is a 2048-byte
// header and linear-probed hash tables, a reader is some sixty lines, and
// neither FACTS.md nor the module proxy offered a maintained, pinned
// library. A database is read whole into memory when it is opened, so a
// policy holds the contents it was loaded with even when the file is
// replaced, and every lookup is bounds-checked against that copy: a corrupt
// or truncated file answers "not found" instead of panicking.
package cdb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

const headerSize = 2048

// MaxSize bounds the databases Open reads, so that a wrong path (a disk
// image) gets an error instead of filling memory.
const MaxSize = 1 << 30

// DB is a read-only database in memory; it may be used from many
// goroutines at once.
type DB struct{ data []byte }

// Open reads the database at path. Errors read "cdb: PATH: reason".
func Open(path string) (*DB, error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("cdb: %s: %w", path, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("cdb: %s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("cdb: %s: %w", path, err)
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("cdb: %s: larger than %d MiB", path, MaxSize>>20)
	}
	db, err := New(data)
	if err != nil {
		return nil, fmt.Errorf("cdb: %s: %w", path, errors.Unwrap(err))
	}
	return db, nil
}

// New checks the header of a database held in data (which it keeps).
func New(data []byte) (*DB, error) {
	if len(data) < headerSize {
		return nil, fmt.Errorf("cdb: %w", errors.New("not a cdb file: shorter than its 2048-byte header"))
	}
	for i := range 256 {
		pos, slots := le32(data, i*8), le32(data, i*8+4)
		if pos < headerSize || pos > uint64(len(data)) || slots*8 > uint64(len(data))-pos {
			return nil, fmt.Errorf("cdb: %w", fmt.Errorf("not a cdb file: hash table %d lies outside the file", i))
		}
	}
	return &DB{data: data}, nil
}

func le32(b []byte, off int) uint64 { return uint64(binary.LittleEndian.Uint32(b[off:])) }

// Hash is cdb's hash function (djb's "times 33 xor").
func Hash(key []byte) uint32 {
	h := uint32(5381)
	for _, c := range key {
		h = (h<<5 + h) ^ uint32(c)
	}
	return h
}

// Get returns the value stored under key (the first, if the database holds
// several) and whether there is one.
func (db *DB) Get(key string) ([]byte, bool) {
	h := Hash([]byte(key))
	table := int(h&255) * 8
	pos, slots := le32(db.data, table), le32(db.data, table+4)
	if slots == 0 {
		return nil, false
	}
	start := (uint64(h) >> 8) % slots
	for i := range slots {
		slot := int(pos + (start+i)%slots*8)
		slotHash, rec := le32(db.data, slot), le32(db.data, slot+4)
		if rec == 0 {
			return nil, false
		}
		if uint32(slotHash) != h {
			continue
		}
		if rec > uint64(len(db.data))-8 {
			return nil, false
		}
		klen, dlen := le32(db.data, int(rec)), le32(db.data, int(rec)+4)
		body := rec + 8
		if klen+dlen > uint64(len(db.data))-body {
			return nil, false
		}
		if string(db.data[body:body+klen]) == key {
			return db.data[body+klen : body+klen+dlen], true
		}
	}
	return nil, false
}
