package dmarc

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"

	msgauth "github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"

	"github.com/tollgate/tollgate/internal/authres"
)

// Status is Exim's $dmarc_status: what the policy makes of the message.
type Status string

const (
	StatusAccept     Status = "accept"     // DMARC passed (or a trusted ARC sealer vouched for it)
	StatusNone       Status = "none"       // failed, and the domain asks for nothing (p=none, or pct sampled it out)
	StatusQuarantine Status = "quarantine" // failed, the domain asks for quarantine
	StatusReject     Status = "reject"     // failed, the domain asks for rejection
	StatusNoRecord   Status = "norecord"   // no DMARC record for the From domain or its organizational domain
	StatusNoFrom     Status = "nofrom"     // no usable RFC5322.From domain
	StatusTempError  Status = "temperror"  // DNS trouble: the record could not be read now
	StatusError      Status = "error"      // an invalid record, or From fields DMARC cannot judge
)

// Statuses are the values of the dmarc condition, in Exim's order.
var Statuses = []Status{StatusAccept, StatusReject, StatusQuarantine, StatusNone, StatusNoRecord, StatusNoFrom, StatusTempError, StatusError}

// statusText is Exim's $dmarc_status_text for each status.
var statusText = map[Status]string{
	StatusAccept:     "Accept",
	StatusNone:       "None, Accept",
	StatusQuarantine: "Quarantine",
	StatusReject:     "Reject",
	StatusNoRecord:   "No DMARC record",
	StatusNoFrom:     "No From: domain found",
	StatusTempError:  "Temporary DNS error",
	StatusError:      "Permanent error",
}

// LookupTXT is the DNS the evaluation reads records with (resolver.Resolver's).
type LookupTXT func(ctx context.Context, name string) ([]string, error)

// Input is everything DMARC judges a message on.
type Input struct {
	// From holds the values of every From header field, in order.
	From []string
	// AuthResults are the results the other methods recorded (spf, dkim, arc).
	AuthResults []authres.Result
	// ARC holds the message's own ARC-Seal and ARC-Authentication-Results
	// fields, read only for the ARC override.
	ARC []ARCField
	// TrustedSealer reports whether an ARC sealer (an ARC-Seal d=) may
	// vouch for a message that fails DMARC; nil trusts none.
	TrustedSealer func(domain string) bool
	LookupTXT     LookupTXT
	// Roll returns a number in [0, 100) for pct sampling: the published
	// policy applies when Roll() < pct. Injected so that tests decide.
	Roll func() int
}

// Result is the DMARC evaluation of a message.
type Result struct {
	Status     Status
	FromDomain string // the RFC5322.From domain, lower-case
	UsedDomain string // where the record was found ($dmarc_used_domain)
	Record     *msgauth.Record
	// DomainPolicy is the published policy for the From domain: p, or sp
	// when the record came from the organizational domain and has one.
	DomainPolicy string
	// Disposition is the policy applied after pct: none, quarantine, reject.
	Disposition string
	SPFAligned  bool
	DKIMAligned bool
	// Pass is DMARC's own verdict (aligned SPF or DKIM), before any override.
	Pass bool
	// Override is "arc:<sealer>" when a trusted ARC sealer turned a fail
	// into accept; OverrideReason says what it saw.
	Override       string
	OverrideReason string
	// Reason says why for nofrom, temperror, error and some norecord.
	Reason string
}

// Text is Exim's $dmarc_status_text.
func (r *Result) Text() string {
	t := statusText[r.Status]
	if r.Override != "" {
		t += " (local policy override: " + r.Override + ")"
	}
	return t
}

// maxFromFields caps what a message with many From fields costs.
const maxFromFields = 8

// Evaluate runs DMARC (RFC 7489 §6.6) over the message's From fields, the
// SPF and DKIM results recorded before it, and the record in DNS.
func Evaluate(ctx context.Context, in Input) *Result {
	r := &Result{}
	domain, status, why := FromDomain(in.From)
	if status != "" {
		r.Status, r.Reason = status, why
		return r
	}
	r.FromDomain = domain
	rec, used, err := discover(ctx, in.LookupTXT, domain)
	switch {
	case errors.Is(err, errTemp):
		r.Status, r.Reason = StatusTempError, err.Error()
		return r
	case errors.Is(err, errNoRecord):
		r.Status, r.Reason = StatusNoRecord, noRecordReason(err)
		return r
	case err != nil:
		r.Status, r.Reason, r.UsedDomain = StatusError, err.Error(), used
		return r
	}
	r.Record, r.UsedDomain = rec, used
	r.DomainPolicy = string(rec.Policy)
	if used != domain && rec.SubdomainPolicy != "" {
		r.DomainPolicy = string(rec.SubdomainPolicy)
	}
	r.SPFAligned, r.DKIMAligned = alignment(in.AuthResults, domain, rec)
	r.Pass = r.SPFAligned || r.DKIMAligned
	if r.Pass {
		r.Status, r.Disposition = StatusAccept, "none"
		return r
	}
	r.Disposition = sample(r.DomainPolicy, rec.Percent, in.Roll)
	r.Status = Status(r.Disposition)
	if sealer, saw := arcOverride(in, domain, rec); sealer != "" {
		r.Status, r.Disposition = StatusAccept, "none"
		r.Override, r.OverrideReason = "arc:"+sealer, "trusted sealer "+sealer+" saw "+saw
	}
	return r
}

// sample applies pct (RFC 7489 §6.6.4): a message not selected gets the
// next policy down (reject to quarantine, quarantine to none).
func sample(policy string, pct *int, roll func() int) string {
	if pct == nil || *pct >= 100 || policy == "none" {
		return policy
	}
	if roll == nil {
		roll = func() int { return rand.IntN(100) }
	}
	if roll() < *pct {
		return policy
	}
	if policy == "reject" {
		return "quarantine"
	}
	return "none"
}

var (
	errNoRecord = errors.New("dmarc: no record")
	errTemp     = errors.New("dmarc: temporary DNS failure")
)

func noRecordReason(err error) string {
	if s := strings.TrimPrefix(err.Error(), errNoRecord.Error()); s != "" {
		return strings.TrimPrefix(s, ": ")
	}
	return ""
}

// discover finds the record at the From domain, else at its organizational
// domain (RFC 7489 §6.6.3), and returns it with the domain it was found at.
func discover(ctx context.Context, lookup LookupTXT, domain string) (*msgauth.Record, string, error) {
	rec, err := lookupRecord(ctx, lookup, domain)
	if !errors.Is(err, errNoRecord) {
		return rec, domain, err
	}
	org := OrganizationalDomain(domain)
	if org == domain {
		return nil, "", err
	}
	rec, err = lookupRecord(ctx, lookup, org)
	return rec, org, err
}

// lookupRecord reads the DMARC record of one name with go-msgauth. It
// wraps the DNS so that more than one DMARC record at a name is seen (RFC
// 7489 §6.6.3: then DMARC does not apply), which go-msgauth does not check.
func lookupRecord(ctx context.Context, lookup LookupTXT, domain string) (*msgauth.Record, error) {
	if lookup == nil {
		return nil, fmt.Errorf("%w: no resolver", errTemp)
	}
	records := 0
	var lookupErr error
	rec, err := msgauth.LookupWithOptions(domain, &msgauth.LookupOptions{LookupTXT: func(name string) ([]string, error) {
		txts, err := lookup(ctx, name)
		lookupErr = err
		for _, t := range txts {
			if IsDMARCRecord(t) {
				records++
			}
		}
		return txts, err
	}})
	var dnsErr *net.DNSError
	switch {
	case lookupErr != nil && errors.As(lookupErr, &dnsErr) && dnsErr.IsNotFound:
		return nil, errNoRecord
	case lookupErr != nil:
		return nil, fmt.Errorf("%w: _dmarc.%s: %v", errTemp, domain, lookupErr)
	case records > 1:
		return nil, fmt.Errorf("%w: %d DMARC records at _dmarc.%s", errNoRecord, records, domain)
	case errors.Is(err, msgauth.ErrNoPolicy):
		return nil, errNoRecord
	case err != nil:
		return nil, fmt.Errorf("dmarc: invalid record at _dmarc.%s: %s", domain, strings.TrimPrefix(err.Error(), "dmarc: "))
	}
	return rec, nil
}

// IsDMARCRecord reports whether a TXT string is a DMARC record: v=DMARC1
// as its first tag (RFC 7489 §6.6.3 discards every other).
func IsDMARCRecord(txt string) bool {
	v, ok := strings.CutPrefix(txt, "v=")
	if !ok {
		return false
	}
	v, _, _ = strings.Cut(v, ";")
	return strings.TrimSpace(v) == "DMARC1"
}

// OrganizationalDomain is the domain's registered domain under the public
// suffix list (RFC 7489 §3.2), or the domain itself when it has none (it is
// a public suffix, or not a valid name).
func OrganizationalDomain(domain string) string {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	org, err := publicsuffix.EffectiveTLDPlusOne(domain)
	if err != nil {
		return domain
	}
	return org
}

// Aligned reports whether an authenticated domain is aligned with the From
// domain: the same name (strict), or the same organizational domain
// (relaxed) (RFC 7489 §3.1).
func Aligned(fromDomain, authDomain string, mode msgauth.AlignmentMode) bool {
	a := strings.ToLower(strings.TrimSuffix(fromDomain, "."))
	b := strings.ToLower(strings.TrimSuffix(authDomain, "."))
	if a == "" || b == "" {
		return false
	}
	if a == b {
		return true
	}
	return mode != msgauth.AlignmentStrict && OrganizationalDomain(a) == OrganizationalDomain(b)
}

// alignment reads the SPF and DKIM results the other methods recorded: SPF
// counts when it passed for the MAIL FROM domain (or, for the null sender,
// the HELO name); DKIM when any signature passed with an aligned d=.
func alignment(rs []authres.Result, domain string, rec *msgauth.Record) (spf, dkim bool) {
	for _, r := range rs {
		if !strings.EqualFold(r.Result, "pass") {
			continue
		}
		switch strings.ToLower(r.Method) {
		case "spf":
			id := prop(r, "smtp", "mailfrom")
			if id == "" {
				id = prop(r, "smtp", "helo")
			}
			if Aligned(domain, addrDomain(id), rec.SPFAlignment) {
				spf = true
			}
		case "dkim":
			if Aligned(domain, prop(r, "header", "d"), rec.DKIMAlignment) {
				dkim = true
			}
		}
	}
	return spf, dkim
}

func prop(r authres.Result, typ, property string) string {
	for _, p := range r.Props {
		if strings.EqualFold(p.Type, typ) && strings.EqualFold(p.Property, property) {
			return p.Value
		}
	}
	return ""
}

// addrDomain is the domain of an address, or the value itself when it has
// no "@" (a HELO name, or smtp.mailfrom written as a bare domain).
func addrDomain(v string) string {
	if i := strings.LastIndexByte(v, '@'); i >= 0 {
		v = v[i+1:]
	}
	return strings.ToLower(strings.TrimSuffix(strings.Trim(v, "<> "), "."))
}

// AuthResult is the dmarc= result for Authentication-Results (RFC 7489
// §11.2; policy.dmarc is the policy applied after sp and pct).
func (r *Result) AuthResult() authres.Result {
	ar := authres.Result{Method: "dmarc"}
	if r.FromDomain != "" {
		ar.Props = append(ar.Props, authres.Prop{Type: "header", Property: "from", Value: r.FromDomain})
	}
	switch r.Status {
	case StatusNoRecord:
		ar.Result, ar.Reason = "none", r.Reason
	case StatusTempError:
		ar.Result, ar.Reason = "temperror", r.Reason
	case StatusNoFrom, StatusError:
		ar.Result, ar.Reason = "permerror", r.Reason
	default:
		ar.Result = "fail"
		if r.Pass {
			ar.Result = "pass"
		}
		ar.Comment = r.policyComment()
		if !r.Pass {
			ar.Props = append(ar.Props, authres.Prop{Type: "policy", Property: "dmarc", Value: r.Disposition})
		}
	}
	return ar
}

// policyComment is "p=reject sp=none dis=none", the form receivers
// (OpenDMARC, Gmail) write, with the override when there is one.
func (r *Result) policyComment() string {
	if r.Record == nil {
		return ""
	}
	c := "p=" + string(r.Record.Policy)
	if r.Record.SubdomainPolicy != "" {
		c += " sp=" + string(r.Record.SubdomainPolicy)
	}
	if r.Record.Percent != nil && *r.Record.Percent < 100 {
		c += fmt.Sprintf(" pct=%d", *r.Record.Percent)
	}
	c += " dis=" + r.Disposition
	if r.Override != "" {
		c += "; arc override: " + r.OverrideReason
	}
	return c
}
