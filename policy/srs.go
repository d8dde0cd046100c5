package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/tollgate/tollgate/milter"
	"github.com/tollgate/tollgate/srs"
	"github.com/tollgate/tollgate/srs/store"
)

// srsPolicy is the compiled srs: section.
type srsPolicy struct {
	srs    *srs.SRS
	local  func(domain string) bool
	maxAge time.Duration
	db     *srsDB
}

// srsDB is database mode as configured; the store itself is opened by the
// Env, so that tollgate check never touches it.
type srsDB struct {
	always bool
	bolt   string
	redis  *store.RedisOptions
}

// key identifies the store by every option it was opened with: a reload
// that changes any of them (a new password, a timeout) gets a new store, one
// that changes none keeps the open one. A hash, so that the password is in
// no map key or log line.
func (d *srsDB) key() string {
	if d.bolt != "" {
		return "bolt:" + d.bolt
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%#v", *d.redis))
	return "redis:" + hex.EncodeToString(sum[:])
}

func compileSRS(d *decoder, lc *listCompiler, in *SRSConfig) *srsPolicy {
	if in == nil {
		return nil
	}
	line := in.Pos.Line
	db := compileSRSDB(d, in.Database) // its problems too, whatever the rest
	failed := false
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
			failed = true
		}
		o.Secrets = append(secrets, o.Secrets...)
	}
	if len(o.Secrets) == 0 {
		if !failed {
			d.errorf(line, "srs needs secrets_file (or secrets): the first secret signs, all verify")
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
		d.errorf(in.Separator.Line, "srs.separator: %q is not one of = + -", in.Separator.Value)
	}
	s, err := srs.New(o)
	if err != nil {
		d.reportAll(err, in.Pos, "")
		return nil
	}
	if failed {
		return nil
	}
	local := lc.domains(in.LocalDomains)
	exclude := lc.domains(in.ExcludeDomains)
	maxAge := o.MaxAge
	if maxAge == 0 {
		maxAge = srs.DefaultMaxAge
	}
	return &srsPolicy{srs: s, maxAge: maxAge, db: db,
		local: func(dom string) bool { return local.Match(dom) || exclude.Match(dom) }}
}

func compileSRSDB(d *decoder, in *SRSDatabaseConfig) *srsDB {
	if in == nil {
		return nil
	}
	db := &srsDB{}
	switch in.Use.Value {
	case "", "long":
	case "always":
		db.always = true
	default:
		d.errorf(in.Use.Line, "srs.database.use: %q is not long or always", in.Use.Value)
	}
	switch {
	case in.Bolt.Value != "" && in.Redis != nil:
		d.errorf(in.Pos.Line, "srs.database: give bolt or redis, not both")
	case in.Bolt.Value != "":
		if !filepath.IsAbs(in.Bolt.Value) {
			d.errorf(in.Bolt.Line, "srs.database.bolt: %q must be an absolute path", in.Bolt.Value)
		}
		db.bolt = in.Bolt.Value
	case in.Redis != nil:
		r := in.Redis
		o := &store.RedisOptions{Addr: r.Address.Value, Username: r.Username.Value, Prefix: r.Prefix.Value}
		if o.Addr == "" {
			d.errorf(in.Pos.Line, "srs.database.redis.address is required (host:port or unix:/path)")
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
				d.errorf(r.PasswordFile.Line, "srs.database.redis.password_file: %v", err)
			case len(pw) != 1:
				d.errorf(r.PasswordFile.Line, "srs.database.redis.password_file: %s has %d lines, want the password alone on one line", r.PasswordFile.Value, len(pw))
			default:
				o.Password = pw[0]
			}
		}
		if _, err := store.NewRedis(*o); err != nil {
			d.errorf(in.Pos.Line, "srs.database.redis: %v", err)
		}
		db.redis = o
	default:
		d.errorf(in.Pos.Line, "srs.database needs bolt: /path (one machine) or redis: {address: ...} (shared)")
		return nil
	}
	return db
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
