package benchcpu

import (
	"crypto/sha256"
	"testing"
)

func TestProcessCountsWork(t *testing.T) {
	before := Process()
	sum := sha256.Sum256(nil)
	for range 200000 {
		sum = sha256.Sum256(sum[:])
	}
	if Process() <= before {
		t.Errorf("200,000 hashes used no CPU time (%v then %v)", before, Process())
	}
}
