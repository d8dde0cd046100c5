package mta

import (
	"reflect"
	"testing"

	gomilter "github.com/d--j/go-milter"

	"github.com/tollgate/tollgate/internal/message"
)

func TestHeaderListApply(t *testing.T) {
	received := func() []message.Field {
		return []message.Field{{Name: "Received", Value: " from a"}, {Name: "Subject", Value: " one"},
			{Name: "X-Spam", Value: " yes"}, {Name: "subject", Value: " two"}}
	}
	mods := []gomilter.ModifyAction{
		{Type: gomilter.ActionChangeHeader, HeaderIndex: 2, HeaderName: "Subject", HeaderValue: " 2"}, // the second Subject, any case
		{Type: gomilter.ActionChangeHeader, HeaderIndex: 1, HeaderName: "X-Spam"},                     // deleted
		{Type: gomilter.ActionChangeHeader, HeaderIndex: 3, HeaderName: "X-Missing"},                  // deleting what is not there: nothing
		{Type: gomilter.ActionChangeHeader, HeaderIndex: 1, HeaderName: "X-New", HeaderValue: " n"},   // not there: added at the bottom
		{Type: gomilter.ActionInsertHeader, HeaderIndex: 0, HeaderName: "X-Top", HeaderValue: " t"},
		{Type: gomilter.ActionInsertHeader, HeaderIndex: 1 << 31, HeaderName: "X-Last", HeaderValue: " l"}, // past the end
		{Type: gomilter.ActionAddHeader, HeaderName: "X-Added", HeaderValue: " a"},
		{Type: gomilter.ActionAddRcpt, Rcpt: "<c@example.org>"}, // not a header change
	}
	h := HeaderList{Fields: received(), LeadingSpace: true}
	h.Apply(mods)
	want := []message.Field{{Name: "X-Top", Value: " t"}, {Name: "Received", Value: " from a"}, {Name: "Subject", Value: " one"},
		{Name: "subject", Value: " 2"}, {Name: "X-New", Value: " n"}, {Name: "X-Last", Value: " l"}, {Name: "X-Added", Value: " a"}}
	if !reflect.DeepEqual(h.Fields, want) {
		t.Errorf("with the leading space negotiated:\n got %q\nwant %q", h.Fields, want)
	}
	// Without it the MTA writes a space after the colon itself.
	h = HeaderList{Fields: received()}
	h.Apply([]gomilter.ModifyAction{{Type: gomilter.ActionInsertHeader, HeaderName: "X-Top", HeaderValue: "t"},
		{Type: gomilter.ActionChangeHeader, HeaderIndex: 1, HeaderName: "Subject", HeaderValue: "1"}})
	if h.Fields[0].Value != " t" || h.Fields[2].Value != " 1" {
		t.Errorf("without the leading space: %q", h.Fields)
	}
}
