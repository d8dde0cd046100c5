//go:build !cgo

package sigcrypto

import (
	"errors"
	"testing"
)

func impls(testing.TB) []*Impl { return []*Impl{Go} }

func TestDefaultWithoutCgoIsGo(t *testing.T) {
	impl, why := Default()
	if impl != Go || !errors.Is(why, ErrNoCgo) {
		t.Fatalf("Default() = %s, %v; want go, ErrNoCgo", impl.Name(), why)
	}
}
