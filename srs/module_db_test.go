package srs_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/milter"
	"github.com/tollgate/tollgate/srs"
	"github.com/tollgate/tollgate/srs/store"
)

func dbModule(t *testing.T, st store.Store, always bool) (*srs.Module, *srs.SRS) {
	t.Helper()
	s, err := srs.New(srs.Options{Domain: "fwd.example.org", Secrets: []string{"k1"}})
	if err != nil {
		t.Fatal(err)
	}
	return srs.NewModule(srs.ModuleOptions{SRS: s, DB: store.NewDB(s, st, srs.DefaultMaxAge), Always: always,
		Metrics: srs.NewMetrics(prometheus.NewRegistry()), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}), s
}

func forward(t *testing.T, m *srs.Module, sender string) *milter.Txn {
	t.Helper()
	tx := &milter.Txn{Session: &milter.Session{}, Sender: sender}
	tx.SetControl(srs.ControlForward)
	if err := m.Finalize(context.Background(), tx, milter.Decision{Verdict: milter.Accept}); err != nil {
		t.Fatal(err)
	}
	return tx
}

func rcpt(m *srs.Module, addr string) (*milter.Recipient, *milter.Rejection) {
	r := &milter.Recipient{Addr: addr}
	err := m.Rcpt(context.Background(), &milter.Txn{Session: &milter.Session{}}, r)
	var rej *milter.Rejection
	errors.As(err, &rej)
	return r, rej
}

func TestDatabaseModeThroughTheModule(t *testing.T) {
	bolt, err := store.OpenBolt(filepath.Join(t.TempDir(), "srs.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	long, _ := dbModule(t, bolt, false)

	// A short sender keeps ordinary SRS; a long one goes to the database.
	if tx := forward(t, long, "alice@example.net"); strings.Contains(srs.FactsOf(tx).NewSender, "=_db=") || srs.FactsOf(tx).DBKey != "" {
		t.Errorf("short sender: %+v", srs.FactsOf(tx))
	}
	longSender := strings.Repeat("very-long-local-part.", 6) + "@example.net"
	tx := forward(t, long, longSender)
	if !strings.Contains(srs.FactsOf(tx).NewSender, "=_db=") || srs.FactsOf(tx).DBKey == "" || len(milter.LocalPart(srs.FactsOf(tx).NewSender)) > 64 {
		t.Fatalf("long sender: %+v", srs.FactsOf(tx))
	}
	r, rej := rcpt(long, srs.FactsOf(tx).NewSender)
	if rej != nil || srs.RcptFactsOf(r).Status != "valid" || srs.RcptFactsOf(r).Recipient != longSender || srs.RcptFactsOf(r).DBKey != srs.FactsOf(tx).DBKey {
		t.Errorf("reverse: %+v %v", srs.RcptFactsOf(r), rej)
	}
	// Ordinary SRS addresses still reverse with a database configured.
	plain := srs.FactsOf(forward(t, long, "bob@example.net")).NewSender
	if r, rej := rcpt(long, plain); rej != nil || srs.RcptFactsOf(r).Recipient != "bob@example.net" {
		t.Errorf("plain reverse: %+v %v", srs.RcptFactsOf(r), rej)
	}

	// A signed key the store does not have: 5xx unknown.
	always, _ := dbModule(t, bolt, true)
	other, err := store.OpenBolt(filepath.Join(t.TempDir(), "other.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	elsewhere, _ := dbModule(t, other, true)
	addr := srs.FactsOf(forward(t, elsewhere, "carol@example.net")).NewSender
	if _, rej := rcpt(always, addr); rej == nil || rej.Decision.Reply.Code != 550 || !strings.Contains(rej.Decision.Reply.Text, "unknown") {
		t.Errorf("unknown key: %+v", rej)
	}
}

func TestDatabaseModeStoreDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	redis, err := store.NewRedis(store.RedisOptions{Addr: addr, DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	m, s := dbModule(t, redis, true)
	// Forwarding cannot store: the sender stays as it is and the message goes on.
	if tx := forward(t, m, "alice@example.net"); tx.Mutations.Envelope.Sender() != nil {
		t.Errorf("rewritten without a store: %+v", tx.Mutations.Envelope.Sender())
	}
	// A genuine database address while the store is down: 4xx, try later.
	bolt, _ := store.OpenBolt(filepath.Join(t.TempDir(), "srs.db"))
	defer bolt.Close()
	db := store.NewDB(s, bolt, srs.DefaultMaxAge)
	genuine, _, err := db.Forward(context.Background(), "alice@example.net")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r, rej := rcpt(m, genuine)
	if rej == nil || rej.Decision.Verdict != milter.TempFail || rej.Decision.Reply.Code != 451 || srs.RcptFactsOf(r).Status != "unavailable" {
		t.Errorf("store down: %+v %+v", rej, srs.RcptFactsOf(r))
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("took %v with the store down", time.Since(start))
	}
}
