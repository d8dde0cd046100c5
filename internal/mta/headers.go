package mta

import (
	"strings"

	gomilter "github.com/d--j/go-milter"

	"github.com/tollgate/tollgate/internal/message"
)

// HeaderList is a message's header as the MTA keeps it while it applies a
// milter's header changes, the way Postfix does. It is the one model of
// applied changes: `tollgate test --emit` renders a message with it, and
// milter.Mutations.FinalHeaders (what an ARC seal signs) replays its changes
// on it.
type HeaderList struct {
	// Fields are the header fields, values as written after the colon.
	Fields []message.Field
	// LeadingSpace is whether the milter negotiated OptHeaderLeadingSpace:
	// then a value is written exactly as given, otherwise the MTA puts a
	// space after the colon.
	LeadingSpace bool
}

func (h *HeaderList) written(value string) string {
	if h.LeadingSpace {
		return value
	}
	return " " + value
}

// AddHeader appends a field at the bottom.
func (h *HeaderList) AddHeader(name, value string) error {
	h.Fields = append(h.Fields, message.Field{Name: name, Value: h.written(value)})
	return nil
}

// InsertHeader inserts a field at index (0 is the top); an index past the
// end appends.
func (h *HeaderList) InsertHeader(index int, name, value string) error {
	i := min(max(index, 0), len(h.Fields))
	h.Fields = append(h.Fields[:i], append([]message.Field{{Name: name, Value: h.written(value)}}, h.Fields[i:]...)...)
	return nil
}

// ChangeHeader replaces the value of the index-th field named name
// (counting from 1, case-insensitively, in the list as it is now); an empty
// value deletes that field. A field that is not there is added at the
// bottom, unless the change deletes it.
func (h *HeaderList) ChangeHeader(index int, name, value string) error {
	n := 0
	for i := range h.Fields {
		if !strings.EqualFold(h.Fields[i].Name, name) {
			continue
		}
		if n++; n != index {
			continue
		}
		if value == "" {
			h.Fields = append(h.Fields[:i], h.Fields[i+1:]...)
		} else {
			h.Fields[i].Value = h.written(value)
		}
		return nil
	}
	if value != "" {
		return h.AddHeader(name, value)
	}
	return nil
}

// Apply replays the header changes among mods, in order; envelope changes
// are not the header's and are left out.
func (h *HeaderList) Apply(mods []gomilter.ModifyAction) {
	for _, m := range mods {
		switch m.Type {
		case gomilter.ActionAddHeader:
			_ = h.AddHeader(m.HeaderName, m.HeaderValue)
		case gomilter.ActionInsertHeader:
			_ = h.InsertHeader(int(m.HeaderIndex), m.HeaderName, m.HeaderValue)
		case gomilter.ActionChangeHeader:
			_ = h.ChangeHeader(int(m.HeaderIndex), m.HeaderName, m.HeaderValue)
		}
	}
}
