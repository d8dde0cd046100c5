package policy

import (
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tollgate/tollgate/milter"
)

// template is a string with $variables, checked when the file is loaded so
// that a typo is a load error, not a surprise at 3 a.m.
type template struct {
	parts []tplPart
	raw   string
}

type tplPart struct {
	literal  string
	variable string     // empty for a literal or a lookup
	lookup   *tplLookup // ${lookup{key}kind{/path}}
}

// tplLookup is Exim's single-key lookup: the value stored under the
// expanded key, or "" when there is none.
type tplLookup struct {
	key *template
	db  *lookupDB
}

type variable struct {
	stages milter.Stages // where it has a value; check refuses it elsewhere
	value  func(e *evalCtx) string
}

// Stage sets the variables and conditions use.
var (
	fromConnect = milter.AllStages
	fromHelo    = milter.StagesFrom(milter.StageHelo)
	fromMail    = milter.StagesFrom(milter.StageMail)
	fromRcpt    = milter.StagesFrom(milter.StageRcpt)
	atRcpt      = milter.StageSet(milter.StageRcpt)
	atData      = milter.StageSet(milter.StageData)
)

var aclVarName = regexp.MustCompile(`^acl_[cm](_[a-z0-9_]+|[0-9])$`)

var variables = map[string]variable{
	// Exim's ${authresults}: the Authentication-Results this host writes,
	// every method that ran (README "Authentication-Results").
	"authresults": {atData, func(e *evalCtx) string { return e.t.AuthResultsValue() }},
	"sender_host_address": {fromConnect, func(e *evalCtx) string {
		if a := e.s.Identity.ClientAddr; a.IsValid() {
			return a.String()
		}
		return ""
	}},
	"sender_host_port": {fromConnect, func(e *evalCtx) string {
		if p := e.s.Identity.ClientPort; p != 0 {
			return strconv.Itoa(int(p))
		}
		return ""
	}},
	"sender_host_authenticated": {fromConnect, func(e *evalCtx) string { return e.s.Identity.AuthMechanism }},
	"received_ip_address":       {fromConnect, func(e *evalCtx) string { return addrString(e.s.Identity.DaemonAddr) }},
	"received_port":             {fromConnect, func(e *evalCtx) string { return portString(e.s.Identity.DaemonPort) }},
	"proxy_session": {fromConnect, func(e *evalCtx) string {
		if e.s.Identity.ProxySession {
			return "yes"
		}
		return "no"
	}},
	"proxy_local_address":    {fromConnect, func(e *evalCtx) string { return addrString(e.s.Identity.ProxyLocalAddr) }},
	"proxy_local_port":       {fromConnect, func(e *evalCtx) string { return portString(e.s.Identity.ProxyLocalPort) }},
	"proxy_external_address": {fromConnect, func(e *evalCtx) string { return addrString(e.s.Identity.ProxyExternalAddr) }},
	"proxy_external_port":    {fromConnect, func(e *evalCtx) string { return portString(e.s.Identity.ProxyExternalPort) }},
	"sender_host_name":       {fromConnect, func(e *evalCtx) string { return e.s.Identity.ClientName }},
	"sender_helo_name":       {fromHelo, func(e *evalCtx) string { return e.s.Identity.Helo }},
	"authenticated_id":       {fromConnect, func(e *evalCtx) string { return e.s.Identity.AuthLogin }},
	"primary_hostname":       {fromConnect, func(e *evalCtx) string { return e.s.Identity.MTAName }},
	"sender_address":         {fromMail, func(e *evalCtx) string { return e.t.Sender }},
	"sender_address_domain":  {fromMail, func(e *evalCtx) string { return milter.Domain(e.t.Sender) }},
	"sender_address_local_part": {fromMail, func(e *evalCtx) string {
		if e.t.Sender == "" {
			return ""
		}
		return milter.LocalPart(e.t.Sender)
	}},
	"queue_id":   {fromMail, func(e *evalCtx) string { return e.t.QueueID }},
	"recipient":  {atRcpt, func(e *evalCtx) string { return e.r.Addr }},
	"local_part": {atRcpt, func(e *evalCtx) string { return milter.LocalPart(e.r.Addr) }},
	"domain":     {atRcpt, func(e *evalCtx) string { return milter.Domain(e.r.Addr) }},
	"rcpt_count": {fromRcpt, func(e *evalCtx) string { return strconv.Itoa(len(e.t.Rcpts)) }},
	"recipients_count": {fromRcpt, func(e *evalCtx) string {
		return strconv.Itoa(len(e.t.AcceptedRcpts()))
	}},
	"message_size": {atData, func(e *evalCtx) string { return strconv.FormatInt(e.t.Size(), 10) }},
	// Set by the dnslists condition (dnslists.go).
	"dnslist_domain":  dnsListVariable(dnslistDomainVar),
	"dnslist_value":   dnsListVariable(dnslistValueVar),
	"dnslist_text":    dnsListVariable(dnslistTextVar),
	"dnslist_matched": dnsListVariable(dnslistMatchedVar),
}

func addrString(a netip.Addr) string {
	if a.IsValid() {
		return a.String()
	}
	return ""
}

func portString(p uint16) string {
	if p == 0 {
		return ""
	}
	return strconv.Itoa(int(p))
}

func compileTemplate(d *decoder, s Str, stage milter.Stage, where string) *template {
	t := &template{raw: s.Value}
	v := s.Value
	var lit strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '$' {
			lit.WriteByte(v[i])
			continue
		}
		if i+1 < len(v) && v[i+1] == '$' {
			lit.WriteByte('$')
			i++
			continue
		}
		var name string
		if strings.HasPrefix(v[i:], lookupOpen) {
			lk, n, ok := compileLookup(d, s.Line, v[i:], stage, where)
			if !ok {
				return t
			}
			if lit.Len() > 0 {
				t.parts = append(t.parts, tplPart{literal: lit.String()})
				lit.Reset()
			}
			t.parts = append(t.parts, tplPart{lookup: lk})
			i += n - 1
			continue
		}
		if i+1 < len(v) && v[i+1] == '{' {
			end := strings.IndexByte(v[i:], '}')
			if end < 0 {
				d.errorf(s.Line, "%s: unclosed ${ in %q", where, v)
				return t
			}
			name = v[i+2 : i+end]
			i += end
		} else {
			j := i + 1
			for j < len(v) && (v[j] == '_' || v[j] >= 'a' && v[j] <= 'z' || v[j] >= '0' && v[j] <= '9') {
				j++
			}
			name = v[i+1 : j]
			i = j - 1
		}
		if name == "" {
			d.errorf(s.Line, "%s: a lone $ in %q (write $$ for a dollar sign)", where, v)
			continue
		}
		if aclVarName.MatchString(name) {
			if name[4] == 'm' && !fromMail.Has(stage) {
				d.errorf(s.Line, "%s: $%s is a message variable, not available at %s", where, name, stage)
			}
		} else if va, ok := d.variables()[name]; !ok {
			d.errorf(s.Line, "%s: unknown variable $%s", where, name)
		} else if !va.stages.Has(stage) {
			d.errorf(s.Line, "%s: $%s has no value at %s (only at %s)", where, name, stage, va.stages)
		}
		if lit.Len() > 0 {
			t.parts = append(t.parts, tplPart{literal: lit.String()})
			lit.Reset()
		}
		t.parts = append(t.parts, tplPart{variable: name})
	}
	if lit.Len() > 0 {
		t.parts = append(t.parts, tplPart{literal: lit.String()})
	}
	return t
}

// expand fills in the variables. Values never add line breaks: a CR or LF
// from the client (a HELO name, say) becomes a space.
func (t *template) expand(e *evalCtx) string {
	if t == nil {
		return ""
	}
	if len(t.parts) == 1 && t.parts[0].variable == "" && t.parts[0].lookup == nil {
		return t.parts[0].literal
	}
	var b strings.Builder
	for _, p := range t.parts {
		var value string
		switch {
		case p.lookup != nil:
			if p.lookup.db != nil { // nil only in a policy check refused
				value, _ = p.lookup.db.value(p.lookup.key.expand(e))
			}
		case p.variable != "":
			value = e.lookup(p.variable)
		default:
			b.WriteString(p.literal)
			continue
		}
		b.WriteString(strings.Map(func(r rune) rune {
			if r == '\r' || r == '\n' || r == 0 {
				return ' '
			}
			return r
		}, value))
	}
	return b.String()
}

const lookupOpen = "${lookup{"

// compileLookup compiles the ${lookup{key}kind{/path}} at the start of v
// and returns its length. The key may hold variables and lookups; the path
// is literal, so that the database is opened, and checked, at load time.
func compileLookup(d *decoder, line int, v string, stage milter.Stage, where string) (*tplLookup, int, bool) {
	const form = "${lookup{KEY}lmdb{/path}} or ${lookup{KEY}cdb{/path}}"
	i := len(lookupOpen)
	depth := 1
	keyEnd := -1
	for j := i; j < len(v) && keyEnd < 0; j++ {
		switch v[j] {
		case '{':
			depth++
		case '}':
			if depth--; depth == 0 {
				keyEnd = j
			}
		}
	}
	if keyEnd < 0 {
		d.errorf(line, "%s: unclosed key in %q (the form is %s)", where, v, form)
		return nil, 0, false
	}
	key := compileTemplate(d, Str{Value: v[i:keyEnd], Line: line}, stage, where)
	rest := v[keyEnd+1:]
	kindEnd := strings.IndexByte(rest, '{')
	pathEnd := strings.IndexByte(rest, '}')
	if kindEnd < 0 || pathEnd < kindEnd || pathEnd+1 >= len(rest) || rest[pathEnd+1] != '}' {
		d.errorf(line, "%s: malformed lookup in %q (the form is %s)", where, v, form)
		return nil, 0, false
	}
	kind, path := rest[:kindEnd], rest[kindEnd+1:pathEnd]
	if strings.Contains(path, "$") {
		d.errorf(line, "%s: the path of a lookup must be written out, without variables: %q", where, path)
		return nil, 0, false
	}
	lk := &tplLookup{key: key, db: d.openLookup(line, where+": ", kind, path)}
	return lk, keyEnd + 1 + pathEnd + 2, true
}

func (e *evalCtx) lookup(name string) (value string) {
	if aclVarName.MatchString(name) {
		if name[4] == 'c' {
			return e.s.Vars[name]
		}
		if e.t != nil {
			return e.t.Vars[name]
		}
		return ""
	}
	vars := e.vars
	if vars == nil {
		vars = variables
	}
	va, ok := vars[name]
	if !ok || !va.stages.Has(e.stage) {
		e.unknown(name, "no value at this stage")
		return ""
	}
	// check refuses every use outside the stage set, so this is the last line
	// of defence against a variable whose value is missing anyway: one
	// message must never fail on it.
	defer func() {
		if p := recover(); p != nil {
			e.unknown(name, fmt.Sprint(p))
			value = ""
		}
	}()
	return va.value(e)
}

// logLimiter lets one log line a minute through per key: a policy that hits
// an unknown value does so on every message. One per loaded policy.
type logLimiter struct {
	mu   sync.Mutex
	last map[string]time.Time
}

const unknownLogEvery = time.Minute

func (l *logLimiter) allow(key string, now time.Time) bool {
	if l == nil {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if last, seen := l.last[key]; seen && now.Sub(last) < unknownLogEvery {
		return false
	}
	if l.last == nil {
		l.last = map[string]time.Time{}
	}
	l.last[key] = now
	return true
}

// unknown counts a variable that had no value where it was used and says so
// in the log, at most once a minute per variable and stage.
func (e *evalCtx) unknown(name, why string) {
	if e.metrics != nil {
		e.metrics.PolicyUnknownValues.WithLabelValues(e.stage.String()).Inc()
	}
	if !e.limit.allow(e.stage.String()+"/"+name, time.Now()) {
		return
	}
	log := e.log
	if log == nil {
		log = slog.Default()
	}
	log.Warn("policy: variable has no value here; expanded to an empty string", "variable", "$"+name,
		"stage", e.stage.String(), "why", why, "session", e.s.ID)
}

// variables are the core's and, once known, the features' variables.
func (d *decoder) variables() map[string]variable {
	if d.vars != nil {
		return d.vars
	}
	return variables
}
