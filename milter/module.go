package milter

import (
	"context"

	gomilter "github.com/d--j/go-milter"
)

// Module is a feature (ARC, DCC, SRS, BMI, ...) plugged into the pipeline. A
// module implements the hook interfaces of the stages it needs; the set of
// hooks present decides what is negotiated with the MTA. Hooks write facts on
// the session or transaction and propose changes in Txn.Mutations; they never
// talk to the MTA. A hook error (or panic) becomes the configured on_error
// decision; a *Rejection error is a decision, not a failure.
type Module interface {
	Name() string
}

type ConnectHook interface {
	Connect(ctx context.Context, s *Session) error
}

type HeloHook interface {
	Helo(ctx context.Context, s *Session) error
}

type MailHook interface {
	Mail(ctx context.Context, t *Txn) error
}

type RcptHook interface {
	Rcpt(ctx context.Context, t *Txn, r *Recipient) error
}

// HeaderHook sees each header as it streams in.
type HeaderHook interface {
	Header(ctx context.Context, t *Txn, h Header) error
}

// EndOfHeadersHook runs once per message after the last header field and
// before any of the body reaches anyone (at end of message when the body is
// empty): where a module asks for the body hashes it needs
// (Txn.BodyHash), which the milter computes once for every module.
type EndOfHeadersHook interface {
	EndOfHeaders(ctx context.Context, t *Txn) error
}

// BodyHook sees the body in chunks as they stream in; a chunk is only valid
// during the call.
type BodyHook interface {
	Body(ctx context.Context, t *Txn, chunk []byte) error
}

// EndOfMessageHook runs at end of message, before the data-stage policy.
type EndOfMessageHook interface {
	EndOfMessage(ctx context.Context, t *Txn) error
}

// FinalizeHook runs after the data-stage decision and before changes are sent
// (ARC sealing must see the final Authentication-Results; SRS must know the
// message is accepted). It runs for every decision; most act only on Accept.
type FinalizeHook interface {
	Finalize(ctx context.Context, t *Txn, d Decision) error
}

// TxnEndHook runs whenever a message ends, however it ends (accepted,
// refused, aborted, connection lost): modules release what they hold for it.
type TxnEndHook interface {
	TxnEnd(t *Txn)
}

// ActionNeeder tells which changes a module may propose, to negotiate them.
type ActionNeeder interface {
	Actions() Actions
}

// Actions is the set of message changes that need the MTA's permission.
type Actions uint16

const (
	ActAddHeader Actions = 1 << iota
	ActChangeHeader
	ActChangeFrom
	ActAddRcpt
	ActDelRcpt
	ActQuarantine
)

func (a Actions) milter() gomilter.OptAction {
	var o gomilter.OptAction
	if a&ActAddHeader != 0 {
		o |= gomilter.OptAddHeader
	}
	if a&ActChangeHeader != 0 {
		o |= gomilter.OptChangeHeader
	}
	if a&ActChangeFrom != 0 {
		o |= gomilter.OptChangeFrom
	}
	if a&ActAddRcpt != 0 {
		o |= gomilter.OptAddRcpt
	}
	if a&ActDelRcpt != 0 {
		o |= gomilter.OptRemoveRcpt
	}
	if a&ActQuarantine != 0 {
		o |= gomilter.OptQuarantine
	}
	return o
}

// Needs is what a configuration asks the MTA for.
type Needs struct {
	Headers bool // the MTA sends headers (and tollgate keeps them for conditions and removal)
	Body    bool // the MTA sends the body
	Actions Actions
	// Reply[stage] is false when nothing can decide at that stage, so the MTA
	// need not wait for an answer there.
	Reply [stageCount]bool
}

// Runtime is one loaded configuration: its modules and its policy. A session
// keeps the Runtime it started with, so a reload never changes a session midway.
type Runtime interface {
	Modules() []Module
	// Evaluate runs the policy of a stage. t is nil at connect and helo; r is
	// the current recipient at rcpt and nil elsewhere. The policy writes its
	// modifiers (headers, variables, controls) onto t.
	Evaluate(ctx context.Context, stage Stage, s *Session, t *Txn, r *Recipient) (Decision, error)
	// PolicyNeeds is what the policy itself needs (header conditions, header edits...).
	PolicyNeeds() Needs
	// OnError is the decision for a message when a module or the policy fails.
	OnError() Decision
	// Identity says which sessions come through an XCLIENT proxy.
	Identity() *IdentityConfig
}

// Held is implemented by a Runtime that holds resources (database
// connections) to give back once nothing can use it any more. The server
// holds a runtime while it is the current or previous configuration and
// while a session started with it is open; the last Release frees it.
type Held interface {
	Hold()
	Release()
}

func hold(rt Runtime) {
	if h, ok := rt.(Held); ok {
		h.Hold()
	}
}

func release(rt Runtime) {
	if h, ok := rt.(Held); ok {
		h.Release()
	}
}

// NeedsDeclarer is a module that says what it needs negotiated with the
// MTA, instead of having it inferred from the hooks it implements: a hook
// present only to make the MTA send something is a marker, not a need.
type NeedsDeclarer interface {
	Needs() Needs
}

// RuntimeNeeds merges what the policy and every module of a runtime need.
func RuntimeNeeds(rt Runtime) Needs {
	n := rt.PolicyNeeds()
	for _, m := range rt.Modules() {
		if d, ok := m.(NeedsDeclarer); ok {
			mn := d.Needs()
			n.Headers = n.Headers || mn.Headers
			n.Body = n.Body || mn.Body
			n.Actions |= mn.Actions
			for i, r := range mn.Reply {
				n.Reply[i] = n.Reply[i] || r
			}
			continue
		}
		if _, ok := m.(HeaderHook); ok {
			n.Headers = true
		}
		if _, ok := m.(BodyHook); ok {
			n.Body = true
		}
		if _, ok := m.(EndOfHeadersHook); ok {
			n.Body = true // it is where body hashes are asked for
		}
		if a, ok := m.(ActionNeeder); ok {
			n.Actions |= a.Actions()
		}
		if _, ok := m.(ConnectHook); ok {
			n.Reply[StageConnect] = true
		}
		if _, ok := m.(HeloHook); ok {
			n.Reply[StageHelo] = true
		}
		if _, ok := m.(MailHook); ok {
			n.Reply[StageMail] = true
		}
		if _, ok := m.(RcptHook); ok {
			n.Reply[StageRcpt] = true
		}
	}
	return n
}
