package dkim

import "github.com/tollgate/tollgate/milter"

// Exim's dkim_verify_status values, best first: the message's status is
// the best of its signatures'.
const (
	StatusPass    = "pass"
	StatusFail    = "fail"
	StatusInvalid = "invalid"
	StatusNone    = "none"
)

// Signature is the verification of one DKIM-Signature, in header order.
type Signature struct {
	Domain   string // d=, as written
	Selector string // s=
	AUID     string // i= as written, "" when the signature has none
	B        string // the first 8 characters of b= (RFC 6008 header.b)
	Result   string // the RFC 8601 result: pass, fail, policy, temperror, permerror
	Status   string // Exim's: pass, fail, invalid
	Reason   string // Exim's dkim_verify_reason (see README.md), "" on pass
	Detail   string // the verifier's words, for the A-R reason
}

// Facts is the DKIM verification of a message. Read it with FactsOf.
type Facts struct {
	Checked    bool
	Status     string      // the best status among the signatures; none without one
	Reason     string      // the reason of the first signature with that status
	Signatures []Signature // the verified ones: the first max_signatures
	Skipped    int         // signatures over max_signatures, not verified
	// Signers are the d= and i= values of the passing signatures, each once,
	// in header order ($dkim_signers).
	Signers []string
	// Domain and Selector are those of the first passing signature.
	Domain, Selector string
}

// name is the feature's name: its section, module and facts.
const name = "dkim"

// FactsOf returns the DKIM facts of a message: empty when DKIM did not run.
func FactsOf(t *milter.Txn) *Facts { return milter.TxnFacts[Facts](t, name) }

func factsFor(t *milter.Txn) *Facts { return milter.KeepTxnFacts[Facts](t, name) }

// statusRank orders statuses for "the best": pass over fail over invalid
// over none.
func statusRank(s string) int {
	switch s {
	case StatusPass:
		return 3
	case StatusFail:
		return 2
	case StatusInvalid:
		return 1
	}
	return 0
}
