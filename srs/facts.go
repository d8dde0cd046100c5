package srs

import "github.com/tollgate/tollgate/milter"

// RcptFacts is what SRS found for one recipient at RCPT (the seed's srs_*).
// Read it with RcptFactsOf.
type RcptFacts struct {
	Status    string // valid, invalid, expired, none (unavailable: the store is down)
	Reason    string // why invalid or expired, short and stable
	Recipient string // srs_recipient: the address it reverses to
	DBKey     string // database mode: the key looked up
}

// Facts is what SRS did for a message. Read it with FactsOf.
type Facts struct {
	OrigSender string // srs_orig_sender: the envelope sender before forwarding
	NewSender  string // the SRS sender the message leaves with
	DBKey      string // database mode: the key the original sender was stored under
}

// name is the feature's name: its section, module and facts.
const name = "srs"

// RcptFactsOf returns what SRS found for a recipient; nil when it is no
// address at the SRS domain (or SRS did not run).
func RcptFactsOf(r *milter.Recipient) *RcptFacts {
	if r == nil {
		return nil
	}
	f, _ := r.Fact(name).(*RcptFacts)
	return f
}

// FactsOf returns what SRS did for a message: empty when it did nothing.
func FactsOf(t *milter.Txn) *Facts { return milter.TxnFacts[Facts](t, name) }
