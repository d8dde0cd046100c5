package dkimsign

import (
	"errors"
	"strings"
	"time"

	"github.com/tollgate/tollgate/internal/sigcrypto"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/feature"
	"github.com/tollgate/tollgate/internal/keyfile"
	"github.com/tollgate/tollgate/milter"
)

// Config is the dkim_sign: section.
type Config struct {
	Pos  feature.Pos `yaml:"-"`
	Keys []KeyConfig `yaml:"keys"`
	// Headers is Exim's dkim_sign_headers: names, "=Name", "+Name".
	Headers feature.StrList `yaml:"headers"`
	// Canonicalization is c=: "relaxed/relaxed" (default), "simple/simple",
	// "relaxed/simple", "simple/relaxed"; one word sets both.
	Canonicalization feature.Str       `yaml:"canonicalization"`
	Timestamps       *bool             `yaml:"timestamps"`
	Expire           *feature.Duration `yaml:"expire"`
}

// KeyConfig is one signing key; two keys for one domain (RSA and Ed25519)
// make two signatures.
type KeyConfig struct {
	Pos      feature.Pos `yaml:"-"`
	Domain   feature.Str `yaml:"domain"`
	Selector feature.Str `yaml:"selector"`
	Key      feature.Str `yaml:"key"`
	// Algorithm, when given, must be the key's: rsa-sha256 or ed25519-sha256.
	Algorithm feature.Str `yaml:"algorithm"`
}

// Spec is DKIM signing as the configuration and the policy see it.
var Spec feature.Spec = spec{}

type spec struct{}

func (spec) Name() string   { return name }
func (spec) NewConfig() any { return &Config{} }

// Order: ARC is Last, so its seal comes after this signature and covers it.
func (spec) Order() feature.Order { return feature.Order{} }

func (spec) NewMetrics(reg prometheus.Registerer) any { return NewMetrics(reg) }

func (spec) Compile(cfg any, env *feature.CompileEnv) feature.Section {
	return compile(env.Report, cfg.(*Config))
}

// ControlSign asks for the message to be DKIM-signed once accepted.
const ControlSign = "dkim_sign"

// VarSignDomain picks the signing domain (default: the From domain's keys,
// else the first key's domain).
const VarSignDomain = "acl_m_dkim_sign_domain"

var fromMail = milter.StagesFrom(milter.StageMail)

func (spec) Vocabulary() feature.Vocabulary {
	return feature.Vocabulary{Controls: []feature.Control{{Name: ControlSign, Stages: fromMail}}}
}

type section struct {
	keys     []Key
	opts     Options
	signRule bool
}

var errNoKey = errors.New("needs a signing key (dkim_sign.keys)")

func (s *section) ControlError(n string) error {
	if n == ControlSign {
		if len(s.keys) == 0 {
			return errNoKey
		}
		s.signRule = true
	}
	return nil
}

func (s *section) Module(env *feature.ModuleEnv) (milter.Module, error) {
	return NewModule(ModuleOptions{Keys: s.keys, Sign: s.opts, NoSignRule: !s.signRule,
		Metrics: env.Metrics.(*Metrics), Log: env.Log}), nil
}

func compile(d feature.Reporter, in *Config) *section {
	p := &section{}
	if in.Headers != nil {
		p.opts.Headers = []string{}
		for _, h := range in.Headers {
			if _, _, err := ParseHeaderSpec(h.Value); err != nil {
				d.Errorf(h.Line, "dkim_sign.headers: %v", err)
			}
			p.opts.Headers = append(p.opts.Headers, h.Value)
		}
	}
	if c := in.Canonicalization; c.Value != "" {
		hc, bc, two := strings.Cut(strings.ToLower(c.Value), "/")
		if !two {
			bc = hc
		}
		p.opts.HeaderCanon, p.opts.BodyCanon = hc, bc
	}
	if in.Timestamps != nil && !*in.Timestamps {
		p.opts.NoTimestamp = true
	}
	if in.Expire != nil {
		p.opts.Expire = time.Duration(*in.Expire)
		if p.opts.Expire != 0 && p.opts.Expire < time.Second {
			d.Errorf(in.Pos.KeyLine("expire"), "dkim_sign.expire: %s is less than a second", p.opts.Expire)
		}
	}
	if err := p.opts.Validate(); err != nil {
		line := in.Pos.KeyLine("headers")
		if strings.Contains(err.Error(), "canonicalization") {
			line = in.Canonicalization.Line
		} else if strings.Contains(err.Error(), "expire") {
			line = in.Pos.KeyLine("expire")
		}
		if line == 0 {
			line = in.Pos.Line
		}
		d.Errorf(line, "dkim_sign: %s", strings.TrimPrefix(err.Error(), "dkimsign: "))
	}
	seen := map[string]int{}
	for _, k := range in.Keys {
		if k.Domain.Value == "" || k.Selector.Value == "" {
			d.Errorf(k.Pos.Line, "dkim_sign.keys: domain: and selector: are required")
			continue
		}
		if !validName(k.Domain.Value) {
			d.Errorf(k.Domain.Line, "dkim_sign.keys: bad signing domain %q", k.Domain.Value)
			continue
		}
		if !validName(k.Selector.Value) {
			d.Errorf(k.Selector.Line, "dkim_sign.keys: bad selector %q", k.Selector.Value)
			continue
		}
		id := strings.ToLower(k.Domain.Value + "/" + k.Selector.Value)
		if first, dup := seen[id]; dup {
			d.Errorf(k.Selector.Line, "dkim_sign.keys: %s selector %s is listed already (line %d)", k.Domain.Value, k.Selector.Value, first)
			continue
		}
		seen[id] = k.Selector.Line
		if k.Key.Value == "" {
			d.Errorf(k.Pos.Line, "dkim_sign.keys: key: is required (a PEM private key file, mode 0600)")
			continue
		}
		parsed, err := keyfile.Load(k.Key.Value)
		if err != nil {
			d.Errorf(k.Key.Line, "dkim_sign.keys.key: %v", err)
			continue
		}
		signer, err := sigcrypto.NewSigner(parsed) // parsed once per load into the crypto library's key
		if err != nil {
			d.Errorf(k.Key.Line, "dkim_sign.keys.key: %v", err)
			continue
		}
		key := Key{Domain: k.Domain.Value, Selector: k.Selector.Value, Signer: signer}
		alg, err := key.Alg()
		if err != nil {
			d.Errorf(k.Key.Line, "dkim_sign.keys.key: %s", strings.TrimPrefix(err.Error(), "dkimsign: "))
			continue
		}
		if a := k.Algorithm.Value; a != "" && !strings.EqualFold(a, alg) {
			d.Errorf(k.Algorithm.Line, "dkim_sign.keys.algorithm: %q, but %s is a %s key (rsa-sha256 or ed25519-sha256, as the key)", a, k.Key.Value, alg)
			continue
		}
		p.keys = append(p.keys, key)
	}
	return p
}

// validName: a domain or selector as DNS labels (letters, digits,
// hyphens, underscores, dots).
func validName(s string) bool {
	if s == "" || len(s) > 253 || strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Effective fills in the defaults.
func (spec) Effective(cfg any) any {
	c := *cfg.(*Config)
	if c.Headers == nil {
		c.Headers = feature.Strs(DefaultHeaders...)
	}
	if c.Canonicalization.Value == "" {
		c.Canonicalization = feature.Str{Value: canonRelaxed + "/" + canonRelaxed}
	}
	if c.Timestamps == nil {
		on := true
		c.Timestamps = &on
	}
	if c.Expire == nil {
		var none feature.Duration
		c.Expire = &none
	}
	return &c
}
