//go:build !cgo

package sigcrypto

import "errors"

// ErrNoCgo says why a binary built with CGO_ENABLED=0 uses Go's crypto.
var ErrNoCgo = errors.New("built without cgo (CGO_ENABLED=0): Go's crypto signs")

func loadOpenSSL(string) (*Impl, error) { return nil, ErrNoCgo }
