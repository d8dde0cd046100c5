//go:build !cgo

package lmdb_test

import (
	"errors"
	"testing"

	"github.com/tollgate/tollgate/internal/lmdb"
)

func TestOpenWithoutCgo(t *testing.T) {
	if _, err := lmdb.Open("/nonexistent"); !errors.Is(err, lmdb.ErrNoLMDB) {
		t.Fatalf("Open = %v; want %v", err, lmdb.ErrNoLMDB)
	}
}
