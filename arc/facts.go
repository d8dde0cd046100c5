package arc

import "github.com/tollgate/tollgate/milter"

// Facts is the ARC validation of a message (the seed's arc_* variables).
// Read it with FactsOf.
type Facts struct {
	Checked    bool
	State      string   // pass, fail, none
	Reason     string   // why, when fail
	Domains    []string // chain domains in instance order, "" for a problematic set
	OldestPass int      // lowest instance whose AMS still validates; 0 if none
	Instances  int      // highest instance seen
	AuthResult string   // the arc= result in the Authentication-Results
	Sealed     string   // the signing domain when tollgate sealed the message
}

// name is the feature's name: its section, module and facts.
const name = "arc"

// FactsOf returns the ARC facts of a message: empty when ARC did not run.
func FactsOf(t *milter.Txn) *Facts { return milter.TxnFacts[Facts](t, name) }

func factsFor(t *milter.Txn) *Facts { return milter.KeepTxnFacts[Facts](t, name) }
