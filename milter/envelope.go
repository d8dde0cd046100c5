package milter

import (
	"fmt"
	"strings"
)

// EnvelopeChanges is the one owner of a message's envelope changes. Modules
// and the session propose per-recipient changes (replace, redirect, drop),
// extra recipients and a new sender here, never as raw delete/add lists, and
// the conflicts between them are resolved by one rule whatever order the
// modules ran in:
//
//   - A recipient is named by its RCPT address (case-insensitive). Every
//     change to it lands on one record, so the MTA is told to delete it at
//     most once: a double delete is impossible.
//   - Drop beats everything: a dropped recipient gets nothing, whatever
//     replacement or redirect was proposed for it (a drop of a reversed SRS
//     bounce drops the original address too).
//   - Redirect applies to the address the message would go to: it replaces
//     an earlier Replace (the reversed SRS recipient is not also delivered),
//     and a Replace after a Redirect leaves the redirect. Of two redirects,
//     the later one wins.
//   - Replace says who the recipient really is (SRS reverse). It is what
//     later judges see (Target) and what is delivered unless redirected or
//     dropped.
//   - Add adds an extra recipient once, and not at all when it is already a
//     recipient that stays.
//   - The sender changes once: a second, different change is refused.
//
// Changes for a recipient the MTA no longer has (refused at RCPT) are not
// sent. milter/actions.go applies the result at end of message, after the
// header changes: sender, deletions, additions.
type EnvelopeChanges struct {
	sender *senderChange
	rcpts  []*rcptChange // in the order first touched
	added  []Envelope
}

type senderChange struct {
	env Envelope
	by  string
}

type rcptKind uint8

const (
	rcptReplaced rcptKind = iota + 1
	rcptRedirected
	rcptDropped
)

type rcptChange struct {
	r    *Recipient
	kind rcptKind
	to   Envelope // replaced or redirected: where it goes now
	by   []string // the modules that acted on it, for the log
}

func (e *EnvelopeChanges) change(r *Recipient, by string) *rcptChange {
	for _, c := range e.rcpts {
		if strings.EqualFold(c.r.Addr, r.Addr) {
			c.by = append(c.by, by)
			return c
		}
	}
	c := &rcptChange{r: r, by: []string{by}}
	e.rcpts = append(e.rcpts, c)
	return c
}

// Replace records that recipient r really is addr (SRS reverse).
func (e *EnvelopeChanges) Replace(r *Recipient, addr, by string) {
	c := e.change(r, by)
	if c.kind == 0 || c.kind == rcptReplaced {
		c.kind, c.to = rcptReplaced, Envelope{Addr: addr, Args: r.Args}
	}
}

// Redirect sends r's copy to addr instead of wherever it would have gone.
func (e *EnvelopeChanges) Redirect(r *Recipient, addr, by string) {
	c := e.change(r, by)
	if c.kind != rcptDropped {
		c.kind, c.to = rcptRedirected, Envelope{Addr: addr}
	}
}

// Drop removes r: the message is not delivered to it, nor to what it was
// replaced or redirected by.
func (e *EnvelopeChanges) Drop(r *Recipient, by string) {
	c := e.change(r, by)
	c.kind, c.to = rcptDropped, Envelope{}
}

// Add adds a recipient that was not given at RCPT.
func (e *EnvelopeChanges) Add(addr, args string) {
	for _, a := range e.added {
		if strings.EqualFold(a.Addr, addr) {
			return
		}
	}
	e.added = append(e.added, Envelope{Addr: addr, Args: args})
}

// ChangeSender proposes a new envelope sender; a second, different proposal
// is an error (two modules disagree about who sends the message).
func (e *EnvelopeChanges) ChangeSender(addr, args, by string) error {
	if e.sender != nil && (e.sender.env.Addr != addr || e.sender.env.Args != args) {
		return fmt.Errorf("milter: sender already changed to %s by %s", e.sender.env.Addr, e.sender.by)
	}
	e.sender = &senderChange{env: Envelope{Addr: addr, Args: args}, by: by}
	return nil
}

// Sender is the proposed new sender, or nil.
func (e *EnvelopeChanges) Sender() *Envelope {
	if e.sender == nil {
		return nil
	}
	env := e.sender.env
	return &env
}

// Target is the address r's copy would go to now, and whether it was
// dropped: what a module judging the recipient after another changed it
// must look at.
func (e *EnvelopeChanges) Target(r *Recipient) (addr string, dropped bool) {
	for _, c := range e.rcpts {
		if strings.EqualFold(c.r.Addr, r.Addr) {
			switch c.kind {
			case rcptDropped:
				return "", true
			case rcptReplaced, rcptRedirected:
				return c.to.Addr, false
			}
		}
	}
	return r.Addr, false
}

// DropsAll reports whether the message would reach nobody: every accepted
// recipient dropped, whichever modules dropped them, and nothing added.
func (e *EnvelopeChanges) DropsAll(rcpts []*Recipient) bool {
	accepted := false
	for _, r := range rcpts {
		if !r.Accepted() {
			continue
		}
		accepted = true
		if _, dropped := e.Target(r); !dropped {
			return false
		}
	}
	if !accepted {
		return false
	}
	_, add := e.Resolve(rcpts)
	return len(add) == 0
}

// Empty reports whether nothing is proposed.
func (e *EnvelopeChanges) Empty() bool {
	return e.sender == nil && len(e.rcpts) == 0 && len(e.added) == 0
}

// Resolve turns the proposals into what the MTA is told: each recipient to
// delete once, each address to add once, in the order first proposed.
// rcpts are the message's recipients as given at RCPT.
func (e *EnvelopeChanges) Resolve(rcpts []*Recipient) (del []string, add []Envelope) {
	has := func(list []Envelope, addr string) bool {
		for _, a := range list {
			if strings.EqualFold(a.Addr, addr) {
				return true
			}
		}
		return false
	}
	var kept []Envelope // recipients the MTA keeps as they are
	for _, r := range rcpts {
		if !r.Accepted() {
			continue
		}
		touched := false
		for _, c := range e.rcpts {
			if strings.EqualFold(c.r.Addr, r.Addr) && (c.kind == rcptDropped || !strings.EqualFold(c.to.Addr, r.Addr)) {
				touched = true
			}
		}
		if !touched && !has(kept, r.Addr) {
			kept = append(kept, Envelope{Addr: r.Addr})
		}
	}
	for _, c := range e.rcpts {
		addr, ok := mtaAddr(rcpts, c.r.Addr)
		if !ok || c.kind != rcptDropped && strings.EqualFold(c.to.Addr, c.r.Addr) {
			continue
		}
		del = append(del, addr)
		if c.kind != rcptDropped && !has(kept, c.to.Addr) && !has(add, c.to.Addr) {
			add = append(add, c.to)
		}
	}
	for _, a := range e.added {
		if !has(kept, a.Addr) && !has(add, a.Addr) {
			add = append(add, a)
		}
	}
	return del, add
}

// mtaAddr returns the address, as given at RCPT, of the recipient the MTA
// still has after the rcpt stage.
func mtaAddr(rcpts []*Recipient, addr string) (string, bool) {
	for _, r := range rcpts {
		if r.Accepted() && strings.EqualFold(r.Addr, addr) {
			return r.Addr, true
		}
	}
	return "", false
}
