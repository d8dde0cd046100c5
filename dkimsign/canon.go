package dkimsign

import (
	"github.com/tollgate/tollgate/internal/dkimsig"
)

// Canonicalization algorithms (RFC 6376 §3.4), as Options names them.
const (
	canonSimple  = "simple"
	canonRelaxed = "relaxed"
)

// bodyCanon is the dkimsig canonicalization named c (default relaxed).
func bodyCanon(c string) dkimsig.Canon {
	if canonOr(c) == canonSimple {
		return dkimsig.Simple
	}
	return dkimsig.Relaxed
}

// appendHeader appends one header field canonicalised, with its CRLF.
// value is the text after the colon, leading space included.
func appendHeader(dst []byte, canon, name, value string) []byte {
	return append(appendHeaderNoCRLF(dst, canon, name, value), '\r', '\n')
}

// appendHeaderNoCRLF is appendHeader without the CRLF: how the
// DKIM-Signature itself is hashed (RFC 6376 §3.7). Folds may come with a
// bare LF from the MTA; they are hashed as the CRLF they are on the wire.
func appendHeaderNoCRLF(dst []byte, canon, name, value string) []byte {
	value = dkimsig.FixLF(value)
	if canon == canonSimple {
		return append(append(append(dst, name...), ':'), value...)
	}
	return dkimsig.AppendRelaxedHeader(dst, name, value)
}
