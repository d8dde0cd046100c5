package dkim

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// sigTags are the tags of a DKIM-Signature the results name, which
// go-msgauth's Verification does not carry (the selector, b=).
type sigTags struct {
	Domain   string // d=
	Selector string // s=
	AUID     string // i=
	B        string // b=, folding whitespace removed
}

var errTagSyntax = errors.New("dkim: malformed tag list")

// parseTags reads an RFC 6376 §3.2 tag-list: tag=value pairs separated by
// ";", whitespace (folding included) around names and values ignored. It
// returns the pairs in order; a duplicate tag or a pair without "=" is an
// error (§3.2: "Tags with duplicate names MUST NOT occur").
func parseTags(list string) ([][2]string, error) {
	var out [][2]string
	for spec := range strings.SplitSeq(list, ";") {
		name, value, ok := strings.Cut(spec, "=")
		name = strings.Trim(name, " \t\r\n")
		if !ok {
			if name == "" {
				continue // an empty spec: the trailing ";" §3.2 allows
			}
			return nil, fmt.Errorf("%w: %q has no =", errTagSyntax, truncate(name, 20))
		}
		if name == "" {
			return nil, fmt.Errorf("%w: a value without a tag name", errTagSyntax)
		}
		for _, p := range out {
			if p[0] == name {
				return nil, fmt.Errorf("%w: tag %q twice", errTagSyntax, truncate(name, 20))
			}
		}
		out = append(out, [2]string{name, strings.Trim(value, " \t\r\n")})
	}
	return out, nil
}

// signatureTags extracts what the results name from a DKIM-Signature value;
// what it cannot read stays empty (the verifier reports the error).
func signatureTags(value string) sigTags {
	var s sigTags
	tags, err := parseTags(value)
	if err != nil {
		return s
	}
	for _, t := range tags {
		switch t[0] {
		case "d":
			s.Domain = stripFWS(t[1])
		case "s":
			s.Selector = stripFWS(t[1])
		case "i":
			s.AUID = stripFWS(t[1])
		case "b":
			s.B = stripFWS(t[1])
		}
	}
	return s
}

func stripFWS(s string) string {
	if !strings.ContainsAny(s, " \t\r\n") {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, s)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// errKeyTooShort marks an RSA key under min_rsa_bits.
var errKeyTooShort = errors.New("RSA key too short")

// rsaKeyBits returns the size of the RSA key in a DKIM key record (RFC 6376
// §3.6.1), 0 when the record holds no RSA key this can read (an ed25519
// key, a revoked or malformed one: the verifier judges those).
func rsaKeyBits(record string) int {
	tags, err := parseTags(record)
	if err != nil {
		return 0
	}
	var k, p string
	for _, t := range tags {
		switch t[0] {
		case "k":
			k = t[1]
		case "p":
			p = stripFWS(t[1])
		}
	}
	if (k != "" && k != "rsa") || p == "" {
		return 0
	}
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return 0
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		// RFC 6376 erratum 3017: some publish the bare RSAPublicKey.
		if pk, err := x509.ParsePKCS1PublicKey(der); err == nil {
			return pk.N.BitLen()
		}
		return 0
	}
	if pk, ok := pub.(*rsa.PublicKey); ok {
		return pk.N.BitLen()
	}
	return 0
}
