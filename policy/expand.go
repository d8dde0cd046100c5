package policy

import (
	"net/netip"
	"regexp"
	"strconv"
	"strings"

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
	variable string // empty for a literal
}

type variable struct {
	from  milter.Stage // first stage where it has a value
	value func(e *evalCtx) string
}

var aclVarName = regexp.MustCompile(`^acl_[cm](_[a-z0-9_]+|[0-9])$`)

var variables = map[string]variable{
	"sender_host_address": {milter.StageConnect, func(e *evalCtx) string {
		if a := e.s.Identity.ClientAddr; a.IsValid() {
			return a.String()
		}
		return ""
	}},
	"sender_host_port": {milter.StageConnect, func(e *evalCtx) string {
		if p := e.s.Identity.ClientPort; p != 0 {
			return strconv.Itoa(int(p))
		}
		return ""
	}},
	"sender_host_authenticated": {milter.StageConnect, func(e *evalCtx) string { return e.s.Identity.AuthMechanism }},
	"received_ip_address":       {milter.StageConnect, func(e *evalCtx) string { return addrString(e.s.Identity.DaemonAddr) }},
	"received_port":             {milter.StageConnect, func(e *evalCtx) string { return portString(e.s.Identity.DaemonPort) }},
	"proxy_session": {milter.StageConnect, func(e *evalCtx) string {
		if e.s.Identity.ProxySession {
			return "yes"
		}
		return "no"
	}},
	"proxy_local_address":    {milter.StageConnect, func(e *evalCtx) string { return addrString(e.s.Identity.ProxyLocalAddr) }},
	"proxy_local_port":       {milter.StageConnect, func(e *evalCtx) string { return portString(e.s.Identity.ProxyLocalPort) }},
	"proxy_external_address": {milter.StageConnect, func(e *evalCtx) string { return addrString(e.s.Identity.ProxyExternalAddr) }},
	"proxy_external_port":    {milter.StageConnect, func(e *evalCtx) string { return portString(e.s.Identity.ProxyExternalPort) }},
	"sender_host_name":       {milter.StageConnect, func(e *evalCtx) string { return e.s.Identity.ClientName }},
	"sender_helo_name":       {milter.StageHelo, func(e *evalCtx) string { return e.s.Identity.Helo }},
	"authenticated_id":       {milter.StageConnect, func(e *evalCtx) string { return e.s.Identity.AuthLogin }},
	"primary_hostname":       {milter.StageConnect, func(e *evalCtx) string { return e.s.Identity.MTAName }},
	"sender_address":         {milter.StageMail, func(e *evalCtx) string { return e.t.Sender }},
	"sender_address_domain":  {milter.StageMail, func(e *evalCtx) string { return milter.Domain(e.t.Sender) }},
	"sender_address_local_part": {milter.StageMail, func(e *evalCtx) string {
		if e.t.Sender == "" {
			return ""
		}
		return milter.LocalPart(e.t.Sender)
	}},
	"queue_id":   {milter.StageMail, func(e *evalCtx) string { return e.t.QueueID }},
	"recipient":  {milter.StageRcpt, func(e *evalCtx) string { return e.r.Addr }},
	"local_part": {milter.StageRcpt, func(e *evalCtx) string { return milter.LocalPart(e.r.Addr) }},
	"domain":     {milter.StageRcpt, func(e *evalCtx) string { return milter.Domain(e.r.Addr) }},
	"rcpt_count": {milter.StageRcpt, func(e *evalCtx) string { return strconv.Itoa(len(e.t.Rcpts)) }},
	"recipients_count": {milter.StageRcpt, func(e *evalCtx) string {
		return strconv.Itoa(len(e.t.AcceptedRcpts()))
	}},
	"srs_status":    {milter.StageRcpt, func(e *evalCtx) string { return srsRcpt(e).Status }},
	"srs_recipient": {milter.StageRcpt, func(e *evalCtx) string { return srsRcpt(e).Recipient }},
	"srs_orig_recipient": {milter.StageRcpt, func(e *evalCtx) string {
		if e.r.SRS == nil {
			return ""
		}
		return e.r.Addr
	}},
	"srs_db_key": {milter.StageRcpt, func(e *evalCtx) string { return srsRcpt(e).DBKey }},
	"srs_db_address": {milter.StageRcpt, func(e *evalCtx) string {
		if r := srsRcpt(e); r.DBKey != "" {
			return r.Recipient
		}
		return ""
	}},
	"srs_orig_sender": {milter.StageMail, func(e *evalCtx) string {
		if e.t.SRS.OrigSender != "" {
			return e.t.SRS.OrigSender
		}
		return e.t.Sender
	}},
	"dcc_result":   {milter.StageData, func(e *evalCtx) string { return e.t.DCC.Result }},
	"dcc_header":   {milter.StageData, func(e *evalCtx) string { return e.t.DCC.Header }},
	"message_size": {milter.StageData, func(e *evalCtx) string { return strconv.FormatInt(e.t.Size(), 10) }},
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

// stageOrder places the data stage after rcpt for "available from" checks.
func stageOrder(s milter.Stage) int {
	for i, p := range milter.PolicyStages {
		if p == s {
			return i
		}
	}
	return len(milter.PolicyStages)
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
			if name[4] == 'm' && stageOrder(stage) < stageOrder(milter.StageMail) {
				d.errorf(s.Line, "%s: $%s is a message variable, not available at %s", where, name, stage)
			}
		} else if va, ok := variables[name]; !ok {
			d.errorf(s.Line, "%s: unknown variable $%s", where, name)
		} else if stageOrder(va.from) > stageOrder(stage) {
			d.errorf(s.Line, "%s: $%s has no value yet at %s (from %s on)", where, name, stage, va.from)
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
	if len(t.parts) == 1 && t.parts[0].variable == "" {
		return t.parts[0].literal
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.variable == "" {
			b.WriteString(p.literal)
			continue
		}
		b.WriteString(strings.Map(func(r rune) rune {
			if r == '\r' || r == '\n' || r == 0 {
				return ' '
			}
			return r
		}, e.lookup(p.variable)))
	}
	return b.String()
}

func (e *evalCtx) lookup(name string) string {
	if aclVarName.MatchString(name) {
		if name[4] == 'c' {
			return e.s.Vars[name]
		}
		if e.t != nil {
			return e.t.Vars[name]
		}
		return ""
	}
	return variables[name].value(e)
}
