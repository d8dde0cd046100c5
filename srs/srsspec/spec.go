// Package srsspec describes SRS to the loader and the policy: its section,
// condition, variables and control, and how its module is built. A package
// of its own because it opens srs/store, which imports srs.
package srsspec

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/feature"
	"github.com/tollgate/tollgate/milter"
	"github.com/tollgate/tollgate/srs"
	"github.com/tollgate/tollgate/srs/store"
)

// Config is the srs: section (the seed's libsrs_alt options).
type Config struct {
	Pos            feature.Pos       `yaml:"-"`
	Domain         feature.Str       `yaml:"domain"`
	SecretsFile    feature.Str       `yaml:"secrets_file"`
	Secrets        feature.StrList   `yaml:"secrets"`
	HashLength     *int              `yaml:"hash_length"`
	HashMin        *int              `yaml:"hash_min"`
	MaxAge         *feature.Duration `yaml:"max_age"`
	UseHash        *bool             `yaml:"use_hash"`
	UseTimestamp   *bool             `yaml:"use_timestamp"`
	Separator      feature.Str       `yaml:"separator"`
	HashAlphabet   feature.Str       `yaml:"hash_alphabet"`
	Scheme         feature.Str       `yaml:"scheme"`
	Accept         feature.StrList   `yaml:"accept"`
	LocalDomains   feature.StrList   `yaml:"local_domains"`
	ExcludeDomains feature.StrList   `yaml:"exclude_domains"`
	Database       *DatabaseConfig   `yaml:"database"`
	Socketmap      *SocketmapConfig  `yaml:"socketmap"`
}

// SocketmapConfig is the socketmap server for Postfix's canonical maps
// (postsrsd 2.x's socketmap, drop-in).
type SocketmapConfig struct {
	Pos            feature.Pos       `yaml:"-"`
	Listen         feature.Str       `yaml:"listen"` // unix:/path or inet:host:port
	MaxConnections *int              `yaml:"max_connections"`
	IdleTimeout    *feature.Duration `yaml:"idle_timeout"`
}

// DatabaseConfig is SRS database mode (the seed's srs_dbinsert/srs_dbselect).
type DatabaseConfig struct {
	Pos   feature.Pos  `yaml:"-"`
	Use   feature.Str  `yaml:"use"` // long (default) or always
	Bolt  feature.Str  `yaml:"bolt"`
	Redis *RedisConfig `yaml:"redis"`
}

// RedisConfig is a Redis server shared by several tollgate daemons.
type RedisConfig struct {
	Address      feature.Str       `yaml:"address"`
	Username     feature.Str       `yaml:"username"`
	PasswordFile feature.Str       `yaml:"password_file"`
	DB           *int              `yaml:"db"`
	Prefix       feature.Str       `yaml:"prefix"`
	Timeout      *feature.Duration `yaml:"timeout"`
}

// Spec is SRS as the configuration and the policy see it.
var Spec feature.Spec = spec{}

type spec struct{}

const name = "srs"

func (spec) Name() string   { return name }
func (spec) NewConfig() any { return &Config{} }

// Order: SRS reverses a bounce recipient at RCPT before the features that
// judge recipients (BMI, DCC) see it; they name srs in their After.
func (spec) Order() feature.Order { return feature.Order{} }

func (spec) NewMetrics(reg prometheus.Registerer) any { return srs.NewMetrics(reg) }

func (spec) Compile(cfg any, env *feature.CompileEnv) feature.Section {
	if s := compile(env.Report, env.Domains, cfg.(*Config)); s != nil {
		return s
	}
	return nil
}

// section is the compiled srs: section.
type section struct {
	srs       *srs.SRS
	local     func(domain string) bool
	maxAge    time.Duration
	db        *database
	socketmap *socketmap
}

// socketmap is the socketmap server as configured.
type socketmap struct {
	listen string
	o      srs.SocketmapOptions
}

// database is database mode as configured; the store itself is opened when
// a runtime is built, so that tollgate check never touches it.
type database struct {
	always bool
	bolt   string
	redis  *store.RedisOptions
}

// key identifies the store by every option it is opened with: a reload
// that changes any of them (a new password, a timeout) gets a new store, one
// that changes none keeps the open one. A hash, so that the password is in
// no map key or log line.
func (d *database) key() string {
	if d.bolt != "" {
		return "bolt:" + d.bolt
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%#v", *d.redis))
	return "redis:" + hex.EncodeToString(sum[:])
}

func (s *section) ControlError(string) error { return nil }

// Module builds the milter hooks. A database store is shared with every
// later configuration naming it with the same options (bolt's file lock
// forbids a second open). A Redis store connects lazily, so a Redis that is
// down delays bounces (4xx) but not the daemon.
func (s *section) Module(env *feature.ModuleEnv) (milter.Module, error) {
	o := srs.ModuleOptions{SRS: s.srs, Local: s.local, Metrics: env.Metrics.(*srs.Metrics), Log: env.Log}
	if s.db != nil {
		c, err := env.Shared(s.db.key(), func() (io.Closer, error) {
			if s.db.bolt != "" {
				return store.OpenBolt(s.db.bolt)
			}
			return store.NewRedis(*s.db.redis)
		})
		if err != nil {
			return nil, fmt.Errorf("srs database: %w", err)
		}
		o.DB, o.Always = store.NewDB(s.srs, c.(store.Store), s.maxAge), s.db.always
	}
	if s.socketmap != nil && env.Serving {
		// Keyed by the address alone: a reload that keeps it keeps the
		// server and its connections, and gives it the new rewriter.
		sm := s.socketmap
		c, err := env.Shared("socketmap:"+sm.listen, func() (io.Closer, error) {
			so := sm.o
			so.Metrics, so.Log = o.Metrics, env.Log
			return srs.ListenSocketmap(sm.listen, o, so)
		})
		if err != nil {
			return nil, fmt.Errorf("srs socketmap: %w", err)
		}
		// This configuration's rewriter, for as long as its runtime lives
		// (a key of its own, so released with the runtime, or at once if
		// the runtime fails to build).
		server := c.(*srs.Socketmap)
		if _, err := env.Shared(fmt.Sprintf("socketmap-rewriter:%s:%d", sm.listen, registrations.Add(1)), func() (io.Closer, error) {
			return server.Register(o), nil
		}); err != nil {
			return nil, fmt.Errorf("srs socketmap: %w", err)
		}
	}
	return srs.NewModule(o), nil
}

// registrations numbers the socketmap registrations, one a runtime.
var registrations atomic.Int64

// Rewriter is the SRS rewriter of a compiled srs: section (for tollgate srs
// forward|reverse); an error when there is none.
func Rewriter(sec feature.Section) (*srs.SRS, error) {
	s, ok := sec.(*section)
	if !ok || s == nil {
		return nil, errors.New("the configuration has no srs: section")
	}
	return s.srs, nil
}

// LocalSender reports whether the daemon leaves sender alone when it
// forwards with SRS because its domain is in srs.local_domains or
// srs.exclude_domains (false without an srs: section). "tollgate srs
// forward" follows it, so that the command and the daemon agree.
func LocalSender(sec feature.Section, sender string) bool {
	s, ok := sec.(*section)
	return ok && s != nil && s.local != nil && s.local(milter.Domain(sender))
}

var (
	atRcpt   = milter.StageSet(milter.StageRcpt)
	fromMail = milter.StagesFrom(milter.StageMail)
)

func (spec) Vocabulary() feature.Vocabulary {
	rcpt := func(e *feature.Eval) *srs.RcptFacts {
		if f := srs.RcptFactsOf(e.Rcpt); f != nil {
			return f
		}
		return &srs.RcptFacts{Status: string(srs.StatusNone)}
	}
	return feature.Vocabulary{
		Conditions: []feature.Condition{{Key: "srs", Stages: atRcpt, Example: "[valid, none]",
			NewValue: func() any { return new(feature.StrList) }, Compile: compileCond}},
		Variables: []feature.Variable{
			{Name: "srs_status", Stages: atRcpt, Value: func(e *feature.Eval) string { return rcpt(e).Status }},
			{Name: "srs_recipient", Stages: atRcpt, Value: func(e *feature.Eval) string { return rcpt(e).Recipient }},
			{Name: "srs_orig_recipient", Stages: atRcpt, Value: func(e *feature.Eval) string {
				if srs.RcptFactsOf(e.Rcpt) == nil {
					return ""
				}
				return e.Rcpt.Addr
			}},
			{Name: "srs_db_key", Stages: atRcpt, Value: func(e *feature.Eval) string { return rcpt(e).DBKey }},
			{Name: "srs_db_address", Stages: atRcpt, Value: func(e *feature.Eval) string {
				if r := rcpt(e); r.DBKey != "" {
					return r.Recipient
				}
				return ""
			}},
			{Name: "srs_orig_sender", Stages: fromMail, Value: func(e *feature.Eval) string {
				if f := srs.FactsOf(e.Txn); f.OrigSender != "" {
					return f.OrigSender
				}
				if e.Txn == nil {
					return ""
				}
				return e.Txn.Sender
			}},
		},
		// Rewrite the envelope sender with SRS once accepted.
		Controls: []feature.Control{{Name: srs.ControlForward, Stages: fromMail}},
	}
}

// cond is true when the current recipient's SRS status is one listed. A
// recipient that is no SRS address of ours has status none.
type cond struct{ statuses map[string]bool }

func (c cond) Match(e *feature.Eval) (bool, *milter.Decision) {
	status := string(srs.StatusNone)
	if f := srs.RcptFactsOf(e.Rcpt); f != nil {
		status = f.Status
	}
	return c.statuses[status], nil
}

func compileCond(value any, _ int, _ feature.Section, r feature.Reporter) feature.Test {
	c := cond{statuses: map[string]bool{}}
	for _, it := range *value.(*feature.StrList) {
		switch srs.Status(it.Value) {
		case srs.StatusValid, srs.StatusInvalid, srs.StatusExpired, srs.StatusNone:
			c.statuses[it.Value] = true
		default:
			r.Errorf(it.Line, "srs: %q is not valid, invalid, expired or none", it.Value)
		}
	}
	return c
}

func compile(d feature.Reporter, domains func(feature.StrList) func(string) bool, in *Config) *section {
	if in == nil {
		return nil
	}
	line := in.Pos.Line
	db := compileDB(d, in.Database) // its problems too, whatever the rest
	sm := compileSocketmap(d, in.Socketmap)
	failed := false
	o := srs.Options{Domain: in.Domain.Value, UseHash: in.UseHash, UseTimestamp: in.UseTimestamp,
		HashAlphabet: srs.Alphabet(in.HashAlphabet.Value), Scheme: srs.Scheme(in.Scheme.Value)}
	for _, a := range in.Accept {
		o.Accept = append(o.Accept, srs.Scheme(a.Value))
	}
	if in.Domain.Value == "" {
		d.Errorf(line, "srs.domain is required: the domain SRS addresses are written at")
	}
	for _, s := range in.Secrets {
		o.Secrets = append(o.Secrets, s.Value)
	}
	if in.SecretsFile.Value != "" {
		secrets, err := srs.ReadSecretsFile(in.SecretsFile.Value)
		if err != nil {
			d.Errorf(in.SecretsFile.Line, "srs.secrets_file: %v", err)
			failed = true
		}
		o.Secrets = append(secrets, o.Secrets...)
	}
	if len(o.Secrets) == 0 {
		if !failed {
			d.Errorf(line, "srs needs secrets_file (or secrets): the first secret signs, all verify")
		}
		// The other options are still checked, so that one run reports all.
		o.Secrets, failed = []string{"placeholder"}, true
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
		d.Errorf(in.Separator.Line, "srs.separator: %q is not one of = + -", in.Separator.Value)
	}
	s, err := srs.New(o)
	if err != nil {
		feature.ReportAll(d, err, in.Pos, "")
		return nil
	}
	if failed {
		return nil
	}
	local := domains(in.LocalDomains)
	exclude := domains(in.ExcludeDomains)
	maxAge := o.MaxAge
	if maxAge == 0 {
		maxAge = srs.DefaultMaxAge
	}
	return &section{srs: s, maxAge: maxAge, db: db, socketmap: sm,
		local: func(dom string) bool { return local(dom) || exclude(dom) }}
}

func compileDB(d feature.Reporter, in *DatabaseConfig) *database {
	if in == nil {
		return nil
	}
	db := &database{}
	switch in.Use.Value {
	case "", "long":
	case "always":
		db.always = true
	default:
		d.Errorf(in.Use.Line, "srs.database.use: %q is not long or always", in.Use.Value)
	}
	switch {
	case in.Bolt.Value != "" && in.Redis != nil:
		d.Errorf(in.Pos.Line, "srs.database: give bolt or redis, not both")
	case in.Bolt.Value != "":
		if !filepath.IsAbs(in.Bolt.Value) {
			d.Errorf(in.Bolt.Line, "srs.database.bolt: %q must be an absolute path", in.Bolt.Value)
		}
		db.bolt = in.Bolt.Value
	case in.Redis != nil:
		r := in.Redis
		o := &store.RedisOptions{Addr: r.Address.Value, Username: r.Username.Value, Prefix: r.Prefix.Value}
		if o.Addr == "" {
			d.Errorf(in.Pos.Line, "srs.database.redis.address is required (host:port or unix:/path)")
		}
		if r.DB != nil {
			o.DB = *r.DB
		}
		if r.Timeout != nil {
			t := time.Duration(*r.Timeout)
			o.DialTimeout, o.ReadTimeout, o.WriteTimeout = t, t, t
		}
		if r.PasswordFile.Value != "" {
			pw, err := srs.ReadSecretsFile(r.PasswordFile.Value)
			switch {
			case err != nil:
				d.Errorf(r.PasswordFile.Line, "srs.database.redis.password_file: %v", err)
			case len(pw) != 1:
				d.Errorf(r.PasswordFile.Line, "srs.database.redis.password_file: %s has %d lines, want the password alone on one line", r.PasswordFile.Value, len(pw))
			default:
				o.Password = pw[0]
			}
		}
		if _, err := store.NewRedis(*o); err != nil {
			d.Errorf(in.Pos.Line, "srs.database.redis: %v", err)
		}
		db.redis = o
	default:
		d.Errorf(in.Pos.Line, "srs.database needs bolt: /path (one machine) or redis: {address: ...} (shared)")
		return nil
	}
	return db
}

func compileSocketmap(d feature.Reporter, in *SocketmapConfig) *socketmap {
	if in == nil {
		return nil
	}
	sm := &socketmap{listen: in.Listen.Value}
	if _, _, err := srs.ParseSocketmapListen(in.Listen.Value); err != nil {
		line := in.Listen.Line
		if line == 0 {
			line = in.Pos.Line
		}
		d.Errorf(line, "srs.socketmap.listen: %q: want unix:/absolute/path or inet:host:port", in.Listen.Value)
	}
	if in.MaxConnections != nil {
		if *in.MaxConnections < 1 {
			d.Errorf(in.Pos.KeyLine("max_connections"), "srs.socketmap.max_connections: %d: must be at least 1", *in.MaxConnections)
		}
		sm.o.MaxConns = *in.MaxConnections
	}
	if in.IdleTimeout != nil {
		if *in.IdleTimeout <= 0 {
			d.Errorf(in.Pos.KeyLine("idle_timeout"), "srs.socketmap.idle_timeout: must be positive")
		}
		sm.o.IdleTimeout = time.Duration(*in.IdleTimeout)
	}
	return sm
}

// Effective fills in the defaults srs.New and the store apply; inline
// secrets print as feature.Redacted, secrets_file and the Redis
// password_file as their paths.
func (spec) Effective(cfg any) any {
	c := *cfg.(*Config)
	c.Secrets = feature.Redact(c.Secrets)
	if c.HashLength == nil || *c.HashLength == 0 {
		c.HashLength = ptr(srs.DefaultHashLength)
	}
	if c.HashMin == nil || *c.HashMin == 0 {
		c.HashMin = ptr(*c.HashLength)
	}
	if c.MaxAge == nil || *c.MaxAge == 0 {
		c.MaxAge = ptr(feature.Duration(srs.DefaultMaxAge))
	}
	if c.UseHash == nil {
		c.UseHash = ptr(true)
	}
	if c.UseTimestamp == nil {
		c.UseTimestamp = ptr(true)
	}
	if c.Separator.Value == "" {
		c.Separator.Value = string(rune(srs.DefaultSeparator))
	}
	if c.HashAlphabet.Value == "" {
		c.HashAlphabet.Value = string(srs.AlphabetStandard)
	}
	if c.Scheme.Value == "" {
		c.Scheme.Value = string(srs.SchemeGuarded)
	}
	if len(c.Accept) == 0 {
		c.Accept = feature.StrList{{Value: c.Scheme.Value}}
	}
	if c.Socketmap != nil {
		sm := *c.Socketmap
		if sm.MaxConnections == nil {
			sm.MaxConnections = ptr(srs.DefaultSocketmapMaxConns)
		}
		if sm.IdleTimeout == nil {
			sm.IdleTimeout = ptr(feature.Duration(srs.DefaultSocketmapIdleTimeout))
		}
		c.Socketmap = &sm
	}
	if c.Database != nil {
		db := *c.Database
		if db.Use.Value == "" {
			db.Use.Value = "long"
		}
		if db.Redis != nil {
			r := *db.Redis
			if r.DB == nil {
				r.DB = ptr(0)
			}
			if r.Prefix.Value == "" {
				r.Prefix.Value = store.DefaultRedisPrefix
			}
			if r.Timeout == nil || *r.Timeout == 0 {
				r.Timeout = ptr(feature.Duration(store.DefaultRedisTimeout))
			}
			db.Redis = &r
		}
		c.Database = &db
	}
	return &c
}

func ptr[T any](v T) *T { return &v }
