package dmarc

import "github.com/tollgate/tollgate/milter"

// Facts is the DMARC evaluation of a message, for the policy's variables
// and condition. Read it with FactsOf.
type Facts struct {
	Checked      bool
	Status       string // $dmarc_status
	StatusText   string // $dmarc_status_text
	FromDomain   string
	UsedDomain   string // $dmarc_used_domain
	DomainPolicy string // $dmarc_domain_policy
	Override     string // $dmarc_override: "arc:<sealer>" when a trusted ARC sealer vouched
	AuthResult   string // the dmarc= result as written in Authentication-Results
}

// name is the feature's name: its section, module and facts.
const name = "dmarc"

// FactsOf returns the DMARC facts of a message: empty when DMARC did not run.
func FactsOf(t *milter.Txn) *Facts { return milter.TxnFacts[Facts](t, name) }

func factsFor(t *milter.Txn) *Facts { return milter.KeepTxnFacts[Facts](t, name) }
