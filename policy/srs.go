package policy

import (
	"errors"
	"strings"
	"time"

	"github.com/tollgate/tollgate/milter"
	"github.com/tollgate/tollgate/srs"
)

// srsPolicy is the compiled srs: section.
type srsPolicy struct {
	srs   *srs.SRS
	local func(domain string) bool
}

func compileSRS(d *decoder, lc *listCompiler, in *SRSConfig) *srsPolicy {
	if in == nil {
		return nil
	}
	line := in.Pos.Line
	o := srs.Options{Domain: in.Domain.Value, UseHash: in.UseHash, UseTimestamp: in.UseTimestamp}
	if in.Domain.Value == "" {
		d.errorf(line, "srs.domain is required: the domain SRS addresses are written at")
	}
	for _, s := range in.Secrets {
		o.Secrets = append(o.Secrets, s.Value)
	}
	if in.SecretsFile.Value != "" {
		secrets, err := srs.ReadSecretsFile(in.SecretsFile.Value)
		if err != nil {
			d.errorf(in.SecretsFile.Line, "srs.secrets_file: %v", err)
			return nil
		}
		o.Secrets = append(secrets, o.Secrets...)
	}
	if len(o.Secrets) == 0 {
		d.errorf(line, "srs needs secrets_file (or secrets): the first secret signs, all verify")
		return nil
	}
	if in.HashLength != nil {
		o.HashLength = *in.HashLength
	}
	if in.HashMin != nil {
		o.HashMin = *in.HashMin
	}
	if in.MaxAge != nil {
		o.MaxAge = time.Duration(*in.MaxAge)
	}
	switch in.Separator.Value {
	case "":
	case "=", "+", "-":
		o.Separator = in.Separator.Value[0]
	default:
		d.errorf(in.Separator.Line, "srs.separator: %q is not one of = + -", in.Separator.Value)
	}
	s, err := srs.New(o)
	if err != nil {
		for _, e := range strings.Split(err.Error(), "\n") {
			d.errorf(line, "%s", strings.TrimPrefix(e, "srs: "))
		}
		return nil
	}
	local := lc.domains(in.LocalDomains)
	exclude := lc.domains(in.ExcludeDomains)
	return &srsPolicy{srs: s, local: func(dom string) bool { return local.Match(dom) || exclude.Match(dom) }}
}

// srsCond is true when the current recipient's SRS status is one listed. A
// recipient that is no SRS address of ours has status none.
type srsCond struct{ statuses map[string]bool }

func (c srsCond) match(e *evalCtx) bool {
	status := string(srs.StatusNone)
	if e.r.SRS != nil {
		status = e.r.SRS.Status
	}
	return c.statuses[status]
}

func compileSRSCond(d *decoder, items StrList) condition {
	c := srsCond{statuses: map[string]bool{}}
	for _, it := range items {
		switch srs.Status(it.Value) {
		case srs.StatusValid, srs.StatusInvalid, srs.StatusExpired, srs.StatusNone:
			c.statuses[it.Value] = true
		default:
			d.errorf(it.Line, "srs: %q is not valid, invalid, expired or none", it.Value)
		}
	}
	return c
}

func srsRcpt(e *evalCtx) *milter.SRSRcpt {
	if e.r.SRS == nil {
		return &milter.SRSRcpt{Status: string(srs.StatusNone)}
	}
	return e.r.SRS
}

// SRS returns the configured SRS rewriter, nil when there is no srs: section
// (for tollgate srs forward|reverse).
func (p *Policy) SRS() (*srs.SRS, error) {
	if p.srs == nil {
		return nil, errors.New("the configuration has no srs: section")
	}
	return p.srs.srs, nil
}
