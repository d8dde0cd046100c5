// Package dkimsig holds what DKIM signatures (dkimsign) and ARC sets (arc)
// share from RFC 6376: header and body canonicalization (§3.4) and the
// layout of a signature's tag list. One implementation, so that a signer
// and a sealer cannot drift apart in how they hash or fold. BodyHashes is
// a message's body hashing shared by every consumer (the milter owns one
// per message): each canonicalization runs once however many need it.
package dkimsig
