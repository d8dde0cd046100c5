//go:build !cgo

package arc

const cgoBuild = false
