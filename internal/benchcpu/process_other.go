//go:build !unix

package benchcpu

import "time"

// Process is 0 where getrusage is not available: cpu-ns/op then reads 0.
func Process() time.Duration { return 0 }
