package policy

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tollgate/tollgate/internal/resolver"
	"github.com/tollgate/tollgate/milter"
)

// DNSConfig is the top-level dns: section: the one resolver every method
// (SPF, DKIM, DMARC, iprev, ARC, DNS lists) asks through.
type DNSConfig struct {
	Pos        Pos       `yaml:"-"`
	Server     Str       `yaml:"server"`
	ResolvConf Str       `yaml:"resolv_conf"`
	Timeout    *Duration `yaml:"timeout"`
	FailureTTL *Duration `yaml:"failure_ttl"`
	CacheSize  *int      `yaml:"cache_size"`
}

// compileAuthResults reads authserv_id, add_authresults,
// remove_forged_authresults and dns:.
func compileAuthResults(d *decoder, cfg *Config, p *Policy) {
	p.authRes = milter.AuthResultsConfig{AuthServID: cfg.AuthServID.Value, Add: true, RemoveForged: true}
	if id := cfg.AuthServID.Value; id != "" && !validAuthServID(id) {
		d.errorf(cfg.AuthServID.Line, "authserv_id: %q is not a host name such as mx.example.org (letters, digits, '.', '-', '_')", id)
	}
	if cfg.AddAuthResults != nil {
		p.authRes.Add = *cfg.AddAuthResults
	}
	if cfg.RemoveForgedAuthResults != nil {
		p.authRes.RemoveForged = *cfg.RemoveForgedAuthResults
	}
	if p.authRes.AuthServID != "" && (p.authRes.Add || p.authRes.RemoveForged) {
		// forged copies are found in the header stream; ours is added
		p.needs.Headers = true
		p.needs.Actions |= milter.ActAddHeader | milter.ActChangeHeader
	}
	in := &cfg.DNS
	p.dns = resolver.Options{Server: in.Server.Value, ResolvConf: in.ResolvConf.Value}
	if in.Server.Value != "" {
		if _, _, err := splitHostPort(in.Server.Value); err != nil {
			d.errorf(in.Server.Line, "dns.server: %v (use host:port, e.g. 127.0.0.1:53)", err)
		}
		if in.ResolvConf.Value != "" {
			d.errorf(in.ResolvConf.Line, "dns.resolv_conf: set server or resolv_conf, not both")
		}
	}
	if in.Timeout != nil {
		p.dns.Timeout = time.Duration(*in.Timeout)
		if p.dns.Timeout <= 0 {
			d.errorf(in.Pos.KeyLine("timeout"), "dns.timeout: must be more than 0")
		}
	}
	if in.FailureTTL != nil {
		p.dns.FailureTTL = time.Duration(*in.FailureTTL)
		switch {
		case p.dns.FailureTTL == 0:
			p.dns.FailureTTL = -1 // 0s: remember no failure
		case p.dns.FailureTTL > resolver.MaxFailureTTL:
			d.errorf(in.Pos.KeyLine("failure_ttl"), "dns.failure_ttl: %v is more than 5m (RFC 2308 §7)", p.dns.FailureTTL)
		}
	}
	if in.CacheSize != nil {
		p.dns.CacheSize = *in.CacheSize
		if p.dns.CacheSize == 0 {
			p.dns.CacheSize = -1 // 0: no cache
		}
	}
}

// validAuthServID accepts what RFC 8601 allows as an unquoted authserv-id
// and a host name needs.
func validAuthServID(id string) bool {
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-_", c) >= 0) {
			return false
		}
	}
	return id != ""
}

// AuthResults implements milter.AuthResultsRuntime.
func (rt *Runtime) AuthResults() milter.AuthResultsConfig { return rt.Policy.authRes }

// sharedResolver returns the resolver of the dns: section, shared by every
// runtime with the same options so that its cache outlives reloads.
func (e *Env) sharedResolver(p *Policy, rt *Runtime) (resolver.Resolver, error) {
	opts := p.dns
	opts.Metrics = e.dnsMetrics
	key := "core:" + opts.Key()
	c, err := e.shared(key, func() (io.Closer, error) { return resolver.New(opts), nil })
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	rt.stores = append(rt.stores, key)
	return c.(*resolver.Cached), nil
}

// AuthResultsConfig is the authserv_id, add_authresults and
// remove_forged_authresults in use.
func (p *Policy) AuthResultsConfig() milter.AuthResultsConfig { return p.authRes }

// DNSOptions is the dns: section in use, defaults filled in.
func (p *Policy) DNSOptions() resolver.Options {
	o := p.dns
	if o.Server == "" && o.ResolvConf == "" {
		o.ResolvConf = "/etc/resolv.conf"
	}
	if o.Timeout <= 0 {
		o.Timeout = resolver.DefaultTimeout
	}
	if o.FailureTTL == 0 {
		o.FailureTTL = resolver.DefaultFailureTTL
	}
	if o.CacheSize == 0 {
		o.CacheSize = resolver.DefaultCacheSize
	}
	return o
}
