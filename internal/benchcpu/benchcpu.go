// Package benchcpu gives benchmarks the CPU time they use: on a machine
// shared with other work, CPU time per operation is much steadier than wall
// time, which counts the neighbours' work too (docs/performance.md reads
// cpu-ns/op for that reason).
package benchcpu

import (
	"testing"
)

// Report adds cpu-ns/op, this process's user and system CPU time per
// operation, to b's results. Call as defer benchcpu.Report(b)().
func Report(b *testing.B) func() {
	start := Process()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64(Process()-start)/float64(b.N), "cpu-ns/op")
		}
	}
}
