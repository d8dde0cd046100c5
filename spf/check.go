package spf

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"

	blitiri "blitiri.com.ar/go/spf"
	"golang.org/x/net/idna"

	"github.com/tollgate/tollgate/internal/authres"
)

// Resolver is what SPF looks names up with: the shared resolver of the
// daemon (internal/resolver) or a *net.Resolver. Its errors must be
// *net.DNSError, IsNotFound for NXDOMAIN and no-data, Temporary otherwise.
type Resolver = blitiri.DNSResolver

// The results of RFC 7208 §2.6, as Exim's $spf_result names them.
const (
	ResultPass      = "pass"
	ResultFail      = "fail"
	ResultSoftFail  = "softfail"
	ResultNeutral   = "neutral"
	ResultNone      = "none"
	ResultTempError = "temperror"
	ResultPermError = "permerror"
)

// Results are every result, in RFC 7208's order.
var Results = []string{ResultPass, ResultFail, ResultSoftFail, ResultNeutral, ResultNone, ResultTempError, ResultPermError}

// The identities of RFC 7208 §2.3 and §2.4 (Received-SPF's identity=).
const (
	IdentityMailFrom = "mailfrom"
	IdentityHelo     = "helo"
)

// Request is one check_host() evaluation.
type Request struct {
	IP   netip.Addr
	Helo string // the HELO/EHLO name as the client gave it
	// Sender is MAIL FROM without brackets; "" is the null sender, checked
	// as postmaster@<HELO> (RFC 7208 §2.4).
	Sender string
	// Identity is IdentityMailFrom (the sender, or postmaster@HELO for the
	// null sender) or IdentityHelo (postmaster@HELO, RFC 7208 §2.3).
	Identity string
	// Receiver names this host in comments and Received-SPF (the
	// authserv-id).
	Receiver string
}

// Outcome is the result of a check with what Exim's variables show.
type Outcome struct {
	Result   string
	Identity string // IdentityMailFrom or IdentityHelo: which identity was checked
	// Address is what was checked: the sender, or postmaster@HELO.
	Address string
	// Domain is the domain whose policy was evaluated ($spf_used_domain).
	Domain string
	// Problem says why, for temperror and permerror.
	Problem string
	// Lookups is the number of DNS questions the check asked.
	Lookups int
}

// Check evaluates the SPF policy of the request's identity for its IP
// address through res, bounded by ctx. It never fails: DNS trouble is
// temperror, a bad record permerror.
func Check(ctx context.Context, res Resolver, req Request) Outcome {
	o := Outcome{Identity: req.Identity}
	if o.Identity != IdentityHelo {
		o.Identity = IdentityMailFrom
	}
	helo := strings.TrimSuffix(req.Helo, ".")
	address := req.Sender
	if o.Identity == IdentityHelo || address == "" {
		address = "postmaster@" + helo
	}
	o.Address = address
	at := strings.LastIndexByte(address, '@')
	if at < 0 {
		// RFC 7208 §4.3: a sender without a domain is checked as
		// postmaster of it; without any, nothing can be evaluated.
		o.Result, o.Problem = ResultNone, "no domain in the sender"
		return o
	}
	o.Domain = strings.TrimSuffix(address[at+1:], ".")
	if !isASCII(o.Domain) {
		// RFC 7208 §4.3: an internationalised domain is looked up as
		// A-labels (an SMTPUTF8 sender's domain arrives as U-labels).
		ascii, err := idna.Lookup.ToASCII(o.Domain)
		if err != nil {
			o.Result, o.Problem = ResultNone, "not a domain name: "+err.Error()
			return o
		}
		o.Domain = ascii
		address = address[:at+1] + ascii
	}
	if !req.IP.IsValid() {
		o.Result, o.Problem = ResultNone, "no client address"
		return o
	}
	if problem := domainProblem(o.Domain); problem != "" {
		// RFC 7208 §4.3: a malformed or single-label domain gives none
		// before any lookup.
		o.Result, o.Problem = ResultNone, problem
		return o
	}
	if address[:at] == "" {
		address = "postmaster" + address[at:]
	}
	ip := net.IP(req.IP.Unmap().AsSlice())
	strict := &strictResolver{Resolver: res}
	r, err := blitiri.CheckHostWithSender(ip, helo, address, blitiri.WithResolver(strict), blitiri.WithContext(ctx))
	o.Result, o.Lookups = string(r), strict.lookups
	switch r {
	case blitiri.TempError, blitiri.PermError:
		o.Problem = problemText(err)
	case blitiri.Pass, blitiri.Fail, blitiri.SoftFail, blitiri.Neutral, blitiri.None:
	default:
		o.Result, o.Problem = ResultPermError, "unknown result "+string(r)
	}
	return o
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// domainProblem checks RFC 7208 §4.3's syntax of the domain to evaluate:
// labels of 1 to 63 octets, at least two of them, 253 octets at most.
func domainProblem(domain string) string {
	if len(domain) > 253 {
		return "domain name too long"
	}
	labels := strings.Split(domain, ".")
	if len(labels) < 2 {
		return "not a multi-label domain"
	}
	for _, l := range labels {
		if l == "" {
			return "empty label in domain"
		}
		if len(l) > 63 {
			return "domain label longer than 63 octets"
		}
	}
	return ""
}

// problemText is a short, stable text for an error of the library; DNS
// errors name the cause without the resolver's address.
func problemText(err error) string {
	if err == nil {
		return ""
	}
	if errors.Is(err, ErrSyntax) {
		return err.Error()
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		if de.IsTimeout {
			return "DNS timeout for " + de.Name
		}
		return "DNS error for " + de.Name + ": " + de.Err
	}
	return err.Error()
}

// HeaderComment is Exim's $spf_header_comment: what the result means, in
// libspf2's words, for the Received-SPF and Authentication-Results comments.
func (o Outcome) HeaderComment(receiver string, ip netip.Addr) string {
	var s string
	who := "domain of " + o.Address
	switch o.Result {
	case ResultPass:
		s = who + " designates " + ip.String() + " as permitted sender"
	case ResultFail:
		s = who + " does not designate " + ip.String() + " as permitted sender"
	case ResultSoftFail:
		s = "transitioning " + who + " does not designate " + ip.String() + " as permitted sender"
	case ResultNeutral:
		s = ip.String() + " is neither permitted nor denied by " + who
	case ResultNone:
		s = who + " does not designate permitted sender hosts"
		if o.Problem != "" {
			s += " (" + o.Problem + ")"
		}
	case ResultTempError:
		s = "temporary error in processing during lookup of " + o.Address + ": " + o.Problem
	case ResultPermError:
		s = "permanent error in processing during lookup of " + o.Address + ": " + o.Problem
	}
	if receiver != "" {
		s = receiver + ": " + s
	}
	return s
}

// DefaultSMTPComment is Exim's spf_smtp_comment_template as of 4.94 (the
// explanation URL with the check's values is gone from open-spf.org).
const DefaultSMTPComment = "Please see http://www.open-spf.org/Why"

// SMTPComment is Exim's $spf_smtp_comment: a text for the SMTP reply when
// the result refuses the sender (fail, softfail), "" otherwise.
func (o Outcome) SMTPComment() string {
	if o.Result == ResultFail || o.Result == ResultSoftFail {
		return DefaultSMTPComment
	}
	return ""
}

// ReceivedSPF is the value of a Received-SPF header field (RFC 7208 §9.1)
// without the leading space: the result, the comment, and the key-value
// pairs a later reader needs to redo the check.
func (o Outcome) ReceivedSPF(req Request) string {
	var b strings.Builder
	b.WriteString(o.Result)
	// the sender and HELO in the comment are the client's bytes; 400, not
	// Authentication-Results' 200, leaves room for a long sender
	b.WriteString(" (" + authres.CommentSafeN(o.HeaderComment(req.Receiver, req.IP), 400) + ")")
	b.WriteString(" client-ip=" + req.IP.Unmap().String() + ";")
	b.WriteString(" envelope-from=" + authres.Quote(req.Sender) + ";")
	if req.Helo != "" {
		b.WriteString(" helo=" + dotAtomOrQuoted(req.Helo) + ";")
	}
	if o.Problem != "" && (o.Result == ResultTempError || o.Result == ResultPermError) {
		b.WriteString(" problem=" + authres.Quote(o.Problem) + ";")
	}
	if req.Receiver != "" {
		b.WriteString(" receiver=" + dotAtomOrQuoted(req.Receiver) + ";")
	}
	b.WriteString(" identity=" + o.Identity + ";")
	return b.String()
}

// dotAtomOrQuoted writes a Received-SPF key-value-pair's value (RFC 7208
// §9.1): a dot-atom as it is, anything else quoted.
func dotAtomOrQuoted(s string) string {
	if authres.IsDotAtom(s) {
		return s
	}
	return authres.Quote(s)
}
