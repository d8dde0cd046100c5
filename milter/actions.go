package milter

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/tollgate/tollgate/internal/message"
	"github.com/tollgate/tollgate/internal/mta"
)

// This file is the one place that writes to the MTA. Modules and the policy only
// propose changes in Mutations; Apply sends them at end of message in a fixed
// order so that header indexes stay right on Postfix (which removes deleted
// headers from its list) and on Sendmail (which only marks them):
//
//  1. change headers, by their index among headers of the same name as received;
//  2. delete headers, highest index first;
//  3. insert at the top, so that the final order from the top is: the ARC set,
//     Authentication-Results, then headers the policy put ":at_start:";
//  4. append headers at the bottom;
//  5. change the envelope sender, delete recipients, add recipients, as
//     resolved by the one envelope owner (envelope.go);
//  6. quarantine.

// HeaderField is a header to add; Value is without the leading space.
type HeaderField struct{ Name, Value string }

// HeaderRef points at one received header: Index counts from 1 among the
// headers with the same name (case-insensitive), in the order received.
type HeaderRef struct {
	Name  string
	Index int
}

// HeaderChange replaces the value of one received header.
type HeaderChange struct {
	HeaderRef
	Value string
}

// Envelope is an envelope address with its ESMTP arguments.
type Envelope struct{ Addr, Args string }

// Mutations are the changes proposed for a message.
type Mutations struct {
	Changes       []HeaderChange
	RemoveHeaders []HeaderRef
	RemoveAll     []string      // header names: every received instance is deleted
	ARCSet        []HeaderField // top-most first
	AuthResults   []HeaderField // top-most first, below the ARC set
	Prepend       []HeaderField // top-most first, below Authentication-Results
	Append        []HeaderField
	// Envelope owns every sender and recipient change; modules propose
	// through its methods, never by editing delete/add lists.
	Envelope   EnvelopeChanges
	Quarantine string
}

// Empty reports whether nothing would be sent to the MTA.
func (m *Mutations) Empty() bool {
	return len(m.Changes) == 0 && len(m.RemoveHeaders) == 0 && len(m.RemoveAll) == 0 &&
		len(m.ARCSet) == 0 && len(m.AuthResults) == 0 && len(m.Prepend) == 0 && len(m.Append) == 0 &&
		m.Envelope.Empty() && m.Quarantine == ""
}

// Needs returns the milter actions these mutations use for a message with
// these recipients.
func (m *Mutations) Needs(rcpts []*Recipient) Actions {
	var a Actions
	if len(m.Changes) > 0 || len(m.RemoveHeaders) > 0 || len(m.RemoveAll) > 0 {
		a |= ActChangeHeader
	}
	if len(m.ARCSet) > 0 || len(m.AuthResults) > 0 || len(m.Prepend) > 0 || len(m.Append) > 0 {
		a |= ActAddHeader
	}
	if m.Envelope.Sender() != nil {
		a |= ActChangeFrom
	}
	del, add := m.Envelope.Resolve(rcpts)
	if len(del) > 0 {
		a |= ActDelRcpt
	}
	if len(add) > 0 {
		a |= ActAddRcpt
	}
	if m.Quarantine != "" {
		a |= ActQuarantine
	}
	return a
}

// MTA is the part of go-milter's Modifier that Apply writes to.
type MTA interface {
	ChangeHeader(index int, name, value string) error
	InsertHeader(index int, name, value string) error
	ChangeFrom(value, esmtpArgs string) error
	AddRecipient(r, esmtpArgs string) error
	DeleteRecipient(r string) error
	Quarantine(reason string) error
}

// appendIndex puts a header after every other one. Sendmail may reuse a deleted
// header of the same name for a plain add, so adds are inserts past the end.
const appendIndex = math.MaxInt32

// Apply sends the mutations to the MTA in the documented order. headers are the
// headers as received (for RemoveAll); rcpts the recipients as given at RCPT
// (for the envelope); leadingSpace is whether the MTA writes header values
// exactly as given (then the space after the colon is ours to add). It stops
// at the first MTA error: the connection is broken then.
func (m *Mutations) Apply(mta MTA, headers []Header, rcpts []*Recipient, leadingSpace bool) error {
	val := func(v string) string {
		if leadingSpace && v != "" && v[0] != ' ' && v[0] != '\t' {
			return " " + v
		}
		return v
	}
	for _, f := range m.allAdded() {
		if err := CheckHeaderField(f.Name, f.Value); err != nil {
			return err
		}
	}

	removed := m.removals(headers)
	for _, c := range m.Changes {
		if hasRef(removed, c.HeaderRef) {
			continue
		}
		if err := CheckHeaderField(c.Name, c.Value); err != nil {
			return err
		}
		if err := mta.ChangeHeader(c.Index, c.Name, val(c.Value)); err != nil {
			return fmt.Errorf("milter: change header %s[%d]: %w", c.Name, c.Index, err)
		}
	}
	sort.Slice(removed, func(i, j int) bool {
		if removed[i].Index != removed[j].Index {
			return removed[i].Index > removed[j].Index
		}
		return removed[i].Name < removed[j].Name
	})
	for _, r := range removed {
		if err := mta.ChangeHeader(r.Index, r.Name, ""); err != nil {
			return fmt.Errorf("milter: delete header %s[%d]: %w", r.Name, r.Index, err)
		}
	}
	for _, group := range [][]HeaderField{m.Prepend, m.AuthResults, m.ARCSet} {
		for i := len(group) - 1; i >= 0; i-- {
			if err := mta.InsertHeader(0, group[i].Name, val(group[i].Value)); err != nil {
				return fmt.Errorf("milter: insert header %s: %w", group[i].Name, err)
			}
		}
	}
	for _, f := range m.Append {
		if err := mta.InsertHeader(appendIndex, f.Name, val(f.Value)); err != nil {
			return fmt.Errorf("milter: add header %s: %w", f.Name, err)
		}
	}
	if from := m.Envelope.Sender(); from != nil {
		if err := mta.ChangeFrom(AddAngle(from.Addr), from.Args); err != nil {
			return fmt.Errorf("milter: change sender: %w", err)
		}
	}
	del, add := m.Envelope.Resolve(rcpts)
	for _, r := range del {
		if err := mta.DeleteRecipient(AddAngle(r)); err != nil {
			return fmt.Errorf("milter: delete recipient: %w", err)
		}
	}
	for _, r := range add {
		if err := mta.AddRecipient(AddAngle(r.Addr), r.Args); err != nil {
			return fmt.Errorf("milter: add recipient: %w", err)
		}
	}
	if m.Quarantine != "" {
		if err := mta.Quarantine(m.Quarantine); err != nil {
			return fmt.Errorf("milter: quarantine: %w", err)
		}
	}
	return nil
}

func (m *Mutations) allAdded() []HeaderField {
	out := make([]HeaderField, 0, len(m.ARCSet)+len(m.AuthResults)+len(m.Prepend)+len(m.Append))
	out = append(out, m.ARCSet...)
	out = append(out, m.AuthResults...)
	out = append(out, m.Prepend...)
	return append(out, m.Append...)
}

// removals resolves RemoveAll against the received headers and merges it with
// the explicit references, so that each header is deleted once; names stay as
// given. A slice: there are a handful, and this runs for every message.
func (m *Mutations) removals(headers []Header) []HeaderRef {
	if len(m.RemoveHeaders) == 0 && len(m.RemoveAll) == 0 {
		return nil
	}
	var out []HeaderRef
	add := func(r HeaderRef) {
		if !hasRef(out, r) {
			out = append(out, r)
		}
	}
	for _, r := range m.RemoveHeaders {
		add(r)
	}
	for i, h := range headers {
		for _, n := range m.RemoveAll {
			if strings.EqualFold(n, h.Name) {
				add(HeaderRef{Name: h.Name, Index: nameIndex(headers, i)})
				break
			}
		}
	}
	return out
}

// nameIndex is headers[i]'s index, from 1, among the headers of its name.
func nameIndex(headers []Header, i int) int {
	n := 1
	for _, p := range headers[:i] {
		if strings.EqualFold(p.Name, headers[i].Name) {
			n++
		}
	}
	return n
}

func hasRef(refs []HeaderRef, r HeaderRef) bool {
	for _, x := range refs {
		if x.Index == r.Index && strings.EqualFold(x.Name, r.Name) {
			return true
		}
	}
	return false
}

var errHeaderName = errors.New("milter: invalid header name")

// CheckHeaderField refuses names that are not RFC 5322 field names and values
// that would inject lines: a line break must be followed by white space.
func CheckHeaderField(name, value string) error {
	if name == "" {
		return errHeaderName
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c >= 127 || c == ':' {
			return fmt.Errorf("%w: %q", errHeaderName, name)
		}
	}
	for i := 0; i < len(value); i++ {
		switch value[i] {
		case 0:
			return fmt.Errorf("milter: header %s: NUL in value", name)
		case '\r', '\n':
			j := i + 1
			if value[i] == '\r' && j < len(value) && value[j] == '\n' {
				j++
			}
			if j >= len(value) || (value[j] != ' ' && value[j] != '\t') {
				return fmt.Errorf("milter: header %s: line break not followed by white space", name)
			}
			i = j
		}
	}
	return nil
}

// AddAngle puts an address in angle brackets unless it already is.
func AddAngle(s string) string {
	if strings.HasPrefix(s, "<") && strings.HasSuffix(s, ">") {
		return s
	}
	return "<" + s + ">"
}

// FinalHeaders is the header list as the next hop will see it once Apply has
// run, values as on the wire after the colon (leading space included): what
// an ARC seal must sign. The ARC set itself is not included, and neither is
// the MTA's own Received line, which milters never see. It replays Apply on
// mta.HeaderList, the model of how the MTA applies changes that
// `tollgate test --emit` uses too.
func (m *Mutations) FinalHeaders(received []Header, leadingSpace bool) []Header {
	list := mta.HeaderList{Fields: make([]message.Field, 0, len(received)+len(m.allAdded())), LeadingSpace: leadingSpace}
	for _, h := range received {
		v := h.Value
		if !leadingSpace {
			v = " " + v // the MTA swallowed it
		}
		list.Fields = append(list.Fields, message.Field{Name: h.Name, Value: v})
	}
	// A change Apply refuses fails the message; what is signed then goes nowhere.
	_ = m.Apply(headerMTA{&list}, received, nil, leadingSpace)
	out := make([]Header, 0, len(list.Fields))
	for _, f := range list.Fields[min(len(m.ARCSet), len(list.Fields)):] {
		v := f.Value
		if v != "" && v[0] != ' ' && v[0] != '\t' {
			v = " " + v
		}
		out = append(out, Header{Name: f.Name, Value: v})
	}
	return out
}

// headerMTA is an MTA that keeps only the header changes.
type headerMTA struct{ *mta.HeaderList }

func (headerMTA) ChangeFrom(string, string) error   { return nil }
func (headerMTA) AddRecipient(string, string) error { return nil }
func (headerMTA) DeleteRecipient(string) error      { return nil }
func (headerMTA) Quarantine(string) error           { return nil }
