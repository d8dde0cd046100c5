package bmi

import (
	"context"
	"errors"
	"net"
	"os"
)

// Error kinds: a closed set, for metric labels and log keys (Kind). A scan
// that fails with any of them gives no verdict: every recipient is delivered
// normally unless the policy says defer.
const (
	KindDial       = "dial"        // could not connect
	KindTimeout    = "timeout"     // the scan's timeout or the caller's deadline passed
	KindCanceled   = "canceled"    // the caller's context was canceled
	KindSend       = "send"        // the request was not fully sent; no reply was read
	KindTooBig     = "too_big"     // above the backend's max size: not sent at all
	KindProtocol   = "protocol"    // the peer closed the exchange early or cut its reply
	KindHTTPStatus = "http_status" // rspamd answered with an HTTP status other than 200
	KindScanner    = "scanner"     // the scanner reported an error of its own
	KindGarbage    = "garbage"     // a reply that does not parse
	KindOther      = "other"       // anything else (a bug if ever seen)
)

// Kinds lists every value Kind returns for a non-nil error, to pre-create
// metric series.
var Kinds = []string{KindDial, KindTimeout, KindCanceled, KindSend, KindTooBig, KindProtocol,
	KindHTTPStatus, KindScanner, KindGarbage, KindOther}

// Error is a failed scan or an unusable reply.
type Error struct {
	Backend string // "spamd" or "rspamd"; empty from the Parse functions
	Kind    string // one of the Kind constants
	Status  int    // the HTTP status for KindHTTPStatus, the EX_ code for a spamd KindScanner
	Err     error
}

func (e *Error) Error() string {
	s := "bmi: "
	if e.Backend != "" {
		s += e.Backend + ": "
	}
	return s + e.Kind + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Kind returns the kind of a scan error: "" for nil, one of the Kind
// constants otherwise.
func Kind(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	switch {
	case errors.Is(err, context.Canceled):
		return KindCanceled
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return KindTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return KindTimeout
	}
	return KindOther
}

func newErr(kind string, err error) *Error { return &Error{Kind: kind, Err: err} }

// ErrTooBig is wrapped by the KindTooBig errors of Scan and of Spool.Reader.
var ErrTooBig = errors.New("message above the size limit")

// errClosed is returned by a Spool used after Close.
var errClosed = errors.New("bmi: spool closed")

// classify turns an I/O error of an exchange into an *Error of the given
// kind, unless it already is one; a deadline or a cancellation wins over
// either, since that is what really happened.
func classify(parent, ctx context.Context, backend, kind string, err error) *Error {
	override := ""
	var ne net.Error
	switch {
	case parent.Err() != nil && errors.Is(parent.Err(), context.Canceled):
		override = KindCanceled
	case ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		override = KindTimeout
	}
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Kind: kind, Err: err}
	}
	if override != "" {
		e.Kind = override
	}
	if e.Backend == "" {
		e.Backend = backend
	}
	return e
}
