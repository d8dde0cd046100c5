package dkimsign

import (
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/internal/dkimsig"
	"github.com/tollgate/tollgate/internal/sigcrypto"
)

// Algorithms (RFC 6376 §3.3, RFC 8463 §3): the key decides which.
const (
	AlgRSASHA256     = "rsa-sha256"
	AlgEd25519SHA256 = "ed25519-sha256"
)

// DefaultHeaders is the h= list when none is configured: Exim's
// dkim_sign_headers default (PDKIM_DEFAULT_SIGN_HEADERS, the fields RFC
// 6376 §5.4.1 recommends). Each name is signed once, whether the field is
// present or not: an absent field signed stays absent.
var DefaultHeaders = []string{
	"From", "Sender", "Reply-To", "Subject", "Date", "Message-ID", "To", "Cc",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-ID",
	"Content-Description", "Resent-Date", "Resent-From", "Resent-Sender",
	"Resent-To", "Resent-Cc", "Resent-Message-ID", "In-Reply-To", "References",
	"List-Id", "List-Help", "List-Unsubscribe", "List-Subscribe", "List-Post",
	"List-Owner", "List-Archive",
}

// Key is one signing key: d=Domain, s=Selector.
type Key struct {
	Domain, Selector string
	// Signer is an RSA (1024 bits or more) or Ed25519 key of the crypto
	// library in use (sigcrypto: OpenSSL when it loads, else Go's), the
	// interface ARC seals with too.
	Signer sigcrypto.Signer
}

// Alg is the signature algorithm for the key.
func (k Key) Alg() (string, error) {
	if k.Signer == nil {
		return "", errors.New("dkimsign: no signing key")
	}
	switch pub := k.Signer.Public().(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < 1024 {
			return "", fmt.Errorf("dkimsign: RSA key of %d bits is too small to sign (min 1024)", pub.N.BitLen())
		}
		return AlgRSASHA256, nil
	case ed25519.PublicKey:
		return AlgEd25519SHA256, nil
	}
	return "", fmt.Errorf("dkimsign: unsupported key type %T", k.Signer.Public())
}

// Options is how a message is signed; every key of a message shares it.
type Options struct {
	// Headers is the h= specification in Exim's dkim_sign_headers form
	// (nil: DefaultHeaders): "Name" signs the field once (absent or not),
	// "=Name" every instance present, "+Name" every instance present and
	// one more, so that adding one breaks the signature (oversigning).
	Headers []string
	// HeaderCanon and BodyCanon are "relaxed" (the default) or "simple".
	HeaderCanon, BodyCanon string
	// NoTimestamp leaves t= out.
	NoTimestamp bool
	// Expire, when positive, adds x= that long after signing.
	Expire time.Duration
	// Now is the signing clock; default time.Now.
	Now func() time.Time
}

// Header is one header field; Value is the text after the colon, leading
// space included, folds as the MTA hands them (LF or CRLF).
type Header struct{ Name, Value string }

// ParseHeaderSpec checks one item of Options.Headers and splits off its
// prefix ("", "=" or "+").
func ParseHeaderSpec(item string) (prefix, name string, err error) {
	name = item
	if strings.HasPrefix(item, "=") || strings.HasPrefix(item, "+") {
		prefix, name = item[:1], item[1:]
	}
	if name == "" {
		return "", "", fmt.Errorf("dkimsign: empty header name in %q", item)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c >= 127 || c == ':' || c == ';' {
			return "", "", fmt.Errorf("dkimsign: bad header name %q", item)
		}
	}
	return prefix, name, nil
}

// Validate checks the options once, at configuration time: RFC 6376
// §5.4 wants From signed, and the DKIM-Signature being added cannot sign
// itself.
func (o *Options) Validate() error {
	from := o.Headers == nil
	for _, item := range o.Headers {
		_, n, err := ParseHeaderSpec(item)
		if err != nil {
			return err
		}
		from = from || strings.EqualFold(n, "from")
	}
	if !from {
		return errors.New("dkimsign: the header list must include From (RFC 6376 §5.4)")
	}
	for _, c := range []string{o.HeaderCanon, o.BodyCanon} {
		if c != "" && c != canonRelaxed && c != canonSimple {
			return fmt.Errorf("dkimsign: canonicalization %q is not relaxed or simple", c)
		}
	}
	if o.Expire < 0 {
		return errors.New("dkimsign: expire must not be negative")
	}
	return nil
}

func canonOr(c string) string {
	if c == "" {
		return canonRelaxed
	}
	return c
}

// signedNames builds the h= list for the header fields at hand.
func signedNames(headers []Header, spec []string) []string {
	if spec == nil {
		spec = DefaultHeaders
	}
	count := map[string]int{}
	for _, h := range headers {
		count[strings.ToLower(strings.TrimRight(h.Name, " \t"))]++
	}
	var names []string
	for _, item := range spec {
		prefix, n, err := ParseHeaderSpec(item)
		if err != nil {
			continue // Validate refused it at load
		}
		n = strings.ToLower(n)
		c := 1
		switch prefix {
		case "=":
			c = count[n]
		case "+":
			c = count[n] + 1
		}
		for range c {
			names = append(names, n)
		}
	}
	return names
}

// selectHeaders returns, for each name of h=, the header field it signs:
// instances are taken from the bottom up (RFC 6376 §5.4.2); a name with
// no instance left signs nothing (-1).
func selectHeaders(headers []Header, names []string) []int {
	used := make([]bool, len(headers))
	out := make([]int, len(names))
	for i, n := range names {
		out[i] = -1
		for j := len(headers) - 1; j >= 0; j-- {
			if !used[j] && strings.EqualFold(strings.TrimRight(headers[j].Name, " \t"), n) {
				used[j], out[i] = true, j
				break
			}
		}
	}
	return out
}

// Sign makes one DKIM-Signature value (without the leading space, folded
// with CRLF TAB) for each key, in order, over the header fields as they
// will leave and the body hash of a bodyHasher of o.BodyCanon.
func Sign(keys []Key, headers []Header, bodyHash []byte, o Options) ([]string, error) {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	ts := now().Unix()
	hc, bc := canonOr(o.HeaderCanon), canonOr(o.BodyCanon)
	names := signedNames(headers, o.Headers)
	var signed []byte
	for _, i := range selectHeaders(headers, names) {
		if i >= 0 {
			signed = appendHeader(signed, hc, headers[i].Name, headers[i].Value)
		}
	}
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		alg, err := k.Alg()
		if err != nil {
			return nil, err
		}
		tags := []dkimsig.Tag{
			{Name: "v", Value: "1"}, {Name: "a", Value: alg}, {Name: "c", Value: hc + "/" + bc},
			{Name: "d", Value: k.Domain}, {Name: "s", Value: k.Selector},
		}
		if !o.NoTimestamp {
			tags = append(tags, dkimsig.Tag{Name: "t", Value: strconv.FormatInt(ts, 10)})
		}
		if o.Expire > 0 {
			tags = append(tags, dkimsig.Tag{Name: "x", Value: strconv.FormatInt(ts+int64(o.Expire/time.Second), 10)})
		}
		tags = append(tags, dkimsig.Tag{Name: "h", Value: strings.Join(names, ":")},
			dkimsig.Tag{Name: "bh", Value: base64.StdEncoding.EncodeToString(bodyHash)}, dkimsig.Tag{Name: "b"})
		data := appendHeaderNoCRLF(append([]byte(nil), signed...), hc, "DKIM-Signature", " "+dkimsig.Render("DKIM-Signature", tags))
		digest := sha256.Sum256(data)
		// RSASSA-PKCS1-v1_5 over the digest, or (RFC 8463 §3) Ed25519 over
		// the SHA-256 hash as its message: sigcrypto does either
		sig, err := k.Signer.Sign(digest[:])
		if err != nil {
			return nil, fmt.Errorf("dkimsign: signing with %s/%s: %w", k.Domain, k.Selector, err)
		}
		tags[len(tags)-1].Value = base64.StdEncoding.EncodeToString(sig)
		out = append(out, dkimsig.Render("DKIM-Signature", tags))
	}
	return out, nil
}
