// Package dkim verifies the DKIM signatures (RFC 6376, RFC 8463) of every
// message as it streams through the milter.
//
// The verifier is this package's own (verify.go), not go-msgauth's, for
// two reasons. Issue #18: each body canonicalization must run once per
// message, shared by DKIM and ARC verification, DKIM signing and the ARC
// seal, and go-msgauth canonicalizes and hashes the body itself with no
// way to take a hash computed elsewhere; here each signature's body hash
// is asked of the milter (milter.Txn.BodyHash) at the end of the header
// section. And the signatures are checked through internal/sigcrypto, with
// OpenSSL when libcrypto.so.3 loads, like ARC's, with the key records
// parsed once into the library's key objects and cached by their text.
// Canonicalization is internal/dkimsig's, the one arc and dkimsign use.
//
// The checks run in go-msgauth v0.7.0's order and are worded as it words
// them, so that the results, reasons and Authentication-Results are those
// the module gave when it verified with go-msgauth; go-msgauth stays in
// the tests as the oracle (differential_test.go, FuzzDifferential).
//
// A message without a signature costs no goroutine and no hashing. Keys
// are looked up through the daemon's one resolver, each lookup bounded by
// dkim.timeout. Each signature gives one dkim= result in the
// Authentication-Results (header.d, header.s, header.i, header.b), which
// DMARC reads back with milter.Txn.AuthResults, and the policy gets Exim's
// dkim conditions and variables (see README.md).
package dkim
