package milter

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
