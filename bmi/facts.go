package bmi

import "github.com/tollgate/tollgate/milter"

// RcptFacts is one recipient's Brightmail-style verdict (the seed's bmi_*).
// Read it with RcptFactsOf.
type RcptFacts struct {
	Optins      []string // opt-in strings set by bmi_optin or the opt-in file
	Scanned     bool     // a scan result was judged; false: delivered normally
	Deliver     bool     // bmi_deliver
	Outcome     string   // deliver, alternate, drop
	AltLocation string   // bmi_alt_location
	Verdict     string   // bmi_base64_verdict
	Tracker     string   // bmi_base64_tracker_verdict
	Fired       []int    // rule numbers that fired
}

// Facts is what happened to the scan of a message. Tests read it with FactsOf.
type Facts struct {
	Run    bool   // control bmi_run was set
	Scans  int    // scans made (one per distinct profile)
	Reason string // why recipients got no verdict (an error kind, too_big), if any
}

// name is the feature's name: its section, module and facts.
const name = "bmi"

// RcptFactsOf returns a recipient's verdict; nil when BMI did not see the
// recipient.
func RcptFactsOf(r *milter.Recipient) *RcptFacts {
	if r == nil {
		return nil
	}
	f, _ := r.Fact(name).(*RcptFacts)
	return f
}

func factsFor(t *milter.Txn) *Facts { return milter.KeepTxnFacts[Facts](t, name) }
