package dcc

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// Error is the type of this package's sentinel errors. Errors returned by
// Start, the Request methods and ParseReply wrap one of them (and the
// underlying cause, when there is one); match with errors.Is, and use Kind
// for a short, stable label.
type Error struct {
	kind   string
	text   string
	parent *Error
}

func (e *Error) Error() string { return "dcc: " + e.text }

// Kind is a short snake_case token, stable across releases, for log keys and
// metric labels (a closed set: the sentinels below).
func (e *Error) Kind() string { return e.kind }

// Is makes every failure of dccifd itself match ErrUnavailable too.
func (e *Error) Is(target error) bool {
	return e.parent != nil && (target == error(e.parent) || e.parent.Is(target))
}

// ErrUnavailable is matched by every error that means "dccifd gave no usable
// answer for this message": ErrDial, ErrTimeout, ErrClosed, ErrGarbage,
// ErrTooBig and ErrIO. They are all temporary: the policy's on_error
// (defer, or accept with defer_ok) applies. ErrConfig, ErrRequest and
// ErrCanceled do not match it.
var ErrUnavailable = &Error{kind: "unavailable", text: "dccifd unavailable"}

// Failures of dccifd (all match ErrUnavailable).
var (
	// ErrDial: no connection: connection refused, no such socket, no
	// permission on the socket, host unreachable.
	ErrDial = &Error{kind: "dial", text: "cannot connect to dccifd", parent: ErrUnavailable}

	// ErrTimeout: the message's time budget (Options.Timeout) ran out while
	// connecting, writing or waiting for the reply.
	ErrTimeout = &Error{kind: "timeout", text: "dccifd timed out", parent: ErrUnavailable}

	// ErrClosed: dccifd closed the connection before a complete reply: EOF
	// before the result lines (how dccifd reports a bad request, an unknown
	// option or its own trouble), a reply cut short, or a reset while we
	// were still writing.
	ErrClosed = &Error{kind: "closed", text: "dccifd closed the connection without a complete reply", parent: ErrUnavailable}

	// ErrGarbage: a reply that is not what dccifd writes (unknown letters,
	// wrong number of recipient letters, a header that is not X-DCC, bytes
	// after the end).
	ErrGarbage = &Error{kind: "garbage", text: "unintelligible reply from dccifd", parent: ErrUnavailable}

	// ErrTooBig: a reply line longer than dccifd ever writes (the X-DCC
	// header is at most 240 bytes).
	ErrTooBig = &Error{kind: "too_big", text: "reply from dccifd too big", parent: ErrUnavailable}

	// ErrIO: any other network error.
	ErrIO = &Error{kind: "io", text: "i/o error talking to dccifd", parent: ErrUnavailable}
)

// Errors of the caller (none matches ErrUnavailable).
var (
	// ErrConfig: an invalid Options (address, option word, timeout) or an
	// invalid per-message option word. Refused before connecting.
	ErrConfig = &Error{kind: "config", text: "invalid configuration"}

	// ErrRequest: an envelope or header that cannot be written on the
	// dccifd protocol (a line break in a field, an empty recipient), or a
	// call out of order (Header after Finish).
	ErrRequest = &Error{kind: "bad_request", text: "invalid request"}

	// ErrCanceled: the context given to Start was canceled (the MTA aborted
	// the message or the daemon is stopping).
	ErrCanceled = &Error{kind: "canceled", text: "canceled"}
)

// Kind returns the label of err: "" for nil, the sentinel's kind for errors
// of this package ("dial", "timeout", "closed", "garbage", "too_big", "io",
// "config", "bad_request", "canceled"), "error" for anything else.
func Kind(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.kind
	}
	return "error"
}

// opError is one failure: the sentinel (its kind), what we were doing, and
// the cause. errors.Is matches both the sentinel and the cause.
type opError struct {
	kind   *Error
	op     string
	detail string
	cause  error
}

// ConfigField names the option of a configuration error as the dcc:
// section spells it, so the loader reports it at that key's line.
func (e *opError) ConfigField() string {
	if e.kind != ErrConfig {
		return ""
	}
	if e.op == "option" {
		return "options"
	}
	return e.op
}

func (e *opError) Error() string {
	s := "dcc: " + e.op
	if e.detail != "" {
		s += ": " + e.detail
	}
	if e.cause != nil {
		s += ": " + e.cause.Error()
	} else if e.detail == "" {
		s += ": " + e.kind.text
	}
	return s
}

func (e *opError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

func newErr(kind *Error, op, detail string, cause error) error {
	return &opError{kind: kind, op: op, detail: detail, cause: cause}
}

// classify maps a network error to a kind. Errors that already carry a kind
// keep it.
func classify(err error) *Error {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, context.Canceled):
		return ErrCanceled
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return ErrTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, net.ErrClosed):
		return ErrClosed
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ErrTimeout
	}
	return ErrIO
}

// wrap gives err a kind (unless it has one) and the operation.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var oe *opError
	if errors.As(err, &oe) {
		return err
	}
	return newErr(classify(err), op, "", err)
}
