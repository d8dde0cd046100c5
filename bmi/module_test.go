package bmi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/milter"
)

// scripted is a Backend whose result depends on the profile.
type scripted map[string]*ScanResult

func (scripted) Name() string   { return "scripted" }
func (scripted) MaxSize() int64 { return 1 << 20 }
func (s scripted) Scan(_ context.Context, msg io.ReadSeeker, size int64, _ Envelope, profile string) (*ScanResult, error) {
	msg.Seek(0, io.SeekStart) // one spool, one scan per profile
	b, _ := io.ReadAll(msg)
	if int64(len(b)) != size || !strings.HasPrefix(string(b), "Subject: x\r\nX-Brightmail-Tracker: forged\r\n\r\n") {
		return nil, fmt.Errorf("the scanner did not get headers and body: %q (%d/%d)", b, len(b), size)
	}
	if r, ok := s[profile]; ok {
		return r, nil
	}
	return nil, &Error{Backend: "scripted", Kind: KindDial, Err: errors.New("down")}
}

func runModule(t *testing.T, rules []Rule, backend Backend, rcpts map[string][]string, order []string) *milter.Txn {
	t.Helper()
	m := NewModule(ModuleOptions{Backend: backend, Rules: rules, Profiles: ProfileMap{ByOptin: map[string]string{"strict": "strict", "loose": "loose"}},
		Metrics: NewMetrics(prometheus.NewRegistry()), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	tx := &milter.Txn{Session: &milter.Session{}, Headers: []milter.Header{{Name: "Subject", Value: "x"}, {Name: "X-Brightmail-Tracker", Value: "forged"}}}
	tx.SetControl(ControlRun)
	ctx := context.Background()
	for _, a := range order {
		r := &milter.Recipient{Addr: a}
		m.Rcpt(ctx, tx, r)
		RcptFactsOf(r).Optins = rcpts[a]
		tx.Rcpts = append(tx.Rcpts, r)
	}
	m.Body(ctx, tx, nil)
	if err := m.EndOfMessage(ctx, tx); err != nil {
		t.Fatal(err)
	}
	err := m.Finalize(ctx, tx, milter.Decision{Verdict: milter.Accept})
	var rej *milter.Rejection
	if errors.As(err, &rej) {
		tx.Decision = rej.Decision
	} else if err != nil {
		t.Fatal(err)
	}
	m.TxnEnd(tx)
	return tx
}

func TestModuleOutcomes(t *testing.T) {
	spam := scripted{"strict": {Score: 6, Threshold: 5, IsSpam: true, Backend: "scripted", Profile: "strict"},
		"loose": {Score: 6, Threshold: 10, Backend: "scripted", Profile: "loose"}}
	rules := []Rule{
		{ID: 3, When: Conditions{IsSpam: new(true), Recipients: []string{"redirect@example.org"}}, Outcome: OutcomeAlternate, AltLocation: "redirect:spam@example.org"},
		{ID: 4, When: Conditions{IsSpam: new(true), Recipients: []string{"hold@example.org"}}, Outcome: OutcomeAlternate, AltLocation: "quarantine:looks like spam"},
		{ID: 5, When: Conditions{IsSpam: new(true), Recipients: []string{"tag@example.org"}}, Outcome: OutcomeAlternate, AltLocation: "header:X-Spam-Folder: Junk"},
		{ID: 7, When: Conditions{IsSpam: new(true)}, Outcome: OutcomeDrop},
	}
	mixed := runModule(t, rules, spam, map[string][]string{"drop@example.org": {"strict"}, "keep@example.org": {"loose"},
		"redirect@example.org": {"strict"}, "hold@example.org": {"strict"}}, []string{"drop@example.org", "keep@example.org", "redirect@example.org", "hold@example.org"})
	m := mixed.Mutations
	del, add := m.Envelope.Resolve(mixed.Rcpts)
	if strings.Join(del, ",") != "drop@example.org,redirect@example.org" || len(add) != 1 || add[0].Addr != "spam@example.org" ||
		m.Quarantine != "looks like spam" || len(m.RemoveAll) != 1 || m.RemoveAll[0] != "X-Brightmail-Tracker" {
		t.Errorf("mixed: %+v", m)
	}
	verdicts := 0
	for _, h := range m.Append {
		if h.Name == "X-Brightmail-Verdict" {
			verdicts++
		}
	}
	if verdicts != 3 { // keep (deliver), redirect, hold: three distinct verdicts; the dropped one gets none
		t.Errorf("%d verdict headers: %+v", verdicts, m.Append)
	}
	if r := RcptFactsOf(mixed.Rcpts[0]); r.Deliver || r.Outcome != "drop" || len(r.Fired) == 0 || r.Verdict == "" {
		t.Errorf("dropped recipient facts %+v", r)
	}

	// The alternate header is added only when every remaining recipient shares it.
	tagged := runModule(t, rules, spam, map[string][]string{"tag@example.org": {"strict"}}, []string{"tag@example.org"})
	if !hasHeader(tagged.Mutations.Append, "X-Spam-Folder", "Junk") {
		t.Errorf("shared header missing: %+v", tagged.Mutations.Append)
	}
	notShared := runModule(t, rules, spam, map[string][]string{"tag@example.org": {"strict"}, "keep@example.org": {"loose"}}, []string{"tag@example.org", "keep@example.org"})
	if hasHeader(notShared.Mutations.Append, "X-Spam-Folder", "Junk") {
		t.Errorf("header added for a recipient that did not ask: %+v", notShared.Mutations.Append)
	}

	// Everyone dropped: the message is discarded.
	all := runModule(t, rules, spam, map[string][]string{"a@example.org": {"strict"}, "b@example.org": {"strict"}}, []string{"a@example.org", "b@example.org"})
	if all.Decision.Verdict != milter.Discard {
		t.Errorf("all dropped: %+v", all.Decision)
	}

	// Scanner down for a profile: its recipients are delivered normally.
	down := runModule(t, rules, scripted{}, map[string][]string{"a@example.org": {"strict"}}, []string{"a@example.org"})
	if r := RcptFactsOf(down.Rcpts[0]); !r.Deliver || r.Scanned || r.Verdict != "" || !down.Mutations.Envelope.Empty() || FactsOf(down).Reason != KindDial {
		t.Errorf("scanner down: %+v %+v", r, FactsOf(down))
	}
}

func hasHeader(hs []milter.HeaderField, name, value string) bool {
	for _, h := range hs {
		if h.Name == name && h.Value == value {
			return true
		}
	}
	return false
}
