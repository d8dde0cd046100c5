package policy

import (
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/arc"
)

type arcPolicy struct {
	authServID   string
	removeForged bool
	addAR        bool
	remoteIP     bool
	minRSABits   int
	timeout      time.Duration
	dns          arc.DNSOptions
	seal         []arc.SealOptions
}

func compileARC(d *decoder, in *ARCConfig) *arcPolicy {
	if in == nil {
		return nil
	}
	p := &arcPolicy{authServID: in.AuthServID.Value, removeForged: true, addAR: true, remoteIP: in.RemoteIP, timeout: 10 * time.Second}
	if p.authServID == "" {
		d.errorf(in.Pos.Line, "arc.authserv_id is required: the name of this ADMD in Authentication-Results (e.g. mx.example.org)")
	}
	if in.RemoveForgedAuthResults != nil {
		p.removeForged = *in.RemoveForgedAuthResults
	}
	if in.AddAuthResults != nil {
		p.addAR = *in.AddAuthResults
	}
	if in.MinRSABits != nil {
		if *in.MinRSABits < 512 {
			d.errorf(in.Pos.Line, "arc.min_rsa_bits: %d is too small", *in.MinRSABits)
		}
		p.minRSABits = *in.MinRSABits
	}
	if in.Timeout != nil {
		p.timeout = time.Duration(*in.Timeout)
	}
	p.dns.Server = in.DNS.Server.Value
	if in.DNS.Timeout != nil {
		p.dns.Timeout = time.Duration(*in.DNS.Timeout)
	}
	var headers, oversign []string
	for _, h := range in.Headers {
		headers = append(headers, h.Value)
	}
	if in.Oversign != nil {
		oversign = []string{}
		for _, h := range *in.Oversign {
			oversign = append(oversign, h.Value)
		}
	}
	seen := map[string]int{}
	for _, s := range in.Sign {
		o := arc.SealOptions{Key: arc.Key{Domain: s.Domain.Value, Selector: s.Selector.Value}, AuthServID: p.authServID,
			Headers: headers, OversignHeaders: oversign}
		if first, dup := seen[strings.ToLower(s.Domain.Value)]; dup {
			d.errorf(s.Domain.Line, "arc.sign: domain %q has a key already (line %d)", s.Domain.Value, first)
		}
		seen[strings.ToLower(s.Domain.Value)] = s.Domain.Line
		for _, opt := range s.Options {
			switch name, val, hasVal := strings.Cut(opt.Value, "="); {
			case name == "timestamps" && !hasVal:
				o.Timestamps = true
			case name == "expire":
				o.Expire = arc.DefaultExpire
				if hasVal {
					o.Expire = val
				}
			default:
				d.errorf(opt.Line, "arc.sign.options: %q: use timestamps, expire or expire=+SECONDS / expire=UNIXTIME", opt.Value)
			}
		}
		if s.Key.Value == "" {
			d.errorf(s.Pos.Line, "arc.sign: key: is required (a PEM private key file, mode 0600)")
			continue
		}
		signer, err := arc.LoadKeyFile(s.Key.Value)
		if err != nil {
			d.errorf(s.Key.Line, "arc.sign.key: %v", err)
			continue
		}
		o.Key.Signer = signer
		if err := o.Validate(); err != nil {
			d.errorf(s.Pos.Line, "arc.sign: %v", err)
			continue
		}
		p.seal = append(p.seal, o)
	}
	return p
}

// arcCond is verify = arc/<list>: true when the chain's state is listed;
// items take "!" as in Exim lists.
type arcCond struct {
	items  []string
	negate []bool
}

func compileARCCond(d *decoder, items StrList) condition {
	var c arcCond
	for _, it := range items {
		v, neg := strings.CutPrefix(it.Value, "!")
		switch arc.State(v) {
		case arc.StatePass, arc.StateFail, arc.StateNone:
		default:
			d.errorf(it.Line, "arc: %q is not pass, fail or none (with ! to negate)", it.Value)
		}
		c.items, c.negate = append(c.items, v), append(c.negate, neg)
	}
	return c
}

func (c arcCond) match(e *evalCtx) bool {
	state := e.t.ARC.State
	for i, it := range c.items {
		if it == state {
			return !c.negate[i]
		}
	}
	return len(c.negate) > 0 && c.negate[len(c.negate)-1]
}

func arcVars() map[string]variable {
	return map[string]variable{
		"arc_state":        {atData, func(e *evalCtx) string { return e.t.ARC.State }},
		"arc_state_reason": {atData, func(e *evalCtx) string { return e.t.ARC.Reason }},
		"arc_domains":      {atData, func(e *evalCtx) string { return strings.Join(e.t.ARC.Domains, ":") }},
		"arc_oldest_pass":  {atData, func(e *evalCtx) string { return strconv.Itoa(e.t.ARC.OldestPass) }},
		"authresults":      {atData, func(e *evalCtx) string { return e.t.ARC.AuthResult }},
	}
}

func init() {
	for k, v := range arcVars() {
		variables[k] = v
	}
}
