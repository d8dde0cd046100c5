package arc

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/internal/authres"
	"github.com/tollgate/tollgate/internal/dkimsig"
	"github.com/tollgate/tollgate/internal/sigcrypto"
)

// DefaultSignHeaders is the AMS h= list when SealOptions.Headers is nil:
// the fields RFC 6376 §5.4.1 recommends, those a forwarder must not be
// able to swap silently, and DKIM-Signature so that the original
// signatures stay bound to this hop. Only fields present are signed
// (each instance of them); see OversignHeaders for absent ones.
var DefaultSignHeaders = []string{
	"from", "sender", "reply-to", "subject", "date", "message-id", "to", "cc",
	"mime-version", "content-type", "content-transfer-encoding", "content-id",
	"content-description", "resent-date", "resent-from", "resent-sender",
	"resent-to", "resent-cc", "resent-message-id", "in-reply-to", "references",
	"list-id", "list-help", "list-unsubscribe", "list-unsubscribe-post",
	"list-subscribe", "list-post", "list-owner", "list-archive",
	"dkim-signature",
}

// DefaultOversignHeaders is used when SealOptions.OversignHeaders is nil:
// a second From added after this hop breaks its AMS.
var DefaultOversignHeaders = []string{"from"}

// DefaultExpire is the seed's value for "expire" given without a value:
// one month from signing.
const DefaultExpire = "+2592000"

// Key is a signing identity: the key for d=Domain, s=Selector.
type Key struct {
	Domain, Selector string
	// Signer is an RSA (1024 bits or more) or Ed25519 key, parsed once
	// (LoadKeyFile, sigcrypto.ParsePrivateKey, sigcrypto.NewSigner).
	Signer sigcrypto.Signer
}

// SealOptions configures Seal.
type SealOptions struct {
	Key        Key
	AuthServID string
	// Headers is the AMS h= list (nil: DefaultSignHeaders). ARC-Seal is
	// never signed (RFC 8617 §4.1.2) and is dropped from both lists.
	Headers []string
	// OversignHeaders are signed once more than they occur, so that
	// adding one breaks the AMS (nil: DefaultOversignHeaders; empty: none).
	OversignHeaders []string
	// NoTimestamps leaves t= out of the AMS and the AS. t= is written by
	// default: Gmail insists on it on the AS, and OpenARC 1.0.0.Beta3
	// fails a seal without it.
	NoTimestamps bool
	// Expire adds x= to the AMS: "+N" is N seconds after signing, "N" an
	// absolute Unix time, "" none (DefaultExpire is the seed's default).
	Expire string
	// Now is the signing clock; default time.Now.
	Now func() time.Time

	// standardize writes the tags sorted, values lower-cased and unfolded:
	// the layout dkimpy's "standardize" mode produces and the ValiMail
	// signing suite's expected b= values were computed over. Tests only.
	standardize bool
}

// Validate checks the options once, at configuration time.
func (o *SealOptions) Validate() error {
	if !validDomain(o.Key.Domain) {
		return fmt.Errorf("arc: bad signing domain %q", o.Key.Domain)
	}
	if !validDomain(o.Key.Selector) {
		return fmt.Errorf("arc: bad selector %q", o.Key.Selector)
	}
	if _, err := signerAlg(o.Key.Signer); err != nil {
		return err
	}
	if !validAuthServID(o.AuthServID) {
		return fmt.Errorf("arc: bad authserv-id %q", o.AuthServID)
	}
	if _, _, err := ParseExpire(o.Expire); err != nil {
		return err
	}
	for _, h := range append(append([]string{}, o.Headers...), o.OversignHeaders...) {
		if strings.EqualFold(h, "arc-seal") {
			return errors.New("arc: ARC-Seal must not be signed (RFC 8617 §4.1.2)")
		}
		if _, err := parseHList(h); err != nil || strings.Contains(h, ":") {
			return fmt.Errorf("arc: bad header name %q", h)
		}
	}
	return nil
}

func validAuthServID(id string) bool {
	if id == "" {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !authres.IsTokenChar(id[i]) {
			return false
		}
	}
	return true
}

// ParseExpire reads an Expire value: relative ("+N"), absolute ("N") or
// none ("").
func ParseExpire(s string) (relative bool, n int64, err error) {
	if s == "" {
		return false, 0, nil
	}
	relative = strings.HasPrefix(s, "+")
	n, ok := parseUint(strings.TrimPrefix(s, "+"), 12)
	if !ok || n == 0 {
		return false, 0, fmt.Errorf("arc: bad expire %q (want +SECONDS or a Unix time)", s)
	}
	return relative, n, nil
}

// Seal returns the new ARC set, top-most first: ARC-Seal,
// ARC-Message-Signature, ARC-Authentication-Results. Call it after Result.
//
// headers are the message's header fields as they will leave (the
// milter's own Authentication-Results inserted at the top), authResults
// the raw values of the Authentication-Results fields of our authserv-id;
// their results, in order, make the AAR "i=N; <authserv-id>; <results>".
//
// Values come without the leading space and are folded with CRLF TAB at
// about 78 columns; the signatures are computed over "Name: value", which
// relaxed canonicalization (used for both signatures) makes independent
// of that space.
//
// RFC 8617 rules: no seal (ErrNoSeal) when the chain arrived with cv=fail
// or already has 50 sets; a chain that fails now is sealed with cv=fail
// and its AS covers only the new set (§5.1.2). When it failed only
// because of a temporary DNS failure, Seal refuses with an error matching
// both ErrNoSeal and ErrTempDNS rather than brand the chain failed for
// good; the caller may defer.
func (v *Verifier) Seal(opts SealOptions, headers []Header, authResults []string) ([]Header, error) {
	// MTAs hand folded values to milters with bare LF (Postfix does); the
	// verifier saw them as CRLF, and so must the cross-check and the AMS.
	normalized := make([]Header, len(headers))
	for i, h := range headers {
		normalized[i] = Header{Name: h.Name, Value: dkimsig.FixLF(h.Value)}
	}
	headers = normalized
	ars := make([]string, len(authResults))
	for i, a := range authResults {
		ars[i] = dkimsig.FixLF(a)
	}
	authResults = ars
	r := v.result
	if r == nil || v.sealBody == nil {
		return nil, ErrNotPrepared
	}
	if r.ArrivedCV == "fail" {
		return nil, fmt.Errorf("%w: the chain arrived with cv=fail", ErrNoSeal)
	}
	if r.Instances >= MaxInstances {
		return nil, fmt.Errorf("%w: the chain already has %d sets", ErrNoSeal, r.Instances)
	}
	if r.State == StateFail && r.Temporary {
		return nil, fmt.Errorf("%w: %w: chain validation: %s", ErrNoSeal, ErrTempDNS, r.Reason)
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	alg, _ := signerAlg(opts.Key.Signer)
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	ts := now().Unix()
	inst := r.Instances + 1
	cv := string(r.State)

	var prior []Header
	if r.State == StatePass {
		var err error
		if prior, err = priorSets(headers, r.Instances); err != nil {
			return nil, err
		}
	}

	aar := buildAAR(inst, opts.AuthServID, authResults)

	// ARC-Message-Signature over the outgoing headers with the new AAR on top
	all := make([]Header, 0, len(headers)+1)
	all = append(all, Header{"ARC-Authentication-Results", " " + aar})
	all = append(all, headers...)
	names := signedNames(all, opts)
	ams := []dkimsig.Tag{
		{Name: "i", Value: strconv.Itoa(inst)}, {Name: "a", Value: alg}, {Name: "c", Value: "relaxed/relaxed"},
		{Name: "d", Value: opts.Key.Domain}, {Name: "s", Value: opts.Key.Selector},
	}
	if !opts.NoTimestamps || opts.standardize {
		ams = append(ams, dkimsig.Tag{Name: "t", Value: strconv.FormatInt(ts, 10)})
	}
	if rel, x, _ := ParseExpire(opts.Expire); x > 0 {
		if rel {
			x += ts
		}
		ams = append(ams, dkimsig.Tag{Name: "x", Value: strconv.FormatInt(x, 10)})
	}
	ams = append(ams, dkimsig.Tag{Name: "h", Value: strings.Join(names, ":")},
		dkimsig.Tag{Name: "bh", Value: base64.StdEncoding.EncodeToString(v.sealBody.Sum)})
	hv := &Verifier{headers: all}
	buf := make([]byte, 0, 2048)
	for _, i := range hv.selectHeaders(names, 0, -1) {
		buf = dkimsig.AppendHeader(buf, dkimsig.Relaxed, all[i].Name, all[i].Value)
	}
	amsValue, err := signTags("ARC-Message-Signature", ams, buf, opts, alg)
	if err != nil {
		return nil, err
	}

	// ARC-Seal over the prior sets (none when failing), then ours
	buf = buf[:0]
	for _, h := range prior {
		buf = dkimsig.AppendHeader(buf, dkimsig.Relaxed, h.Name, h.Value)
	}
	buf = dkimsig.AppendHeader(buf, dkimsig.Relaxed, "ARC-Authentication-Results", " "+aar)
	buf = dkimsig.AppendHeader(buf, dkimsig.Relaxed, "ARC-Message-Signature", " "+amsValue)
	as := []dkimsig.Tag{
		{Name: "i", Value: strconv.Itoa(inst)}, {Name: "a", Value: alg}, {Name: "cv", Value: cv},
		{Name: "d", Value: opts.Key.Domain}, {Name: "s", Value: opts.Key.Selector},
	}
	if !opts.NoTimestamps || opts.standardize {
		as = append(as, dkimsig.Tag{Name: "t", Value: strconv.FormatInt(ts, 10)})
	}
	asValue, err := signTags("ARC-Seal", as, buf, opts, alg)
	if err != nil {
		return nil, err
	}
	return []Header{
		{"ARC-Seal", asValue},
		{"ARC-Message-Signature", amsValue},
		{"ARC-Authentication-Results", aar},
	}, nil
}

// priorSets returns the ARC header fields of instances 1..n from headers,
// ordered by instance (AAR, AMS, AS each), exactly as they will leave.
func priorSets(headers []Header, n int) ([]Header, error) {
	sets := make([][3]*Header, n)
	for i := range headers {
		k, ok := arcKindOf(headers[i].Name)
		if !ok {
			continue
		}
		var inst int
		var err error
		if k == kindAAR {
			inst, err = parseAAR(headers[i].Value)
		} else {
			var t tagList
			if t, err = parseTagList(headers[i].Value); err == nil {
				iv, _ := t.get("i")
				if inst, ok = parseInstance(iv); !ok {
					err = errors.New("bad i=")
				}
			}
		}
		if err != nil || inst > n || sets[inst-1][k] != nil {
			return nil, errors.New("arc: the ARC header fields changed after validation")
		}
		sets[inst-1][k] = &headers[i]
	}
	out := make([]Header, 0, 3*n)
	for _, s := range sets {
		for _, h := range s {
			if h == nil {
				return nil, errors.New("arc: the ARC header fields changed after validation")
			}
			out = append(out, *h)
		}
	}
	return out, nil
}

// buildAAR makes "i=N; authserv-id; result; result..." from the raw
// Authentication-Results values of our authserv-id, one result a line.
// Results are copied as text: comments, ptypes and properties this
// package does not know survive, and an A-R that cannot be split is left
// out rather than failing the seal.
func buildAAR(inst int, authServID string, authResults []string) string {
	var results []string
	for _, ar := range authResults {
		id, rest, err := authres.Split(ar)
		if err != nil || !strings.EqualFold(id, authServID) {
			continue
		}
		rs, err := authres.SplitResults(rest)
		if err != nil {
			continue
		}
		for _, r := range rs {
			if r = cleanFolds(r); r != "" {
				results = append(results, r)
			}
		}
	}
	var b strings.Builder
	b.WriteString("i=" + strconv.Itoa(inst) + "; " + authServID + ";")
	if len(results) == 0 {
		b.WriteString(" none")
	}
	for i, r := range results {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString("\r\n\t" + r)
	}
	return b.String()
}

// cleanFolds keeps CRLF-WSP folds and turns any other control character
// (a lone CR or LF included) into a space, so that the value is safe to
// insert.
func cleanFolds(s string) string {
	b := []byte(s)
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c == '\r' && i+2 < len(b) && b[i+1] == '\n' && (b[i+2] == ' ' || b[i+2] == '\t') {
			i++
			continue
		}
		if (c < ' ' && c != '\t') || c == 0x7f {
			b[i] = ' '
		}
	}
	return strings.Trim(string(b), " \t\r\n")
}

// signedNames builds the h= list: every configured name once per instance
// present, plus one for oversigned names.
func signedNames(all []Header, opts SealOptions) []string {
	want := opts.Headers
	if want == nil {
		want = DefaultSignHeaders
	}
	over := opts.OversignHeaders
	if over == nil {
		over = DefaultOversignHeaders
	}
	count := map[string]int{}
	for _, h := range all {
		count[strings.ToLower(strings.TrimRight(h.Name, " \t"))]++
	}
	extra := map[string]bool{}
	for _, n := range over {
		extra[strings.ToLower(n)] = true
	}
	var names []string
	seen := map[string]bool{}
	add := func(n string) {
		n = strings.ToLower(strings.TrimSpace(n))
		if n == "" || n == "arc-seal" || seen[n] {
			return
		}
		seen[n] = true
		c := count[n]
		if extra[n] {
			c++
		}
		for range c {
			names = append(names, n)
		}
	}
	for _, n := range want {
		add(n)
	}
	for _, n := range over {
		add(n)
	}
	if len(names) == 0 {
		names = []string{"from"}
	}
	return names
}

// signTags renders the tags with an empty b=, signs signed (the
// canonical headers before this one) plus this header, and returns the
// value with b= filled in.
func signTags(name string, tags []dkimsig.Tag, signed []byte, opts SealOptions, alg string) (string, error) {
	if opts.standardize {
		for i := range tags {
			if tags[i].Name != "bh" {
				tags[i].Value = strings.ToLower(tags[i].Value)
			}
		}
		tags = append(tags, dkimsig.Tag{Name: "b"})
		sort.Slice(tags, func(i, j int) bool { return tags[i].Name < tags[j].Name })
	} else {
		tags = append(tags, dkimsig.Tag{Name: "b"})
	}
	unsigned := renderTags(name, tags, opts.standardize)
	signed = dkimsig.AppendRelaxedHeader(signed, name, " "+unsigned)
	digest := sha256.Sum256(signed)
	sig, err := opts.Key.Signer.Sign(digest[:])
	if err != nil {
		return "", fmt.Errorf("arc: signing: %w", err)
	}
	for i := range tags {
		if tags[i].Name == "b" {
			tags[i].Value = base64.StdEncoding.EncodeToString(sig)
		}
	}
	return renderTags(name, tags, opts.standardize), nil
}

// renderTags is dkimsig.Render, or with flat (the suite's standardized
// form) one line with no folds.
func renderTags(name string, tags []dkimsig.Tag, flat bool) string {
	if !flat {
		return dkimsig.Render(name, tags)
	}
	var b strings.Builder
	for i, t := range tags {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(t.Name + "=" + t.Value)
	}
	return b.String()
}
