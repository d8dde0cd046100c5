// Package dkimsign is the dkim_sign: feature: DKIM signatures (RFC 6376,
// RFC 8463 for Ed25519) on the messages the policy marks with the control
// dkim_sign, made once the message is accepted, over the header fields as
// they will leave, and before ARC seals so that the seal covers them.
//
// The signature is built here rather than with go-msgauth's dkim.Signer:
// that signer takes the header section first and then the body, and signs
// the header fields it was fed. A milter sees the body long before it
// knows the final header fields (Authentication-Results, the policy's
// added and removed fields, other modules' changes are settled only after
// the data ACL), and go-msgauth cannot take a body hash computed earlier.
// So the body is canonicalised and hashed as it streams in (the milter's
// shared body hashes, Txn.BodyHash: one pass per canonicalization and
// message, shared with DKIM and ARC verification and the ARC seal),
// nothing of it is kept, and the DKIM-Signature is assembled at Finalize
// from the final header fields and that hash. go-msgauth's verifier checks
// the result in the tests, beside dkimpy, OpenDKIM and Mail::DKIM.
package dkimsign

// name is the feature's name: its section, module and state.
const name = "dkim_sign"
