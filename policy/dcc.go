package policy

import (
	"net/netip"
	"strings"
	"time"

	"github.com/tollgate/tollgate/dcc"
	"github.com/tollgate/tollgate/milter"
)

type dccPolicy struct {
	options   dcc.Options
	heloMap   map[string]netip.Addr
	addHeader bool
}

func compileDCC(d *decoder, in *DCCConfig) *dccPolicy {
	if in == nil {
		return nil
	}
	p := &dccPolicy{addHeader: in.DirectAddHeader}
	p.options.Address = in.Address.Value
	if p.options.Address == "" {
		p.options.Address = "/var/dcc/dccifd"
	}
	for _, o := range in.Options {
		p.options.Options = append(p.options.Options, o.Value)
	}
	if in.Timeout != nil {
		p.options.Timeout = time.Duration(*in.Timeout)
	}
	d.reportAll(p.options.Validate(), in.Pos, "")
	if in.ClientIPMap.Value != "" {
		m, err := dcc.LoadHeloMap(in.ClientIPMap.Value)
		if err != nil {
			d.errorf(in.ClientIPMap.Line, "dcc.client_ip_map: %v", err)
		}
		p.heloMap = m
	}
	return p
}

// dccCond is the seed's dcc condition: "accept" (or "*") is true when dccifd
// accepted, "fail" when it rejected or greylisted, "defer" when it could not
// answer; "!" negates; "/defer_ok" turns a defer into an accept. As in Exim,
// a check that defers without /defer_ok defers the ACL (4xx), whatever the verb.
type dccCond struct {
	want    string
	negate  bool
	deferOK bool
}

func compileDCCCond(d *decoder, s Str) condition {
	v := strings.TrimSpace(s.Value)
	c := dccCond{}
	if rest, ok := strings.CutSuffix(v, "/defer_ok"); ok {
		c.deferOK, v = true, rest
	}
	if rest, ok := strings.CutPrefix(v, "!"); ok {
		c.negate, v = true, rest
	}
	switch v {
	case "*", "accept":
		c.want = string(dcc.VerdictAccept)
	case "fail", "defer":
		c.want = v
	default:
		d.errorf(s.Line, "dcc: %q: use accept (or *), fail or defer, with ! and /defer_ok as needed", s.Value)
	}
	return c
}

func (c dccCond) match(e *evalCtx) bool {
	matched, _ := c.eval(e)
	return matched
}

func (c dccCond) eval(e *evalCtx) (matched, deferred bool) {
	result := e.t.DCC.Result
	if result == string(dcc.VerdictDefer) && c.deferOK {
		result = string(dcc.VerdictAccept)
	}
	if result == string(dcc.VerdictDefer) && c.want != string(dcc.VerdictDefer) {
		return false, true
	}
	return (result == c.want) != c.negate, false
}

// deferring is a condition that can leave the ACL undecided-but-temporary.
type deferring interface {
	eval(e *evalCtx) (matched, deferred bool)
}

func dccDefer(e *evalCtx, rule string) milter.Decision {
	return milter.Decision{Verdict: milter.TempFail, Rule: rule, Reason: "dcc: " + e.t.DCC.Reason,
		Reply: milter.Reply{Code: 451, Enhanced: "4.3.0", Text: "temporary failure of a content check, try again later"}}
}
