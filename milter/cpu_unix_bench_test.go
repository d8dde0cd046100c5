//go:build unix

package milter_test

import "syscall"

// processCPU is the user and system time of this process, in nanoseconds:
// on a machine shared with other work, CPU time per operation is steadier
// than wall time.
func processCPU() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
