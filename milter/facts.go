package milter

// Facts that feature modules write and the policy reads. They live here, not
// in the feature packages, so that the policy and the milter never depend on a
// feature's internals (DESIGN.md: dependencies point one way).

// Tag adds a short key=value to the message's summary log line (ARC=pass,
// SRS=<new sender>, ...); a later tag with the same key replaces the earlier.
func (t *Txn) Tag(key, value string) {
	for i := range t.Tags {
		if t.Tags[i][0] == key {
			t.Tags[i][1] = value
			return
		}
	}
	t.Tags = append(t.Tags, [2]string{key, value})
}

// ARCFacts is the ARC validation of a message (the seed's arc_* variables).
type ARCFacts struct {
	Checked    bool
	State      string   // pass, fail, none
	Reason     string   // why, when fail
	Domains    []string // chain domains in instance order, "" for a problematic set
	OldestPass int      // lowest instance whose AMS still validates; 0 if none
	Instances  int      // highest instance seen
	AuthResult string   // the Authentication-Results value tollgate adds
	Sealed     string   // the signing domain when tollgate sealed the message
}
