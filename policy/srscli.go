package policy

import "github.com/tollgate/tollgate/milter"

// SRSLocalSender reports whether the daemon leaves sender alone when it
// forwards with SRS because its domain is in srs.local_domains or
// srs.exclude_domains (false without an srs: section). "tollgate srs
// forward" follows it, so that the command and the daemon agree.
func (p *Policy) SRSLocalSender(sender string) bool {
	return p.srs != nil && p.srs.local != nil && p.srs.local(milter.Domain(sender))
}
