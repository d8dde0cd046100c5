package arc

import (
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/feature"
	"github.com/tollgate/tollgate/milter"
)

// Config is the arc: section (the seed's verify = arc and arc_sign).
type Config struct {
	Pos                     feature.Pos       `yaml:"-"`
	AuthServID              feature.Str       `yaml:"authserv_id"`
	RemoveForgedAuthResults *bool             `yaml:"remove_forged_authresults"`
	AddAuthResults          *bool             `yaml:"add_authresults"`
	RemoteIP                bool              `yaml:"remote_ip"`
	MinRSABits              *int              `yaml:"min_rsa_bits"`
	Timeout                 *feature.Duration `yaml:"timeout"`
	DNS                     DNSConfig         `yaml:"dns"`
	Sign                    []SignConfig      `yaml:"sign"`
	Headers                 feature.StrList   `yaml:"headers"`
	Oversign                *feature.StrList  `yaml:"oversign"`
}

// DNSConfig points key lookups at a resolver.
type DNSConfig struct {
	Pos        feature.Pos       `yaml:"-"`
	Server     feature.Str       `yaml:"server"`
	Timeout    *feature.Duration `yaml:"timeout"`
	FailureTTL *feature.Duration `yaml:"failure_ttl"`
}

// SignConfig is one signing key (the seed's arc_sign = domain : selector : key : options).
type SignConfig struct {
	Pos      feature.Pos     `yaml:"-"`
	Domain   feature.Str     `yaml:"domain"`
	Selector feature.Str     `yaml:"selector"`
	Key      feature.Str     `yaml:"key"`
	Options  feature.StrList `yaml:"options"`
}

// Spec is ARC as the configuration and the policy see it.
var Spec feature.Spec = spec{}

type spec struct{}

func (spec) Name() string   { return name }
func (spec) NewConfig() any { return &Config{} }

// Order: last, so that the seal signs the headers as every other module
// left them (and after any DKIM signature).
func (spec) Order() feature.Order { return feature.Order{Last: true} }

func (spec) NewMetrics(reg prometheus.Registerer) any { return NewMetrics(reg) }

func (spec) Compile(cfg any, env *feature.CompileEnv) feature.Section {
	return compile(env.Report, cfg.(*Config))
}

// section is the compiled arc: section.
type section struct {
	authServID   string
	removeForged bool
	addAR        bool
	remoteIP     bool
	minRSABits   int
	timeout      time.Duration
	dns          DNSOptions
	seal         []SealOptions
	sealRule     bool // a rule sets arc_sign (the policy asks ControlError for each)
}

var errNoKey = errors.New("needs a signing key (arc.sign)")

func (s *section) ControlError(name string) error {
	if name == ControlSign {
		if len(s.seal) == 0 {
			return errNoKey
		}
		s.sealRule = true
	}
	return nil
}

// sharedResolver lets the key cache of a resolver outlive a reload: it is
// shared by every configuration with the same DNS options.
type sharedResolver struct{ *DNSResolver }

func (sharedResolver) Close() error { return nil }

func (s *section) Module(env *feature.ModuleEnv) (milter.Module, error) {
	metrics := env.Metrics.(*Metrics)
	c, err := env.Shared("dns:"+s.dns.Server+"|"+s.dns.Timeout.String()+"|"+s.dns.FailureTTL.String(), func() (io.Closer, error) {
		opts := s.dns
		opts.Lookups = metrics.DNS
		return sharedResolver{NewDNSResolver(opts)}, nil
	})
	if err != nil {
		return nil, err
	}
	return NewModule(ModuleOptions{AuthServID: s.authServID, Resolver: c.(sharedResolver).DNSResolver,
		MinRSABits: s.minRSABits, Timeout: s.timeout, RemoveForged: s.removeForged, AddAuthResults: s.addAR,
		RemoteIP: s.remoteIP, Seal: s.seal, NoSealRule: !s.sealRule, Metrics: metrics, Log: env.Log}), nil
}

var (
	atData   = milter.StageSet(milter.StageData)
	fromMail = milter.StagesFrom(milter.StageMail)
)

func (spec) Vocabulary() feature.Vocabulary {
	return feature.Vocabulary{
		Conditions: []feature.Condition{{Key: "arc", Stages: atData, Example: "[pass, none]",
			NewValue: func() any { return new(feature.StrList) }, Compile: compileCond}},
		Variables: []feature.Variable{
			{Name: "arc_state", Stages: atData, Value: func(e *feature.Eval) string { return FactsOf(e.Txn).State }},
			{Name: "arc_state_reason", Stages: atData, Value: func(e *feature.Eval) string { return FactsOf(e.Txn).Reason }},
			{Name: "arc_domains", Stages: atData, Value: func(e *feature.Eval) string { return strings.Join(FactsOf(e.Txn).Domains, ":") }},
			{Name: "arc_oldest_pass", Stages: atData, Value: func(e *feature.Eval) string { return strconv.Itoa(FactsOf(e.Txn).OldestPass) }},
			{Name: "authresults", Stages: atData, Value: func(e *feature.Eval) string { return FactsOf(e.Txn).AuthResult }},
		},
		// Seal the message with ARC once accepted.
		Controls: []feature.Control{{Name: ControlSign, Stages: fromMail}},
	}
}

// cond is verify = arc/<list>: true when the chain's state is listed; items
// take "!" as in Exim lists.
type cond struct {
	items  []string
	negate []bool
}

func compileCond(value any, _ int, _ feature.Section, r feature.Reporter) feature.Test {
	var c cond
	for _, it := range *value.(*feature.StrList) {
		v, neg := strings.CutPrefix(it.Value, "!")
		switch State(v) {
		case StatePass, StateFail, StateNone:
		default:
			r.Errorf(it.Line, "arc: %q is not pass, fail or none (with ! to negate)", it.Value)
		}
		c.items, c.negate = append(c.items, v), append(c.negate, neg)
	}
	return c
}

func (c cond) Match(e *feature.Eval) (bool, *milter.Decision) {
	state := FactsOf(e.Txn).State
	for i, it := range c.items {
		if it == state {
			return !c.negate[i], nil
		}
	}
	return len(c.negate) > 0 && c.negate[len(c.negate)-1], nil
}

func compile(d feature.Reporter, in *Config) *section {
	p := &section{authServID: in.AuthServID.Value, removeForged: true, addAR: true, remoteIP: in.RemoteIP, timeout: DefaultTimeout}
	if p.authServID == "" {
		d.Errorf(in.Pos.Line, "arc.authserv_id is required: the name of this ADMD in Authentication-Results (e.g. mx.example.org)")
	}
	if in.RemoveForgedAuthResults != nil {
		p.removeForged = *in.RemoveForgedAuthResults
	}
	if in.AddAuthResults != nil {
		p.addAR = *in.AddAuthResults
	}
	if in.MinRSABits != nil {
		if *in.MinRSABits < 512 {
			d.Errorf(in.Pos.KeyLine("min_rsa_bits"), "arc.min_rsa_bits: %d is too small", *in.MinRSABits)
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
	if in.DNS.FailureTTL != nil {
		p.dns.FailureTTL = time.Duration(*in.DNS.FailureTTL)
		switch {
		case p.dns.FailureTTL == 0:
			p.dns.FailureTTL = -1 // 0s: remember no failure
		case p.dns.FailureTTL > 5*time.Minute:
			d.Errorf(in.DNS.Pos.KeyLine("failure_ttl"), "arc.dns.failure_ttl: %v is more than 5m (RFC 2308 §7)", time.Duration(*in.DNS.FailureTTL))
		}
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
		o := SealOptions{Key: Key{Domain: s.Domain.Value, Selector: s.Selector.Value}, AuthServID: p.authServID,
			Headers: headers, OversignHeaders: oversign}
		if first, dup := seen[strings.ToLower(s.Domain.Value)]; dup {
			d.Errorf(s.Domain.Line, "arc.sign: domain %q has a key already (line %d)", s.Domain.Value, first)
		}
		seen[strings.ToLower(s.Domain.Value)] = s.Domain.Line
		for _, opt := range s.Options {
			switch name, val, hasVal := strings.Cut(opt.Value, "="); {
			case name == "timestamps" && !hasVal:
				o.Timestamps = true
			case name == "expire":
				o.Expire = DefaultExpire
				if hasVal {
					o.Expire = val
				}
			default:
				d.Errorf(opt.Line, "arc.sign.options: %q: use timestamps, expire or expire=+SECONDS / expire=UNIXTIME", opt.Value)
			}
		}
		if s.Key.Value == "" {
			d.Errorf(s.Pos.Line, "arc.sign: key: is required (a PEM private key file, mode 0600)")
			continue
		}
		signer, err := LoadKeyFile(s.Key.Value)
		if err != nil {
			d.Errorf(s.Key.Line, "arc.sign.key: %v", err)
			continue
		}
		o.Key.Signer = signer
		if err := o.Validate(); err != nil {
			d.Errorf(s.Pos.Line, "arc.sign: %v", err)
			continue
		}
		p.seal = append(p.seal, o)
	}
	return p
}

// Effective fills in what compile, the verifier, the resolver and the sealer
// default; a signing key prints as its file.
func (spec) Effective(cfg any) any {
	c := *cfg.(*Config)
	yes := true
	if c.RemoveForgedAuthResults == nil {
		c.RemoveForgedAuthResults = &yes
	}
	if c.AddAuthResults == nil {
		c.AddAuthResults = &yes
	}
	if c.MinRSABits == nil || *c.MinRSABits <= 0 {
		bits := DefaultMinRSABits
		c.MinRSABits = &bits
	}
	if c.Timeout == nil || *c.Timeout == 0 {
		t := feature.Duration(DefaultTimeout)
		c.Timeout = &t
	}
	if c.DNS.Timeout == nil || *c.DNS.Timeout == 0 {
		t := feature.Duration(DefaultDNSTimeout)
		c.DNS.Timeout = &t
	}
	if c.DNS.FailureTTL == nil {
		t := feature.Duration(DefaultFailureTTL)
		c.DNS.FailureTTL = &t
	}
	if len(c.Headers) == 0 {
		c.Headers = feature.Strs(DefaultSignHeaders...)
	}
	if c.Sign != nil {
		sign := make([]SignConfig, len(c.Sign))
		for i, s := range c.Sign {
			opts := slices.Clone(s.Options)
			for j, o := range opts {
				if o.Value == "expire" {
					opts[j].Value = "expire=" + DefaultExpire
				}
			}
			s.Options = opts
			sign[i] = s
		}
		c.Sign = sign
	}
	switch {
	case c.Oversign == nil:
		over := feature.Strs(DefaultOversignHeaders...)
		c.Oversign = &over
	case len(*c.Oversign) == 0:
		// Given empty (oversign nothing), which differs from left out.
		c.Oversign = &feature.StrList{}
	}
	return &c
}
