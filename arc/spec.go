package arc

import (
	"errors"
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
	Pos feature.Pos `yaml:"-"`
	// AuthServID, RemoveForgedAuthResults, AddAuthResults and DNS moved to
	// the top level; a configuration that still sets them gets an error
	// that says where.
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

// DNSConfig is the old arc.dns, now the top-level dns: (kept to say so).
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
	return compile(env, cfg.(*Config))
}

// section is the compiled arc: section.
type section struct {
	authServID string
	remoteIP   bool
	minRSABits int
	timeout    time.Duration
	seal       []SealOptions
	sealRule   bool // a rule sets arc_sign (the policy asks ControlError for each)
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

func (s *section) Module(env *feature.ModuleEnv) (milter.Module, error) {
	return NewModule(ModuleOptions{AuthServID: s.authServID, Resolver: env.DNS,
		MinRSABits: s.minRSABits, Timeout: s.timeout, RemoteIP: s.remoteIP, Seal: s.seal, NoSealRule: !s.sealRule,
		Metrics: env.Metrics.(*Metrics), Log: env.Log}), nil
}

var (
	atData   = milter.StageSet(milter.StageData)
	fromMail = milter.StagesFrom(milter.StageMail)
)

func (spec) Vocabulary() feature.Vocabulary {
	return feature.Vocabulary{
		// verify = arc/<list>: true when the chain's state is listed.
		Conditions: []feature.Condition{feature.StateCondition{Key: "arc", Stages: atData, Example: "[pass, none]",
			Words: []string{string(StatePass), string(StateFail), string(StateNone)}, Expected: "pass, fail or none",
			State: func(e *feature.Eval) (string, bool) { return FactsOf(e.Txn).State, true }}.Condition()},
		Variables: []feature.Variable{
			{Name: "arc_state", Stages: atData, Value: func(e *feature.Eval) string { return FactsOf(e.Txn).State }},
			{Name: "arc_state_reason", Stages: atData, Value: func(e *feature.Eval) string { return FactsOf(e.Txn).Reason }},
			{Name: "arc_domains", Stages: atData, Value: func(e *feature.Eval) string { return strings.Join(FactsOf(e.Txn).Domains, ":") }},
			{Name: "arc_oldest_pass", Stages: atData, Value: func(e *feature.Eval) string { return strconv.Itoa(FactsOf(e.Txn).OldestPass) }},
		},
		// Seal the message with ARC once accepted.
		Controls: []feature.Control{{Name: ControlSign, Stages: fromMail}},
	}
}

func compile(env *feature.CompileEnv, in *Config) *section {
	d := env.Report
	p := &section{authServID: env.AuthServID, remoteIP: in.RemoteIP, timeout: DefaultTimeout}
	// These moved to the top level when every method came to share one
	// Authentication-Results and one resolver.
	moved := func(line int, key, to string) {
		d.Errorf(line, "arc.%s moved to the top level: write %s (shared by every authentication method)", key, to)
	}
	if in.AuthServID.Value != "" {
		moved(in.AuthServID.Line, "authserv_id", "authserv_id: "+in.AuthServID.Value)
	}
	if in.RemoveForgedAuthResults != nil {
		moved(in.Pos.KeyLine("remove_forged_authresults"), "remove_forged_authresults", "remove_forged_authresults:")
	}
	if in.AddAuthResults != nil {
		moved(in.Pos.KeyLine("add_authresults"), "add_authresults", "add_authresults:")
	}
	if in.DNS.Pos.Line != 0 {
		moved(in.Pos.KeyLine("dns"), "dns", "dns: {server: ..., timeout: ..., failure_ttl: ...}")
	}
	if in.AuthServID.Value == "" { // else the moved error above says where it goes
		env.RequireAuthServID(in.Pos.Line, name)
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
				// the default now; kept so that the seed's option list still loads
			case name == "no_timestamps" && !hasVal:
				o.NoTimestamps = true
			case name == "expire":
				o.Expire = DefaultExpire
				if hasVal {
					o.Expire = val
				}
			default:
				d.Errorf(opt.Line, "arc.sign.options: %q: use no_timestamps, timestamps, expire or expire=+SECONDS / expire=UNIXTIME", opt.Value)
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
	if c.MinRSABits == nil || *c.MinRSABits <= 0 {
		bits := DefaultMinRSABits
		c.MinRSABits = &bits
	}
	c.Timeout = feature.EffectiveTimeout(c.Timeout, DefaultTimeout)
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
