package milter

import (
	"sync/atomic"
	"testing"

	gomilter "github.com/d--j/go-milter"
)

// heldRuntime counts who holds it.
type heldRuntime struct {
	fakeRuntime
	holds    atomic.Int64
	released atomic.Int64 // times the count went to zero
}

func (h *heldRuntime) Hold() { h.holds.Add(1) }
func (h *heldRuntime) Release() {
	if h.holds.Add(-1) == 0 {
		h.released.Add(1)
	}
}

// The server holds a runtime while it is the current or previous one and
// while a session started with it is open; the last release happens once
// neither is true, and only then (a reload must not close a store under a
// session still using it).
func TestServerHoldsRuntimes(t *testing.T) {
	first := &heldRuntime{}
	ts := startServer(t, first)
	if first.holds.Load() != 1 {
		t.Fatalf("current runtime held %d times", first.holds.Load())
	}
	s := ts.session(t, nil)
	must(t)(s.Conn("h", gomilter.FamilyInet, 1, "192.0.2.1"))
	// Without a connect reply to wait for, the client is back before the
	// server has taken the session.
	waitFor(t, func() bool { return first.holds.Load() == 2 })
	second, third := &heldRuntime{}, &heldRuntime{}
	ts.srv.SetRuntime(second)
	ts.srv.SetRuntime(third) // first is neither current nor previous now
	if first.released.Load() != 0 || first.holds.Load() != 1 {
		t.Fatalf("released under an open session: holds %d", first.holds.Load())
	}
	s.Close()
	waitFor(t, func() bool { return first.released.Load() == 1 })
	if second.holds.Load() != 1 || third.holds.Load() != 1 || second.released.Load() != 0 {
		t.Errorf("previous %d, current %d holds", second.holds.Load(), third.holds.Load())
	}
}
