package milter

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tollgate/tollgate/internal/dkimsig"
)

// hashingModule asks for one body hash at end of headers and keeps its
// Sum as end of message sees it; late asks once more from the Body hook.
type hashingModule struct {
	name  string
	canon dkimsig.Canon
	limit int64

	mu      sync.Mutex
	hashes  []*dkimsig.BodyHash // one per message, as asked
	sums    [][]byte            // as EndOfMessage saw them
	lateErr error
}

func (m *hashingModule) Name() string { return m.name }

func (m *hashingModule) EndOfHeaders(_ context.Context, t *Txn) error {
	h, err := t.BodyHash(m.canon, crypto.SHA256, m.limit)
	if err != nil {
		return err
	}
	t.SetState(m.name, h)
	m.mu.Lock()
	m.hashes = append(m.hashes, h)
	m.mu.Unlock()
	return nil
}

func (m *hashingModule) Body(_ context.Context, t *Txn, _ []byte) error {
	_, err := t.BodyHash(m.canon, crypto.SHA256, 3)
	m.mu.Lock()
	m.lateErr = err
	m.mu.Unlock()
	return nil
}

func (m *hashingModule) EndOfMessage(_ context.Context, t *Txn) error {
	h := t.State(m.name).(*dkimsig.BodyHash)
	m.mu.Lock()
	m.sums = append(m.sums, h.Sum)
	m.mu.Unlock()
	return nil
}

func canonHash(c dkimsig.Canon, limit int64, body string) []byte {
	sink := dkimsig.BodyHash{Hash: sha256.New(), Limit: limit}
	bc := dkimsig.BodyCanon{Relaxed: c == dkimsig.Relaxed, Sinks: []*dkimsig.BodyHash{&sink}}
	bc.Write([]byte(body))
	bc.Close()
	return sink.Sum
}

// TestBodyHashedOncePerCanonicalization: three modules (two wanting the
// relaxed hash, one the simple hash of the first 100 bytes) get their
// hashes from one pass per canonicalization, over a body that arrives in
// several chunks; an empty body still gets its hashes; a module asking
// once the body streams is refused; nothing carries into the next message.
func TestBodyHashedOncePerCanonicalization(t *testing.T) {
	a := &hashingModule{name: "a", canon: dkimsig.Relaxed, limit: -1}
	b := &hashingModule{name: "b", canon: dkimsig.Relaxed, limit: -1}
	c := &hashingModule{name: "c", canon: dkimsig.Simple, limit: 100}
	ts := startServer(t, &fakeRuntime{mods: []Module{a, b, c}, needs: Needs{Headers: true, Body: true}})
	s := ts.session(t, nil)
	envelope(t, s, "a@example.net", "b@example.org")
	body := strings.Repeat("a line  with\ttabs and  blanks \r\n", 5000) + "\r\n\r\n" // > one 64 KiB chunk
	sendMessage(t, s, [][2]string{{"Subject", " hashed"}}, body)
	// go-milter's client cannot send an empty body; Postfix sends end of
	// message right after the header fields.
	exchange(t, ts.sock, cat(optneg, packet('C', "h\x004\x9c\x40192.0.2.1\x00"), packet('H', "h\x00"),
		packet('M', "<c@example.net>\x00"), packet('R', "<d@example.org>\x00"), packet('L', "Subject\x00 empty\x00"),
		packet('E', ""), packet('Q', "")))
	waitFor(t, func() bool { return testutil.ToFloat64(ts.metrics.Messages.WithLabelValues("accept")) == 2 })

	relaxed := ts.metrics.BodyCanonicalizations.WithLabelValues("relaxed")
	simple := ts.metrics.BodyCanonicalizations.WithLabelValues("simple")
	if r, s := testutil.ToFloat64(relaxed), testutil.ToFloat64(simple); r != 2 || s != 2 {
		t.Errorf("canonicalization passes for 2 messages: relaxed %v, simple %v; want 2 each", r, s)
	}
	for i, want := range []struct{ relaxed, simple []byte }{
		{canonHash(dkimsig.Relaxed, -1, body), canonHash(dkimsig.Simple, 100, body)},
		{canonHash(dkimsig.Relaxed, -1, ""), canonHash(dkimsig.Simple, 100, "")},
	} {
		if a.hashes[i] != b.hashes[i] {
			t.Errorf("message %d: a and b asked for the same hash and got two", i+1)
		}
		if i > 0 && a.hashes[i] == a.hashes[i-1] {
			t.Errorf("message %d shares its hash with the message before", i+1)
		}
		if !bytes.Equal(a.sums[i], want.relaxed) || !bytes.Equal(b.sums[i], want.relaxed) || !bytes.Equal(c.sums[i], want.simple) {
			t.Errorf("message %d: hashes differ from a standalone canonicalization", i+1)
		}
	}
	if !errors.Is(a.lateErr, dkimsig.ErrBodyStarted) {
		t.Errorf("asking from the Body hook: %v, want ErrBodyStarted", a.lateErr)
	}
}

type eohFailure struct{}

func (eohFailure) Name() string { return "eohfail" }
func (eohFailure) EndOfHeaders(context.Context, *Txn) error {
	return errors.New("key table unreadable")
}
func (eohFailure) EndOfMessage(context.Context, *Txn) error { return nil }

// TestEndOfHeadersFailureIsOnError: a failing EndOfHeaders hook is a module
// failure like any other, decided at end of message by on_error; a module
// with only that hook still gets the body negotiated.
func TestEndOfHeadersFailureIsOnError(t *testing.T) {
	if n := RuntimeNeeds(&fakeRuntime{mods: []Module{eohFailure{}}}); !n.Body {
		t.Error("an EndOfHeaders hook without Needs does not get the body")
	}
	onError := Decision{Verdict: TempFail, Rule: "on_error", Reply: Reply{451, "4.3.0", "local problem"}}
	ts := startServer(t, &fakeRuntime{mods: []Module{eohFailure{}}, onError: onError})
	s := ts.session(t, nil)
	envelope(t, s, "a@example.net", "b@example.org")
	if _, act := sendMessage(t, s, [][2]string{{"Subject", " x"}}, "body\r\n"); act.SMTPCode != 451 {
		t.Errorf("end of message %+v, want on_error's 451", act)
	}
	if got := testutil.ToFloat64(ts.metrics.ModuleErrors.WithLabelValues("eohfail", "error")); got != 1 {
		t.Errorf("module_errors{eohfail,error} = %v", got)
	}
}
