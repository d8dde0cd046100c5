// Package arc verifies and seals Authenticated Received Chains (RFC 8617).
//
// A Verifier takes one message the way a milter sees it: Header for each
// header field in order (raw value, folds joined with CRLF), EndOfHeaders,
// Body for each chunk, then Result, which runs RFC 8617 §5.2 and looks up
// keys through a Resolver (NewDNSResolver for real DNS). The body is
// canonicalized and hashed as it streams, once per canonicalization in use,
// never stored. Seal then builds the next ARC set from the same Verifier.
//
// Interoperability is checked against the ValiMail ARC test suite and, as
// subprocesses, against dkimpy and Mail::DKIM (see README.md).
package arc
