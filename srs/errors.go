package srs

import "errors"

// Error is the type of this package's sentinel errors. Errors returned by
// Forward and Reverse wrap one of them with detail; match with errors.Is, and
// use Reason for a short, stable label.
type Error struct {
	reason string
	text   string
	parent *Error
}

func (e *Error) Error() string { return "srs: " + e.text }

// Reason is a short snake_case token, stable across releases, for log keys
// and metric labels (a closed set: the sentinels below).
func (e *Error) Reason() string { return e.reason }

// Is makes a refinement match its parent too (ErrUnknownSeparator is also
// ErrNotSRS).
func (e *Error) Is(target error) bool {
	return e.parent != nil && (target == error(e.parent) || e.parent.Is(target))
}

// Errors of Reverse.
var (
	// ErrNotSRS: the local part does not start with SRS0 or SRS1 and a
	// separator. Not an error for a mail system: the address is an ordinary
	// one and goes on unchanged (srs_status "none").
	ErrNotSRS = &Error{reason: "not_srs", text: "not an SRS address"}

	// ErrUnknownSeparator: SRS0 or SRS1 followed by something other than =,
	// + or -. libsrs2 and Mail::SRS call this "not an SRS address", and so
	// does errors.Is (it matches ErrNotSRS); it has its own reason because a
	// mangled SRS address is worth telling apart in the logs.
	ErrUnknownSeparator = &Error{reason: "unknown_separator", text: "unknown separator after the SRS tag", parent: ErrNotSRS}

	// ErrBadFormat: an SRS tag, but fields are missing or empty.
	ErrBadFormat = &Error{reason: "bad_format", text: "malformed SRS address"}

	// ErrBadStamp: the stamp is not two base32 letters.
	ErrBadStamp = &Error{reason: "bad_stamp", text: "bad timestamp"}

	// ErrHashTooShort: fewer hash characters than HashMin (also: none).
	ErrHashTooShort = &Error{reason: "hash_too_short", text: "hash too short"}

	// ErrBadHash: the hash matches none of the secrets: forged, damaged, or
	// signed with a secret no longer configured.
	ErrBadHash = &Error{reason: "bad_hash", text: "hash does not match"}

	// ErrExpired: genuine (the hash matched) but older than MaxAge, or
	// stamped in the future.
	ErrExpired = &Error{reason: "expired", text: "timestamp expired"}
)

// Errors of Forward.
var (
	// ErrNullSender: the null sender (bounces) is never rewritten.
	ErrNullSender = &Error{reason: "null_sender", text: "null sender is not rewritten"}

	// ErrBadAddress: the sender cannot be rewritten so that it reverses to
	// itself (no @, empty local part or domain, @ in the local part, = in the
	// domain).
	ErrBadAddress = &Error{reason: "bad_address", text: "sender cannot be rewritten"}
)

// Errors of database mode (package srs/store). They live here so that the
// milter hooks read them without knowing the store.
var (
	// ErrDBNotFound: no entry under the key, or it has expired. For a
	// recipient: 5xx, unknown address.
	ErrDBNotFound = &Error{reason: "db_not_found", text: "no such key (never stored, or expired)"}

	// ErrDBUnavailable: the store is down, too slow, misconfigured or
	// failing. Temporary: 4xx.
	ErrDBUnavailable = &Error{reason: "db_unavailable", text: "SRS database unavailable"}

	// ErrDBKeyExists: a Put found the key in use; a new key is drawn.
	ErrDBKeyExists = &Error{reason: "db_key_exists", text: "key already in use"}

	// ErrNotDB: not a database-mode address (an ordinary SRS0 or SRS1
	// address, or not SRS at all): not a verdict, hand it to Reverse.
	ErrNotDB = &Error{reason: "not_db", text: "not a database-mode SRS address"}
)

// Reason returns the label of err: "" for nil, the sentinel's Reason for
// errors of this package, "error" for anything else.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.reason
	}
	return "error"
}

// Status is the seed's srs_status: what became of a recipient address.
type Status string

const (
	StatusValid   Status = "valid"   // an SRS address of ours, reversed
	StatusInvalid Status = "invalid" // SRS-shaped but forged, damaged or malformed
	StatusExpired Status = "expired" // genuine but too old (or from the future)
	StatusNone    Status = "none"    // not an SRS address
)

// StatusOf maps the error of Reverse to srs_status: nil is valid, ErrNotSRS
// (with ErrUnknownSeparator) none, ErrExpired expired, anything else invalid.
func StatusOf(err error) Status {
	switch {
	case err == nil:
		return StatusValid
	case errors.Is(err, ErrNotSRS):
		return StatusNone
	case errors.Is(err, ErrExpired):
		return StatusExpired
	}
	return StatusInvalid
}
