package dmarc

import (
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"

	"golang.org/x/net/idna"
)

// addressParser does not decode display names: DMARC needs only the
// address, and an unknown charset in a name must not lose it.
var addressParser = mail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(_ string, input io.Reader) (io.Reader, error) { return input, nil },
}}

// FromDomain returns the RFC5322.From domain DMARC judges (RFC 7489 §6.6.1),
// or the status when there is none it can judge: nofrom for no From field
// or no usable domain in it, error for several From fields or addresses in
// different domains (which RFC 7489 leaves to local policy; Exim's
// libopendmarc judges only the first, which lets a second one through
// unchecked).
func FromDomain(values []string) (domain string, status Status, reason string) {
	switch {
	case len(values) == 0:
		return "", StatusNoFrom, "no From header field"
	case len(values) > 1:
		return "", StatusError, fmt.Sprintf("%d From header fields", len(values))
	}
	domains := fromDomains(values[0])
	switch len(domains) {
	case 0:
		return "", StatusNoFrom, "no domain in From"
	case 1:
		// Lookups and comparisons use A-labels (RFC 8616 §4): a From
		// domain in UTF-8 is the same domain as its punycode form.
		ascii, err := idna.Lookup.ToASCII(domains[0])
		if err != nil || !validDomain(ascii) {
			return "", StatusNoFrom, fmt.Sprintf("invalid domain in From: %q", domains[0])
		}
		return ascii, "", ""
	}
	return "", StatusError, fmt.Sprintf("From has addresses in %d domains", len(domains))
}

// fromDomains returns the distinct, valid domains of the addresses of a
// From value, lower-case.
func fromDomains(value string) []string {
	value = strings.NewReplacer("\r\n", "", "\n", "", "\r", "").Replace(value)
	var addrs []string
	if list, err := addressParser.ParseList(value); err == nil {
		for _, a := range list {
			addrs = append(addrs, a.Address)
		}
	} else {
		addrs = lenientAddresses(value)
	}
	var out []string
	for _, a := range addrs {
		i := strings.LastIndexByte(a, '@')
		if i < 0 {
			continue
		}
		d := strings.ToLower(strings.TrimSuffix(a[i+1:], "."))
		if !validDomain(d) {
			continue
		}
		seen := false
		for _, o := range out {
			seen = seen || o == d
		}
		if !seen {
			out = append(out, d)
		}
		if len(out) > maxFromFields {
			break
		}
	}
	return out
}

// lenientAddresses reads the addresses of a From value net/mail refuses
// (unquoted dots or brackets in a display name are common): each <...>, or
// the whole value when it has none.
func lenientAddresses(value string) []string {
	var out []string
	rest := value
	for len(out) <= maxFromFields {
		open := strings.IndexByte(rest, '<')
		if open < 0 {
			break
		}
		end := strings.IndexByte(rest[open:], '>')
		if end < 0 {
			break
		}
		out = append(out, strings.TrimSpace(rest[open+1:open+end]))
		rest = rest[open+end+1:]
	}
	if len(out) == 0 {
		if v := strings.TrimSpace(value); !strings.ContainsAny(v, " \t,;") {
			out = append(out, v)
		}
	}
	return out
}

// validDomain accepts a host name (UTF-8 labels allowed): DNS length limits,
// no empty label, no characters that cannot be in a name.
func validDomain(d string) bool {
	if d == "" || len(d) > 253 || !strings.Contains(d, ".") {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if c < 0x80 && !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
