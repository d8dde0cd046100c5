package milter

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// The conflict rule of EnvelopeChanges, proposal by proposal, in every order
// the proposals could come in: the result never depends on the order of the
// modules, and nothing is deleted twice.
func TestEnvelopeConflictRule(t *testing.T) {
	bounce := &Recipient{Addr: "SRS0=abcd=AB=example.net=alice@fwd.example.org"}
	bob := &Recipient{Addr: "bob@example.org"}
	replace := func(e *EnvelopeChanges) { e.Replace(bounce, "alice@example.net", "srs") }
	drop := func(e *EnvelopeChanges) { e.Drop(bounce, "bmi") }
	redirect := func(e *EnvelopeChanges) { e.Redirect(bounce, "spam@example.org", "bmi") }
	dropUpper := func(e *EnvelopeChanges) { e.Drop(&Recipient{Addr: strings.ToUpper(bounce.Addr)}, "rcpt_discard") }
	addBob := func(e *EnvelopeChanges) { e.Add("bob@example.org", "") }
	addCarol := func(e *EnvelopeChanges) { e.Add("carol@example.org", "") }
	for _, tc := range []struct {
		name      string
		proposals []func(*EnvelopeChanges)
		del       string
		add       string
	}{
		{"replace", fnList(replace), bounce.Addr, "alice@example.net"},
		{"drop of a reversed recipient drops the original", fnList(replace, drop), bounce.Addr, ""},
		{"redirect applies to where it would go", fnList(replace, redirect), bounce.Addr, "spam@example.org"},
		{"drop beats redirect", fnList(redirect, drop), bounce.Addr, ""},
		{"two drops, one delete", fnList(drop, dropUpper, replace), bounce.Addr, ""},
		{"an added recipient that is already one is not added", fnList(addBob, replace), bounce.Addr, "alice@example.net"},
		{"an extra recipient is added once", fnList(addCarol, addCarol, drop), bounce.Addr, "carol@example.org"},
	} {
		var first string
		permute(tc.proposals, func(order []func(*EnvelopeChanges)) {
			var e EnvelopeChanges
			for _, p := range order {
				p(&e)
			}
			del, add := e.Resolve([]*Recipient{bounce, bob})
			var adds []string
			for _, a := range add {
				adds = append(adds, a.Addr)
			}
			got := fmt.Sprintf("del=%s add=%s", strings.Join(del, ","), strings.Join(adds, ","))
			if want := fmt.Sprintf("del=%s add=%s", tc.del, tc.add); got != want {
				t.Errorf("%s: %s, want %s", tc.name, got, want)
			}
			if first == "" {
				first = got
			} else if got != first {
				t.Errorf("%s: depends on the order: %s and %s", tc.name, first, got)
			}
		})
	}
}

func fnList(f ...func(*EnvelopeChanges)) []func(*EnvelopeChanges) { return f }

func permute(list []func(*EnvelopeChanges), visit func([]func(*EnvelopeChanges))) {
	var rec func(k int)
	rec = func(k int) {
		if k == len(list) {
			visit(list)
			return
		}
		for i := k; i < len(list); i++ {
			list[k], list[i] = list[i], list[k]
			rec(k + 1)
			list[k], list[i] = list[i], list[k]
		}
	}
	rec(0)
}

// Of two redirects the later one wins: it saw where the message would go.
func TestEnvelopeLaterRedirectWins(t *testing.T) {
	r := &Recipient{Addr: "a@example.org"}
	var e EnvelopeChanges
	e.Redirect(r, "first@example.org", "x")
	e.Replace(r, "ignored@example.org", "srs")
	e.Redirect(r, "second@example.org", "y")
	if addr, dropped := e.Target(r); addr != "second@example.org" || dropped {
		t.Errorf("target %s dropped %v", addr, dropped)
	}
	del, add := e.Resolve([]*Recipient{r})
	if !reflect.DeepEqual(del, []string{"a@example.org"}) || len(add) != 1 || add[0].Addr != "second@example.org" {
		t.Errorf("del %v add %v", del, add)
	}
}

// Changes for a recipient the MTA no longer has are not sent, and a change
// to the address it already has is none.
func TestEnvelopeRefusedAndNoop(t *testing.T) {
	refused := &Recipient{Addr: "x@example.org", Decision: Decision{Verdict: Reject}}
	same := &Recipient{Addr: "y@example.org"}
	var e EnvelopeChanges
	e.Replace(refused, "z@example.org", "srs")
	e.Drop(refused, "bmi")
	e.Replace(same, "Y@example.org", "srs")
	if del, add := e.Resolve([]*Recipient{refused, same}); len(del) != 0 || len(add) != 0 {
		t.Errorf("del %v add %v", del, add)
	}
}

// The sender changes once; a second, different proposal is refused.
func TestEnvelopeSender(t *testing.T) {
	var e EnvelopeChanges
	if err := e.ChangeSender("SRS0=x@fwd.example.org", "", "srs"); err != nil {
		t.Fatal(err)
	}
	if err := e.ChangeSender("SRS0=x@fwd.example.org", "", "srs"); err != nil {
		t.Errorf("the same change again: %v", err)
	}
	if err := e.ChangeSender("other@example.org", "", "other"); err == nil || !strings.Contains(err.Error(), "by srs") {
		t.Errorf("conflicting change: %v", err)
	}
	if s := e.Sender(); s == nil || s.Addr != "SRS0=x@fwd.example.org" {
		t.Errorf("sender %+v", s)
	}
}
