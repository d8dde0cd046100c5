//go:build !unix

package milter_test

func processCPU() int64 { return 0 }
