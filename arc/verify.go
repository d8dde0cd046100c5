package arc

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/internal/authres"
	"github.com/tollgate/tollgate/internal/dkimsig"
)

// MaxInstances is the largest ARC chain RFC 8617 §5.2 allows.
const MaxInstances = 50

// Header is one header field as received: Value is every byte after the
// colon (leading space included), folded lines joined with "\r\n".
type Header struct{ Name, Value string }

// State is the chain validation status (RFC 8617 §4.4).
type State string

const (
	StatePass State = "pass"
	StateFail State = "fail"
	StateNone State = "none"
)

// Result is the outcome of RFC 8617 §5.2 validation.
type Result struct {
	State State
	// Reason says why, when State is fail: a short stable text such as
	// "ams.1 body hash mismatch", "as.2 signature invalid" or
	// "ams.2 dns: temporary failure for sel._domainkey.example.org (SERVFAIL)".
	Reason string
	// Temporary is set when a DNS temporary failure caused the fail:
	// the same message may pass later.
	Temporary bool
	// Domains holds the d= of each ARC-Seal in instance order, "" for a
	// set that is missing, duplicated or unreadable (Exim's arc_domains
	// is strings.Join(Domains, ":")).
	Domains []string
	// OldestPass is the lowest instance from which every AMS up to the
	// newest still validates (Exim's $arc_oldest_pass): N when only the
	// newest does, 1 when all do, 0 when the chain does not pass. For the
	// header.oldest-pass of RFC 8617 §7.2, which is 0 when all pass, use
	// HeaderOldestPass.
	OldestPass int
	// Instances is the highest instance seen (N); a new seal gets N+1.
	Instances int
	// ArrivedCV is the cv= of the newest ARC-Seal as received ("none",
	// "pass", "fail"), "" without one.
	ArrivedCV string
}

// AuthResult is the arc= result for Authentication-Results (RFC 8617
// §7.2): "arc=pass header.oldest-pass=2 smtp.remote-ip=192.0.2.1", or with
// the reason as a comment when it fails. remoteIP may be "".
func (r *Result) AuthResult(remoteIP string) authres.Result {
	ar := authres.Result{Method: "arc", Result: string(r.State)}
	if r.State == StateFail {
		ar.Comment = r.Reason
	}
	if r.State == StatePass {
		ar.Props = append(ar.Props, authres.Prop{Type: "header", Property: "oldest-pass", Value: strconv.Itoa(r.HeaderOldestPass())})
	}
	if remoteIP != "" {
		ar.Props = append(ar.Props, authres.Prop{Type: "smtp", Property: "remote-ip", Value: remoteIP})
	}
	return ar
}

// HeaderOldestPass is the value for header.oldest-pass in an
// Authentication-Results arc= result (RFC 8617 §5.2 step 5, as OpenARC
// writes it): 0 if every AMS validates, else the oldest validating one.
func (r *Result) HeaderOldestPass() int {
	if r.OldestPass <= 1 {
		return 0
	}
	return r.OldestPass
}

// VerifyOptions configures a Verifier.
type VerifyOptions struct {
	Resolver Resolver
	// Now is the clock for t= and x=; default time.Now.
	Now func() time.Time
	// MinRSABits: smaller RSA keys fail (RFC 8301 says 1024); default 1024.
	MinRSABits int
	// MaxClockSkew is how far t= may lie in the future, and x= in the
	// past, before the signature fails; default 1 hour. Failing a chain
	// for a sealer's slow clock would make us seal it cv=fail for every
	// later hop, so this errs on the lenient side (dkimpy allows 10 h).
	MaxClockSkew time.Duration
	// Keys, if set, keeps parsed key records across messages.
	Keys *KeyCache
	// VerifyOnly skips the relaxed body hash that Seal needs; Seal then
	// returns ErrNotPrepared.
	VerifyOnly bool
	// Bodies, if set, is the message's shared body hashing (the milter's):
	// the Verifier asks it for its hashes and its owner feeds and closes
	// it. Without it the Verifier hashes what Body is given itself.
	Bodies *dkimsig.BodyHashes
}

var (
	// ErrNoSeal is wrapped by Seal when RFC 8617 forbids a new set.
	ErrNoSeal = errors.New("arc: no seal")
	// ErrNotPrepared is returned by Seal before Result, or after a
	// VerifyOnly verification.
	ErrNotPrepared = errors.New("arc: verifier not ready to seal")
)

type arcKind uint8

const (
	kindAAR arcKind = iota
	kindAMS
	kindAS
)

var kindTag = [...]string{"aar", "ams", "as"}

type arcHdr struct {
	kind arcKind
	idx  int // index in Verifier.headers
	inst int // 0 when the instance could not be read
	tags tagList
	err  error
}

type arcSet struct {
	aar, ams, as []*arcHdr

	// AMS body hash parameters, read at end of headers
	hcanon, bcanon dkimsig.Canon
	limit          int64
	body           *dkimsig.BodyHash
	prepErr        string
}

// Verifier validates the ARC chain of one message fed to it header by
// header and body chunk by body chunk; it never holds the body. Not safe
// for concurrent use.
type Verifier struct {
	opts    VerifyOptions
	headers []Header

	eoh      bool
	bodyDone bool
	hdrs     []*arcHdr // the ARC header fields, in message order
	hdrInst  []int     // per header: its ARC instance, 0 if none
	sets     []arcSet  // index 0 is instance 1; nil when N is out of range
	n        int
	bodies   *dkimsig.BodyHashes
	feeds    bool // the Verifier feeds bodies itself (not shared)
	sealBody *dkimsig.BodyHash

	result *Result
	keys   map[string]keyResult
}

type keyResult struct {
	key    *publicKey
	reason string
	temp   bool
}

// DefaultMinRSABits is the smallest RSA key that verifies (RFC 8301).
const DefaultMinRSABits = 1024

// NewVerifier returns a Verifier for one message.

func NewVerifier(opts VerifyOptions) *Verifier {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MinRSABits <= 0 {
		opts.MinRSABits = DefaultMinRSABits
	}
	if opts.MaxClockSkew <= 0 {
		opts.MaxClockSkew = time.Hour
	}
	v := &Verifier{opts: opts, bodies: opts.Bodies}
	if v.bodies == nil {
		v.bodies, v.feeds = new(dkimsig.BodyHashes), true
	}
	return v
}

// Header adds the next header field. Bare LF in a value is taken as CRLF,
// as it will be on the wire.
func (v *Verifier) Header(h Header) {
	if v.eoh {
		return
	}
	if strings.IndexByte(h.Value, '\n') >= 0 {
		h.Value = dkimsig.FixLF(h.Value)
	}
	v.headers = append(v.headers, h)
}

func arcKindOf(name string) (arcKind, bool) {
	name = strings.TrimRight(name, " \t")
	switch {
	case strings.EqualFold(name, "ARC-Seal"):
		return kindAS, true
	case strings.EqualFold(name, "ARC-Message-Signature"):
		return kindAMS, true
	case strings.EqualFold(name, "ARC-Authentication-Results"):
		return kindAAR, true
	}
	return 0, false
}

// EndOfHeaders parses the chain and sets up the body hashes: one
// canonicalization pass per body canonicalization in use, feeding one
// hash per distinct l=, shared by every AMS that needs it and by Seal.
func (v *Verifier) EndOfHeaders() {
	if v.eoh {
		return
	}
	v.eoh = true
	v.hdrInst = make([]int, len(v.headers))
	for i, h := range v.headers {
		k, ok := arcKindOf(h.Name)
		if !ok {
			continue
		}
		a := &arcHdr{kind: k, idx: i}
		if k == kindAAR {
			a.inst, a.err = parseAAR(h.Value)
		} else {
			a.tags, a.err = parseTagList(h.Value)
			if a.err == nil {
				iv, ok := a.tags.get("i")
				switch {
				case !ok:
					a.err = errors.New("no i=")
				default:
					if a.inst, ok = parseInstance(iv); !ok {
						a.err = fmt.Errorf("bad i=%q", iv)
					}
				}
			}
		}
		if a.inst > v.n {
			v.n = a.inst
		}
		v.hdrInst[i] = a.inst
		v.hdrs = append(v.hdrs, a)
	}
	if v.n > 0 && v.n <= MaxInstances {
		v.sets = make([]arcSet, v.n)
		for _, a := range v.hdrs {
			if a.inst == 0 {
				continue
			}
			s := &v.sets[a.inst-1]
			switch a.kind {
			case kindAAR:
				s.aar = append(s.aar, a)
			case kindAMS:
				s.ams = append(s.ams, a)
			case kindAS:
				s.as = append(s.as, a)
			}
		}
		if v.structure() == "" {
			for i := range v.sets {
				v.prepareAMS(&v.sets[i])
			}
		}
	}
	if !v.opts.VerifyOnly {
		v.sealBody = v.bodySink(dkimsig.Relaxed, -1)
	}
}

// bodySink is nil only when asked after the body started, which the
// milter's EndOfHeaders hook rules out.
func (v *Verifier) bodySink(c dkimsig.Canon, limit int64) *dkimsig.BodyHash {
	s, err := v.bodies.Need(c, crypto.SHA256, limit)
	if err != nil {
		return nil
	}
	return s
}

// prepareAMS reads c= and l= so that the body can be hashed as the AMS
// wants; problems are kept for Result.
func (v *Verifier) prepareAMS(s *arcSet) {
	t := s.ams[0].tags
	s.hcanon, s.bcanon, s.limit = dkimsig.Simple, dkimsig.Simple, -1
	if c, ok := t.get("c"); ok {
		var good bool
		if s.hcanon, s.bcanon, good = dkimsig.ParseCanon(c); !good {
			s.prepErr = fmt.Sprintf("bad c=%s", c)
			return
		}
	}
	if l, ok := t.get("l"); ok {
		n, good := parseUint(l, 18)
		if !good {
			s.prepErr = fmt.Sprintf("bad l=%s", l)
			return
		}
		s.limit = n
	}
	if s.body = v.bodySink(s.bcanon, s.limit); s.body == nil {
		s.prepErr = "body hash asked for too late"
	}
}

// Body adds the next body chunk (CRLF line endings, any chunk size).
func (v *Verifier) Body(chunk []byte) {
	if !v.eoh {
		v.EndOfHeaders()
	}
	if v.bodyDone || !v.feeds {
		return
	}
	v.bodies.Write(chunk)
}

func (v *Verifier) finishBody() {
	if v.bodyDone {
		return
	}
	v.bodyDone = true
	v.bodies.Close() // a shared one is closed already: nothing happens
}

type failure struct {
	reason string
	temp   bool
}

func failf(format string, args ...any) *failure {
	return &failure{reason: fmt.Sprintf(format, args...)}
}

// Result finishes the body and validates the chain (RFC 8617 §5.2). DNS
// lookups obey ctx. Later calls return the same Result.
func (v *Verifier) Result(ctx context.Context) *Result {
	if v.result != nil {
		return v.result
	}
	v.EndOfHeaders()
	v.finishBody()
	r := &Result{Instances: v.n}
	v.result = r
	if len(v.hdrs) == 0 {
		r.State = StateNone
		return r
	}
	r.Domains = v.domains()
	if v.n > 0 && v.n <= MaxInstances {
		if as := v.sets[v.n-1].as; len(as) == 1 && as[0].err == nil {
			r.ArrivedCV, _ = as[0].tags.get("cv")
		}
	}
	if f := v.validate(ctx, r); f != nil {
		r.State, r.Reason, r.Temporary, r.OldestPass = StateFail, f.reason, f.temp, 0
		return r
	}
	r.State = StatePass
	return r
}

func (v *Verifier) validate(ctx context.Context, r *Result) *failure {
	// step 1: at most 50 sets
	if v.n > MaxInstances {
		return failf("too many ARC sets (i=%d > %d)", v.n, MaxInstances)
	}
	// step 2: the newest seal says the chain already failed
	if r.ArrivedCV == "fail" {
		return failf("as.%d cv=fail: chain failed before", v.n)
	}
	// step 3: structure
	if reason := v.structure(); reason != "" {
		return &failure{reason: reason}
	}
	// step 4: the newest AMS
	if f := v.verifyAMS(ctx, v.n); f != nil {
		return f
	}
	// step 6, before 5 so that a broken chain costs no extra lookups:
	// every seal, newest first
	for i := v.n; i >= 1; i-- {
		if f := v.verifyAS(ctx, i, 1); f != nil {
			return f
		}
	}
	// step 5: oldest-pass
	r.OldestPass = v.n
	for i := v.n - 1; i >= 1; i-- {
		if v.verifyAMS(ctx, i) != nil {
			break
		}
		r.OldestPass = i
	}
	return nil
}

// structure checks RFC 8617 §5.2 step 3 and that every ARC header field is
// readable; it returns the reason of the first problem.
func (v *Verifier) structure() string {
	for _, a := range v.hdrs {
		if a.err == nil {
			continue
		}
		name := v.headers[a.idx].Name
		if a.inst > 0 {
			return fmt.Sprintf("%s.%d malformed: %v", kindTag[a.kind], a.inst, a.err)
		}
		return fmt.Sprintf("%s malformed: %v", strings.TrimSpace(name), a.err)
	}
	for i := range v.sets {
		s := &v.sets[i]
		for _, p := range []struct {
			hs   []*arcHdr
			name string
		}{{s.aar, "ARC-Authentication-Results"}, {s.ams, "ARC-Message-Signature"}, {s.as, "ARC-Seal"}} {
			switch len(p.hs) {
			case 0:
				return fmt.Sprintf("set %d incomplete: no %s", i+1, p.name)
			case 1:
			default:
				return fmt.Sprintf("set %d has %d %s", i+1, len(p.hs), p.name)
			}
		}
		cv, _ := s.as[0].tags.get("cv")
		want := "pass"
		if i == 0 {
			want = "none"
		}
		if cv != want {
			if cv != "none" && cv != "pass" && cv != "fail" {
				return fmt.Sprintf("as.%d malformed: bad cv=%q", i+1, cv)
			}
			return fmt.Sprintf("as.%d cv=%s, want %s", i+1, cv, want)
		}
	}
	return ""
}

func (v *Verifier) domains() []string {
	if v.n > 2*MaxInstances {
		return nil
	}
	d := make([]string, v.n)
	per := make([]int, v.n)
	for _, a := range v.hdrs {
		if a.kind != kindAS || a.inst == 0 {
			continue
		}
		per[a.inst-1]++
		if a.err != nil {
			continue
		}
		if dom, ok := a.tags.get("d"); ok && validDomain(dom) {
			d[a.inst-1] = strings.ToLower(dom)
		}
	}
	for i, c := range per {
		if c != 1 {
			d[i] = ""
		}
	}
	return d
}

// checkTimes applies t= and x= (RFC 6376 §3.5) with the clock skew.
func (v *Verifier) checkTimes(p string, t tagList) *failure {
	now := v.opts.Now().Unix()
	skew := int64(v.opts.MaxClockSkew / time.Second)
	var ts int64 = -1
	if tv, ok := t.get("t"); ok {
		n, good := parseUint(tv, 12)
		if !good {
			return failf("%s malformed: bad t=%q", p, tv)
		}
		if n > now+skew {
			return failf("%s t= is in the future", p)
		}
		ts = n
	}
	if xv, ok := t.get("x"); ok {
		n, good := parseUint(xv, 12)
		if !good {
			return failf("%s malformed: bad x=%q", p, xv)
		}
		if ts >= 0 && n < ts {
			return failf("%s malformed: x= before t=", p)
		}
		if now > n+skew {
			return failf("%s signature expired", p)
		}
	}
	return nil
}

func checkAlgDomain(p string, t tagList) (alg, dom, sel string, f *failure) {
	alg, _ = t.get("a")
	if alg != AlgRSASHA256 && alg != AlgEd25519SHA256 {
		return "", "", "", failf("%s unsupported algorithm a=%s", p, alg)
	}
	dom, _ = t.get("d")
	if !validDomain(dom) {
		return "", "", "", failf("%s malformed: bad d=%q", p, dom)
	}
	sel, _ = t.get("s")
	if !validDomain(sel) {
		return "", "", "", failf("%s malformed: bad s=%q", p, sel)
	}
	return alg, dom, sel, nil
}

func (v *Verifier) verifyAMS(ctx context.Context, inst int) *failure {
	s := &v.sets[inst-1]
	h := s.ams[0]
	t := h.tags
	p := "ams." + strconv.Itoa(inst)
	for _, req := range []string{"a", "b", "bh", "d", "h", "s"} {
		if _, ok := t.get(req); !ok {
			return failf("%s malformed: no %s=", p, req)
		}
	}
	alg, dom, sel, f := checkAlgDomain(p, t)
	if f != nil {
		return f
	}
	hv, _ := t.get("h")
	names, err := parseHList(hv)
	if err != nil {
		return failf("%s malformed: %v", p, err)
	}
	for _, n := range names {
		if n == "arc-seal" {
			return failf("%s signs ARC-Seal", p)
		}
	}
	if s.prepErr != "" {
		return failf("%s malformed: %s", p, s.prepErr)
	}
	if f := v.checkTimes(p, t); f != nil {
		return f
	}
	bhv, _ := t.get("bh")
	bh, err := decodeB64(bhv)
	if err != nil || len(bh) != sha256.Size {
		return failf("%s malformed: bad bh=", p)
	}
	bv, _ := t.get("b")
	sig, err := decodeB64(bv)
	if err != nil {
		return failf("%s malformed: bad b=", p)
	}
	if s.limit >= 0 && s.body.N < s.limit {
		return failf("%s l= exceeds the body", p)
	}
	if !bytes.Equal(bh, s.body.Sum) {
		return failf("%s body hash mismatch", p)
	}

	buf := make([]byte, 0, 2048)
	for _, i := range v.selectHeaders(names, inst, h.idx) {
		buf = dkimsig.AppendHeader(buf, s.hcanon, v.headers[i].Name, v.headers[i].Value)
	}
	buf = appendSigHeader(buf, s.hcanon, v.headers[h.idx], t.find("b"))
	digest := sha256.Sum256(buf)

	key, f := v.key(ctx, p, sel, dom)
	if f != nil {
		return f
	}
	if !key.verifySig(alg, digest[:], sig) {
		return failf("%s signature invalid", p)
	}
	return nil
}

// appendSigHeader appends the signature header being verified or made,
// its b= value and the whitespace around it deleted, without the CRLF
// (RFC 6376 §3.7).
func appendSigHeader(dst []byte, c dkimsig.Canon, h Header, b *tag) []byte {
	value := h.Value
	if b != nil {
		value = value[:b.rawStart] + value[b.rawEnd:]
	}
	if c == dkimsig.Relaxed {
		return dkimsig.AppendRelaxedHeader(dst, h.Name, value)
	}
	dst = append(dst, h.Name...)
	dst = append(dst, ':')
	return append(dst, value...)
}

// selectHeaders picks, for each name in h=, the next matching header from
// the bottom (RFC 6376 §5.4.2); a name with no header left selects
// nothing. For instance inst, the AMS being verified and the ARC header
// fields of newer sets are left out: they did not exist when it was made,
// so an oversigned "arc-authentication-results" still matches.
func (v *Verifier) selectHeaders(names []string, inst, self int) []int {
	used := make(map[string]int, len(names))
	var out []int
	for _, n := range names {
		pos, ok := used[n]
		if !ok {
			pos = len(v.headers)
		}
		for pos--; pos >= 0; pos-- {
			h := v.headers[pos]
			if pos == self || !strings.EqualFold(strings.TrimRight(h.Name, " \t"), n) {
				continue
			}
			if inst > 0 && v.hdrInst[pos] > inst {
				continue
			}
			out = append(out, pos)
			break
		}
		used[n] = max(pos, -1)
	}
	return out
}

func (v *Verifier) verifyAS(ctx context.Context, inst, from int) *failure {
	s := &v.sets[inst-1]
	h := s.as[0]
	t := h.tags
	p := "as." + strconv.Itoa(inst)
	for _, req := range []string{"a", "b", "cv", "d", "s"} {
		if _, ok := t.get(req); !ok {
			return failf("%s malformed: no %s=", p, req)
		}
	}
	if _, ok := t.get("h"); ok {
		return failf("%s malformed: h= not allowed", p)
	}
	alg, dom, sel, f := checkAlgDomain(p, t)
	if f != nil {
		return f
	}
	if f := v.checkTimes(p, t); f != nil {
		return f
	}
	bv, _ := t.get("b")
	sig, err := decodeB64(bv)
	if err != nil {
		return failf("%s malformed: bad b=", p)
	}
	buf := make([]byte, 0, 4096)
	for i := from - 1; i < inst; i++ {
		set := &v.sets[i]
		for _, a := range []*arcHdr{set.aar[0], set.ams[0], set.as[0]} {
			hd := v.headers[a.idx]
			if i == inst-1 && a.kind == kindAS {
				buf = appendSigHeader(buf, dkimsig.Relaxed, hd, t.find("b"))
				continue
			}
			buf = dkimsig.AppendHeader(buf, dkimsig.Relaxed, hd.Name, hd.Value)
		}
	}
	digest := sha256.Sum256(buf)
	key, f := v.key(ctx, p, sel, dom)
	if f != nil {
		return f
	}
	if !key.verifySig(alg, digest[:], sig) {
		return failf("%s signature invalid", p)
	}
	return nil
}

// key fetches and parses the key record, once per name and message.
// Several TXT records at the name are a permanent error unless exactly one
// of them parses as a key; dkimpy and Mail::DKIM take whichever record
// comes first, which makes the verdict depend on the resolver's order.
func (v *Verifier) key(ctx context.Context, p, sel, dom string) (*publicKey, *failure) {
	name := strings.ToLower(sel + "._domainkey." + dom)
	kr, ok := v.keys[name]
	if !ok {
		kr = v.fetchKey(ctx, name)
		if v.keys == nil {
			v.keys = map[string]keyResult{}
		}
		v.keys[name] = kr
	}
	if kr.reason != "" {
		return nil, &failure{reason: p + " " + kr.reason, temp: kr.temp}
	}
	if kr.key.revoked {
		return nil, failf("%s key revoked", p)
	}
	if kr.key.isRSA() && kr.key.key.Bits() < v.opts.MinRSABits {
		return nil, failf("%s key too small (%d bits < %d)", p, kr.key.key.Bits(), v.opts.MinRSABits)
	}
	return kr.key, nil
}

func (v *Verifier) fetchKey(ctx context.Context, name string) keyResult {
	if v.opts.Resolver == nil {
		return keyResult{reason: "dns: no resolver configured", temp: true}
	}
	txts, err := v.opts.Resolver.LookupTXT(ctx, name)
	if err != nil {
		de := dnsError(name, err)
		return keyResult{reason: de.Error(), temp: de.Temporary}
	}
	var found *publicKey
	var firstErr error
	n := 0
	for _, txt := range txts {
		k, err := v.opts.Keys.Parse(txt, parseKeyRecord)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		found = k
		n++
	}
	switch {
	case n == 1:
		return keyResult{key: found}
	case n > 1:
		return keyResult{reason: fmt.Sprintf("key: %d key records at %s", n, name)}
	case firstErr != nil:
		return keyResult{reason: fmt.Sprintf("key: bad record at %s: %v", name, firstErr)}
	}
	return keyResult{reason: "key: no record at " + name}
}
