// Package dkim verifies the DKIM signatures (RFC 6376) of every message as
// it streams through the milter, with github.com/emersion/go-msgauth/dkim.
//
// The module keeps nothing of the body: when the header section holds a
// DKIM-Signature, the header section (as received) and then each body
// chunk are written into a pipe that go-msgauth's verifier reads in a
// goroutine of its own; a message without a signature costs no goroutine
// and no hashing. Keys are looked up through the daemon's one resolver.
// Each signature gives one dkim= result in the Authentication-Results
// (header.d, header.s, header.i, header.b), which DMARC reads back with
// milter.Txn.AuthResults, and the policy gets Exim's dkim conditions and
// variables (see README.md).
package dkim
