package dmarc

import (
	"context"
	"testing"

	"github.com/tollgate/tollgate/internal/authres"
)

// The evaluation of one message with its record answered at once (as from
// the resolver's cache): From parsing, two lookups (subdomain, then the
// organizational domain), alignment over four results.
func BenchmarkEvaluate(b *testing.B) {
	in := Input{
		From:        []string{"\"Alice Example\" <alice@mail.rej.com>"},
		AuthResults: []authres.Result{spfPass("bounce@other.net"), dkimResult("fail", "rej.com"), dkimResult("pass", "other.net"), {Method: "arc", Result: "none"}},
		LookupTXT:   zone{"_dmarc.rej.com": {"v=DMARC1; p=reject; sp=quarantine; rua=mailto:d@rej.com"}}.LookupTXT,
		Roll:        func() int { return 0 },
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if r := Evaluate(ctx, in); r.Status != StatusQuarantine {
			b.Fatal(r.Status)
		}
	}
}
