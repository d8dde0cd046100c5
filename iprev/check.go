// Package iprev is the iprev method of RFC 8601 §3: the real client's
// address is looked up in reverse (PTR), each name forward (A or AAAA), and
// the client passes when a name leads back to its address.
package iprev

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
)

// Resolver is what iprev looks names up with: the shared resolver of the
// daemon (internal/resolver) or a *net.Resolver. Errors are *net.DNSError,
// IsNotFound for NXDOMAIN and no-data.
type Resolver interface {
	LookupAddr(ctx context.Context, addr string) ([]string, error)
	LookupIP(ctx context.Context, network, host string) ([]net.IP, error)
}

// The results of RFC 8601 §3.
const (
	ResultPass      = "pass"
	ResultFail      = "fail"
	ResultTempError = "temperror"
	ResultPermError = "permerror"
)

// Results are every result.
var Results = []string{ResultPass, ResultFail, ResultTempError, ResultPermError}

// MaxNames caps the PTR names tried forward, as RFC 7208 §4.6.4 does for
// SPF's ptr: a client cannot make us ask a hundred questions.
const MaxNames = 10

// Outcome is the result of a check.
type Outcome struct {
	Result string
	// Name is the forward-confirmed name (pass), "" otherwise.
	Name string
	// Names are the PTR names found (at most MaxNames), without the
	// trailing dot.
	Names []string
	// Problem says why, when it is not pass.
	Problem string
}

// Check finds whether ip has a name that leads back to it, bounded by
// ctx. DNS trouble is temperror; no PTR data is permerror; PTR names none
// of which leads back (no address, or other addresses) is fail.
func Check(ctx context.Context, res Resolver, ip netip.Addr) Outcome {
	ip = ip.Unmap()
	names, err := res.LookupAddr(ctx, ip.String())
	if err != nil {
		if notFound(err) {
			return Outcome{Result: ResultPermError, Problem: "no PTR record"}
		}
		return Outcome{Result: ResultTempError, Problem: "PTR lookup: " + dnsProblem(err)}
	}
	if len(names) == 0 {
		return Outcome{Result: ResultPermError, Problem: "no PTR record"}
	}
	o := Outcome{}
	for _, n := range names {
		if len(o.Names) == MaxNames {
			break
		}
		o.Names = append(o.Names, strings.TrimSuffix(n, "."))
	}
	network := "ip6"
	if ip.Is4() {
		network = "ip4"
	}
	var temp error
	for _, name := range o.Names {
		addrs, err := res.LookupIP(ctx, network, name)
		if err != nil {
			if !notFound(err) && temp == nil {
				temp = err
			}
			continue
		}
		for _, a := range addrs {
			if got, ok := netip.AddrFromSlice(a); ok && got.Unmap() == ip {
				o.Result, o.Name = ResultPass, name
				return o
			}
		}
	}
	if temp != nil {
		o.Result, o.Problem = ResultTempError, "forward lookup: "+dnsProblem(temp)
		return o
	}
	o.Result, o.Problem = ResultFail, "no PTR name leads back to "+ip.String()
	return o
}

func notFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

func dnsProblem(err error) string {
	var de *net.DNSError
	if errors.As(err, &de) {
		if de.IsTimeout {
			return "timeout for " + de.Name
		}
		return de.Err + " for " + de.Name
	}
	return err.Error()
}
