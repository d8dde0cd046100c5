package srs

import (
	"crypto/hmac"
	"crypto/md5" // Exim's native SRS is defined on HMAC-MD5: compatibility, not choice
	"encoding/hex"
	"fmt"
	"strings"
)

// Exim's native SRS (Exim 4.95+, built with SUPPORT_SRS: the expansion item
// ${srs_encode {secret}{return_path}{domain}} and the condition
// ${if inbound_srs {local_part}{secret}}), byte for byte as Debian's Exim
// 4.96 writes and checks it: src/src/expand.c of 4.96 with the fix of 4.97
// "Fix ${srs_encode ..} for mod-1024 day zero" (Exim commit 51f9c07cd),
// which Debian carries; the tests run that binary. The rules:
//
//   - Forward writes SRS0=HHHH=ST=domain=local@<srs domain>: HHHH the first 4
//     lower-case hex digits of HMAC-MD5(secret, lower(return path as given)),
//     ST the day (days since 1970 mod 1024) as two base32 letters, lower
//     case (4.96 as released dropped leading zeros, and wrote no stamp at
//     all on day 0 of the cycle), then the domain and the local part, its
//     quotes removed. A local part
//     that had quotes makes the whole new local part quoted. Always SRS0,
//     whatever the sender: there is no SRS1 in this scheme, and the
//     separator is always '='.
//   - Reverse (inbound_srs) matches ^(?i)SRS0=([^=]+)=([A-Z2-7]{2})=([^=]*)=(.*)$
//     against the local part, rebuilds the recipient as lower(local) @
//     lower(domain), the local part quoted if it holds anything but atext
//     and dots, and accepts when the stamp is at most 10 days old (fixed in
//     Exim, not max_age) and the hash is exactly 4 characters equal to the
//     HMAC-MD5 of that recipient. The result is that recipient, lower case.
//
// Exim's routers lower-case the local part before any condition sees it
// (caseful_local_part is off by default), and so does Reverse here: the hash
// compare is therefore case-insensitive, as it is in a default Exim, and a
// stamp in upper case (which inbound_srs itself misreads: it looks letters
// up in a lower-case table) reads as Exim's routers give it.
const (
	eximHashLen = 4
	eximMaxAge  = 10 // days: inbound_srs's fixed limit
)

const eximBase32 = "abcdefghijklmnopqrstuvwxyz234567"

// Scheme is an SRS address format.
type Scheme string

const (
	SchemeGuarded Scheme = "guarded" // libsrs2, postsrsd, Mail::SRS
	SchemeExim    Scheme = "exim"    // Exim's native srs_encode / inbound_srs
)

// eximForward is Exim's ${srs_encode {secret}{sender}{domain}}.
func (s *SRS) eximForward(sender, host, local string) string {
	hash := eximHash(s.secrets[0], sender)
	quoted := strings.IndexByte(local, '"') >= 0
	if quoted {
		local = strings.ReplaceAll(local, `"`, "")
	}
	var b strings.Builder
	b.Grow(2 + 5 + eximHashLen + 1 + 2 + 1 + len(host) + 1 + len(local) + 1 + len(s.domain))
	if quoted {
		b.WriteByte('"')
	}
	b.WriteString("SRS0=")
	b.WriteString(hash)
	b.WriteByte('=')
	b.WriteString(eximStamp(s.day()))
	b.WriteByte('=')
	b.WriteString(host)
	b.WriteByte('=')
	b.WriteString(local)
	if quoted {
		b.WriteByte('"')
	}
	b.WriteByte('@')
	b.WriteString(s.domain)
	return b.String()
}

// eximHash is the first 4 hex digits of HMAC-MD5(secret, lower(text)),
// lower-casing ASCII only (C's tolower).
func eximHash(secret []byte, text string) string {
	mac := hmac.New(md5.New, secret)
	buf := []byte(text)
	lowerBytes(buf)
	mac.Write(buf)
	return hex.EncodeToString(mac.Sum(nil)[:eximHashLen/2])
}

// eximStamp writes a day as two lower-case base32 letters.
func eximStamp(day int64) string {
	v := day & (stampSlots - 1)
	return string([]byte{eximBase32[v>>5], eximBase32[v&31]})
}

// eximReverse is Exim's inbound_srs, on the local part of addr as an Exim
// router sees it: quotes and backslashes removed, lower case. It returns
// $srs_recipient.
func (s *SRS) eximReverse(addr string) (string, error) {
	local := addr
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		local = addr[:at]
	}
	// ASCII only, as C's tolower: other bytes, even invalid UTF-8, stay.
	buf := []byte(unquoteLocal(local))
	lowerBytes(buf)
	local = string(buf)
	body, ok := strings.CutPrefix(local, "srs0=")
	if !ok {
		switch tag(local) {
		case 0:
			return "", ErrNotSRS
		case '?':
			return "", fmt.Errorf("%w %q", ErrUnknownSeparator, local[4])
		}
		return "", fmt.Errorf("%w: the exim scheme has only SRS0=", ErrBadFormat)
	}
	hash, rest, ok1 := strings.Cut(body, "=")
	stamp, rest, ok2 := strings.Cut(rest, "=")
	host, user, ok3 := strings.Cut(rest, "=")
	switch {
	case !ok1 || !ok2 || !ok3 || hash == "":
		return "", fmt.Errorf("%w: SRS0 needs hash, stamp, domain and local part", ErrBadFormat)
	case len(stamp) != 2 || strings.Trim(stamp, eximBase32) != "":
		return "", fmt.Errorf("%w %q", ErrBadStamp, stamp)
	}
	q := ""
	if needsQuotes(local) {
		q = `"`
	}
	recipient := q + user + q + "@" + host
	switch {
	case !s.useHash:
	case len(hash) < eximHashLen:
		return "", fmt.Errorf("%w: %d characters, exactly %d required", ErrHashTooShort, len(hash), eximHashLen)
	case len(hash) > eximHashLen:
		return "", fmt.Errorf("%w: %d characters, exactly %d required", ErrBadHash, len(hash), eximHashLen)
	default:
		if !s.eximHashMatches(hash, recipient) {
			return "", ErrBadHash
		}
	}
	if s.useStamp {
		var then int64
		for i := 0; i < len(stamp); i++ {
			then = then*32 + int64(strings.IndexByte(eximBase32, stamp[i]))
		}
		if age := (s.day() - then) & (stampSlots - 1); age > eximMaxAge {
			return "", fmt.Errorf("%w: stamp %s is %d days old (or ahead), the exim scheme's limit is %d", ErrExpired, stamp, age, eximMaxAge)
		}
	}
	return recipient, nil
}

// eximHashMatches compares under every secret, in constant time.
func (s *SRS) eximHashMatches(given, recipient string) bool {
	match := 0
	for _, secret := range s.secrets {
		match |= subtleCompare(given, eximHash(secret, recipient))
	}
	return match == 1
}

// needsQuotes is inbound_srs's test: a byte that is neither an ASCII letter
// or digit nor one of .!#$%&'*+-/=?^_`{|}~ makes the rebuilt local part quoted.
func needsQuotes(local string) bool {
	for i := 0; i < len(local); i++ {
		c := local[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			continue
		}
		if strings.IndexByte(".!#$%&'*+-/=?^_`{|}~", c) < 0 {
			return true
		}
	}
	return false
}

// unquoteLocal removes the quotes and backslash escapes of a quoted local
// part (Exim's $local_part is unquoted); others come back as they are.
func unquoteLocal(local string) string {
	if strings.IndexByte(local, '"') < 0 {
		return local
	}
	var b strings.Builder
	for i := 0; i < len(local); i++ {
		switch c := local[i]; {
		case c == '"':
		case c == '\\' && i+1 < len(local):
			i++
			b.WriteByte(local[i])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
