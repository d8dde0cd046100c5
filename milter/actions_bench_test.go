package milter_test

// Benchmarks of Mutations.Apply, the one place that writes changes to the
// MTA, against an MTA that only counts:
//
//	go test -run '^$' -bench Apply -benchmem ./milter/

import (
	"fmt"
	"testing"

	"github.com/tollgate/tollgate/milter"
)

// countingMTA accepts every change.
type countingMTA struct{ n int }

func (m *countingMTA) ChangeHeader(int, string, string) error { m.n++; return nil }
func (m *countingMTA) InsertHeader(int, string, string) error { m.n++; return nil }
func (m *countingMTA) ChangeFrom(string, string) error        { m.n++; return nil }
func (m *countingMTA) AddRecipient(string, string) error      { m.n++; return nil }
func (m *countingMTA) DeleteRecipient(string) error           { m.n++; return nil }
func (m *countingMTA) Quarantine(string) error                { m.n++; return nil }

func applyHeaders(n int) []milter.Header {
	hdrs := []milter.Header{
		{Name: "Received", Value: " from a by b"}, {Name: "X-Tollgate-Checked", Value: " forged"},
		{Name: "From", Value: " a@example.net"}, {Name: "To", Value: " b@example.org"}, {Name: "Subject", Value: " hi"},
		{Name: "Date", Value: " Tue, 03 Mar 2026 10:15:01 +0100"}, {Name: "Message-ID", Value: " <1@example.net>"},
		{Name: "ARC-Seal", Value: " i=1; forged"}, {Name: "Authentication-Results", Value: " mx.example.org; forged"},
		{Name: "MIME-Version", Value: " 1.0"},
	}
	for i := len(hdrs); i < n; i++ {
		hdrs = append(hdrs, milter.Header{Name: "Received", Value: fmt.Sprintf(" from relay%d.example.com by relay%d.example.com", i, i+1)})
	}
	return hdrs[:n]
}

func BenchmarkApply(b *testing.B) {
	arc := func() milter.Mutations {
		m := milter.Mutations{
			RemoveAll:   []string{"X-Tollgate-Checked", "X-Spam-Flag"},
			ARCSet:      []milter.HeaderField{{Name: "ARC-Seal", Value: "i=2; a=rsa-sha256; t=1772529302; cv=pass; d=example.org; s=arc2026; b=abc"}, {Name: "ARC-Message-Signature", Value: "i=2; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=arc2026; h=from:to; bh=abc; b=def"}, {Name: "ARC-Authentication-Results", Value: "i=2; mx.example.org; arc=pass"}},
			AuthResults: []milter.HeaderField{{Name: "Authentication-Results", Value: "mx.example.org; arc=pass (i=1); dkim=pass header.d=example.net"}},
			Prepend:     []milter.HeaderField{{Name: "X-Tollgate-Checked", Value: "mx.example.org for [203.0.113.5]"}},
		}
		if err := m.Envelope.ChangeSender("SRS0=HHH=TT=example.net=sender@fwd.example.org", "", "srs"); err != nil {
			panic(err)
		}
		return m
	}
	for _, c := range []struct {
		name    string
		headers int
		muts    func() milter.Mutations
	}{
		{"empty", 10, func() milter.Mutations { return milter.Mutations{} }},
		// What the example configuration proposes for an accepted message.
		{"example/10-headers", 10, func() milter.Mutations {
			return milter.Mutations{RemoveAll: []string{"X-Tollgate-Checked"},
				Prepend: []milter.HeaderField{{Name: "X-Tollgate-Checked", Value: "mx.example.org for [203.0.113.5]"}}}
		}},
		{"example/100-headers", 100, func() milter.Mutations {
			return milter.Mutations{RemoveAll: []string{"X-Tollgate-Checked"},
				Prepend: []milter.HeaderField{{Name: "X-Tollgate-Checked", Value: "mx.example.org for [203.0.113.5]"}}}
		}},
		// An ARC seal, Authentication-Results, a stamp and an SRS rewrite.
		{"arc-srs/10-headers", 10, arc},
		{"arc-srs/100-headers", 100, arc},
	} {
		b.Run(c.name, func(b *testing.B) {
			hdrs := applyHeaders(c.headers)
			m := c.muts()
			mta := &countingMTA{}
			for b.Loop() {
				if err := m.Apply(mta, hdrs, nil, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
