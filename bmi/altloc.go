package bmi

import (
	"errors"
	"fmt"
	"strings"
)

// AltKind is how a milter delivers "to an alternate location".
type AltKind string

const (
	AltRedirect   AltKind = "redirect"   // delete the recipient, add Address
	AltHeader     AltKind = "header"     // deliver, with a header for the mailbox's filters
	AltQuarantine AltKind = "quarantine" // hold the whole message in the MTA's queue
)

// AltLocation is a parsed alternate location. In Exim the location is an
// opaque string for the routers; a milter has three things it can do, so
// the string names one:
//
//	redirect:<address>        redirect:spam-trap@example.org
//	header:<Name>: <value>    header:X-Spam-Folder: Junk
//	quarantine[:<reason>]     quarantine:bmi rule 7
type AltLocation struct {
	Kind        AltKind
	Address     string // AltRedirect
	HeaderName  string // AltHeader
	HeaderValue string // AltHeader
	Reason      string // AltQuarantine; may be empty
}

// ParseAltLocation reads an alternate location.
func ParseAltLocation(s string) (AltLocation, error) {
	kind, rest, _ := strings.Cut(s, ":")
	bad := func(format string, args ...any) (AltLocation, error) {
		return AltLocation{}, fmt.Errorf("alt_location %q: %s", s, fmt.Sprintf(format, args...))
	}
	if strings.ContainsAny(s, "\r\n\x00") {
		return bad("control characters")
	}
	switch AltKind(strings.ToLower(strings.TrimSpace(kind))) {
	case AltRedirect:
		a := strings.TrimSpace(rest)
		if a == "" {
			return bad("redirect needs an address")
		}
		if strings.ContainsAny(a, " \t<>,") {
			return bad("redirect takes one bare address")
		}
		return AltLocation{Kind: AltRedirect, Address: a}, nil
	case AltHeader:
		name, value, ok := strings.Cut(rest, ":")
		name = strings.TrimSpace(name)
		value = strings.TrimSpace(value)
		if !ok || name == "" {
			return bad("want header:<Name>: <value>")
		}
		if err := checkHeaderName(name); err != nil {
			return bad("%v", err)
		}
		return AltLocation{Kind: AltHeader, HeaderName: name, HeaderValue: value}, nil
	case AltQuarantine:
		return AltLocation{Kind: AltQuarantine, Reason: strings.TrimSpace(rest)}, nil
	}
	return bad("want redirect:<address>, header:<Name>: <value> or quarantine[:<reason>]")
}

func checkHeaderName(name string) error {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c >= 127 || c == ':' {
			return errors.New("not a header field name")
		}
	}
	if strings.HasPrefix(strings.ToLower(name), "x-brightmail-") {
		return errors.New("X-Brightmail-* headers are tollgate's own")
	}
	return nil
}
