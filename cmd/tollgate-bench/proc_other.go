//go:build !linux

package main

import "syscall"

func childAttr() *syscall.SysProcAttr { return nil }

// selfCPU is not measured outside Linux.
func selfCPU() float64 { return 0 }
