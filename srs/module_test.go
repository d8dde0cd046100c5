package srs

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tollgate/tollgate/milter"
)

func testModule(t *testing.T, now time.Time) (*Module, *SRS, *Metrics) {
	t.Helper()
	s, err := New(Options{Domain: "fwd.example.org", Secrets: []string{"new-secret", "old-secret"}, HashLength: 6, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(prometheus.NewRegistry())
	return NewModule(ModuleOptions{SRS: s, Metrics: m, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Local: func(d string) bool { return d == "example.org" }}), s, m
}

func TestModuleReverse(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	mod, s, metrics := testModule(t, now)
	valid, _ := s.Forward("alice@example.net")
	old, _ := New(Options{Domain: "fwd.example.org", Secrets: []string{"new-secret"}, HashLength: 6, Now: func() time.Time { return now.Add(-40 * Day) }})
	expired, _ := old.Forward("bob@example.net")
	forged := strings.Replace(valid, valid[5:11], "AAAAAA", 1)
	tx := &milter.Txn{Session: &milter.Session{}}
	for _, tc := range []struct {
		addr   string
		status string
		reject bool
	}{
		{valid, "valid", false},
		{strings.ToLower(valid), "valid", false},
		{expired, "expired", true},
		{forged, "invalid", true},
		{"postmaster@fwd.example.org", "none", false},
		{"SRS0=abc@elsewhere.test", "", false}, // not our domain: not looked at
	} {
		r := &milter.Recipient{Addr: tc.addr}
		err := mod.Rcpt(context.Background(), tx, r)
		var rej *milter.Rejection
		if got := errors.As(err, &rej); got != tc.reject {
			t.Errorf("%s: rejection %v (%v)", tc.addr, got, err)
		}
		if rej != nil && (rej.Decision.Reply.Code != 550 || rej.Decision.Reply.Enhanced != "5.1.1") {
			t.Errorf("%s: reply %+v", tc.addr, rej.Decision.Reply)
		}
		f := RcptFactsOf(r)
		switch {
		case tc.status == "" && f != nil:
			t.Errorf("%s: facts for a foreign address: %+v", tc.addr, f)
		case tc.status != "" && (f == nil || f.Status != tc.status):
			t.Errorf("%s: facts %+v, want %s", tc.addr, f, tc.status)
		}
		if tc.status == "valid" && f.Recipient != "alice@example.net" {
			t.Errorf("%s reversed to %q", tc.addr, f.Recipient)
		}
	}
	if testutil.ToFloat64(metrics.Reverse.WithLabelValues("valid")) != 2 || testutil.ToFloat64(metrics.Reverse.WithLabelValues("expired")) != 1 ||
		testutil.ToFloat64(metrics.Reverse.WithLabelValues("bad_hash")) != 1 {
		t.Error("reverse metrics")
	}
}

func TestModuleFinalize(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	mod, s, metrics := testModule(t, now)
	bounce, _ := s.Forward("alice@example.net")
	run := func(sender string, control bool, d milter.Verdict) *milter.Txn {
		tx := &milter.Txn{Session: &milter.Session{}, Sender: sender}
		if control {
			tx.SetControl(ControlForward)
		}
		r := &milter.Recipient{Addr: bounce}
		mod.Rcpt(context.Background(), tx, r)
		tx.Rcpts = []*milter.Recipient{r, {Addr: "bob@example.org"}}
		mod.Finalize(context.Background(), tx, milter.Decision{Verdict: d})
		return tx
	}
	tx := run("carol@example.net", true, milter.Accept)
	if from := tx.Mutations.Envelope.Sender(); from == nil || !strings.HasPrefix(from.Addr, "SRS0=") ||
		!strings.HasSuffix(from.Addr, "=example.net=carol@fwd.example.org") || FactsOf(tx).OrigSender != "carol@example.net" ||
		!slices.Equal(tx.Tags, [][2]string{{"srs_recipient", "<alice@example.net>"}, {"SRS", from.Addr}, {"srs", "reversed,forwarded"}}) {
		t.Errorf("forward: %+v %+v %v", from, FactsOf(tx), tx.Tags)
	}
	if del, add := tx.Mutations.Envelope.Resolve(tx.Rcpts); len(del) != 1 || del[0] != bounce || len(add) != 1 || add[0].Addr != "alice@example.net" {
		t.Errorf("reverse: delete %v add %v", del, add)
	}
	// A reversed recipient that the policy then refused is not replaced.
	tx.Rcpts[0].Decision = milter.Decision{Verdict: milter.Reject}
	if del, add := tx.Mutations.Envelope.Resolve(tx.Rcpts); len(del) != 0 || len(add) != 0 {
		t.Errorf("refused recipient replaced: delete %v add %v", del, add)
	}
	for _, tc := range []struct {
		sender  string
		control bool
		d       milter.Verdict
		result  string
	}{
		{"", true, milter.Accept, "skipped_null_sender"},
		{"dave@example.org", true, milter.Accept, "skipped_local"},
		{bounce, true, milter.Accept, "skipped_ours"},
		{"erin@example.net", false, milter.Accept, ""},
		{"erin@example.net", true, milter.Reject, ""},
	} {
		tx := run(tc.sender, tc.control, tc.d)
		if tx.Mutations.Envelope.Sender() != nil {
			t.Errorf("%+v: rewritten", tc)
		}
		// The bounce to the SRS address is reversed whenever the message is accepted.
		wantTags := [][2]string{{"srs_recipient", "<alice@example.net>"}, {"srs", "reversed"}}
		if tc.d != milter.Accept {
			wantTags = nil
		}
		if !slices.Equal(tx.Tags, wantTags) {
			t.Errorf("%+v: tags %v, want %v", tc, tx.Tags, wantTags)
		}
		if tc.result != "" && testutil.ToFloat64(metrics.Forward.WithLabelValues(tc.result)) != 1 {
			t.Errorf("%+v: metric %s not counted", tc, tc.result)
		}
	}
}
