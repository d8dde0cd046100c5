package spf

import "github.com/tollgate/tollgate/milter"

// Facts is the SPF check of a message (Exim's $spf_* variables). Read it
// with FactsOf.
type Facts struct {
	Checked       bool
	Result        string // of the identity recorded: MAIL FROM, or HELO for the null sender
	Identity      string // IdentityMailFrom or IdentityHelo
	Address       string // the address checked (postmaster@HELO for the null sender)
	Domain        string // the domain whose policy decided ($spf_used_domain)
	Problem       string // why, for temperror and permerror
	HeaderComment string // $spf_header_comment
	SMTPComment   string // $spf_smtp_comment
	Received      string // the Received-SPF value ($spf_received without the name)
	HeloResult    string // the HELO identity's result, when checked
}

// name is the feature's name: its section, module and facts.
const name = "spf"

// FactsOf returns the SPF facts of a message: empty when SPF did not run.
func FactsOf(t *milter.Txn) *Facts { return milter.TxnFacts[Facts](t, name) }

func factsFor(t *milter.Txn) *Facts { return milter.KeepTxnFacts[Facts](t, name) }

// heloFacts is the HELO identity's check, kept for the session: one check
// per connection and HELO name, not one per message.
type heloFacts struct {
	helo    string
	outcome *Outcome
}
