package arc

import (
	"context"
	"errors"
	"net"
)

// Resolver looks up TXT records: one string per record, the
// character-strings of a record concatenated (RFC 6376 §3.6.2.2). The
// daemon's is the shared internal/resolver. Errors that are a
// *net.DNSError with IsNotFound, or match ErrPermDNS, mean there is no key;
// anything else is temporary.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

var (
	// ErrTempDNS: the answer could not be had now (timeout, SERVFAIL,
	// REFUSED, network error); trying later may work.
	ErrTempDNS = errors.New("dns: temporary failure")
	// ErrPermDNS: the name has no TXT record (NXDOMAIN or no data).
	ErrPermDNS = errors.New("dns: no record")
)

// DNSError is the error of a failed key lookup, as the reasons say it.
type DNSError struct {
	Name      string
	Temporary bool
	Cause     string // e.g. "SERVFAIL", "NXDOMAIN", "timeout"
}

func (e *DNSError) Error() string {
	s := ErrPermDNS.Error() + " at "
	if e.Temporary {
		s = ErrTempDNS.Error() + " for "
	}
	s += e.Name
	if e.Cause != "" {
		s += " (" + e.Cause + ")"
	}
	return s
}

func (e *DNSError) Is(target error) bool {
	return (target == ErrTempDNS && e.Temporary) || (target == ErrPermDNS && !e.Temporary)
}

// dnsError classifies what a Resolver returned.
func dnsError(name string, err error) *DNSError {
	var de *DNSError
	if errors.As(err, &de) {
		return de
	}
	var ne *net.DNSError
	if errors.As(err, &ne) {
		return &DNSError{Name: name, Temporary: !ne.IsNotFound, Cause: ne.Err}
	}
	return &DNSError{Name: name, Temporary: !errors.Is(err, ErrPermDNS), Cause: err.Error()}
}
