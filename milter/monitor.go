package milter

import (
	"fmt"
	"slices"
	"strings"

	gomilter "github.com/d--j/go-milter"
)

// Monitor mode is for rolling tollgate out on a live MX (authentication_milter's
// dryrun): every module runs and the whole policy decides as usual, the
// decisions are logged ("decision=would_reject") and counted
// (tollgate_monitor_decisions_total), but the MTA is told to go on at every
// stage and nothing of the message or its envelope changes. An optional
// header says what would have happened.
//
// The decisions are made here, at the edge to the MTA, so that no module and
// no rule needs to know about the mode; what a stage would have ended
// (a refused connection, a refused MAIL) is remembered so that later stages of
// that session or message are not judged again, as they would never have
// happened.

// Monitor is how a configuration runs.
type Monitor struct {
	On bool
	// Header is the name of a header added to each message that tells what
	// would have happened to it; empty for none.
	Header string
}

// MonitorRuntime is implemented by a Runtime that can run in monitor mode;
// one that does not always enforces.
type MonitorRuntime interface {
	Monitor() Monitor
}

func monitorOf(rt Runtime) Monitor {
	if m, ok := rt.(MonitorRuntime); ok {
		return m.Monitor()
	}
	return Monitor{}
}

// monitorDecisions are the label values of tollgate_monitor_decisions_total:
// the verdicts that would have stopped or changed something, and a quarantine.
var monitorDecisions = []string{"reject", "tempfail", "discard", "drop", "quarantine"}

// would is one decision monitor mode did not carry out.
type would struct {
	stage    Stage
	decision string // one of monitorDecisions
	rcpt     string // the recipient, for rcpt-stage decisions
	d        Decision
}

// monitorState is what monitor mode remembers of a connection.
type monitorState struct {
	mode Monitor
	// session is the decision that would have ended the SMTP session
	// (connect, helo, or a drop): the messages that follow are not judged.
	session *would
	// message is the decision that would have ended the current message
	// before its end (at mail, or a drop at rcpt).
	message *would
	// woulds are the decisions of the current message not carried out.
	woulds []would
}

// decided reports whether a decision already ended the session or the
// message in monitor mode: the stages that follow are not judged.
func (m *monitorState) decided() bool { return m.session != nil || m.message != nil }

// decision is the would-be decision that ended the message or the session.
func (m *monitorState) decision() *would {
	if m.message != nil {
		return m.message
	}
	return m.session
}

// verdictName is a decision's name in logs: would_reject in monitor mode.
func (c *connection) verdictName(d Decision) string {
	if c.mon.mode.On && d.Final() {
		return "would_" + d.Verdict.String()
	}
	return d.Verdict.String()
}

// monitorReply records a final decision instead of sending it, and tells the
// MTA to go on.
func (c *connection) monitorReply(stage Stage, d Decision, r *Recipient) *gomilter.Response {
	w := c.recordWould(stage, d.Verdict.String(), d, r)
	switch {
	case stage == StageConnect || stage == StageHelo || d.Verdict == Drop:
		c.mon.session = &w
		c.mon.message = &w
	case stage == StageMail:
		c.mon.message = &w
	}
	if stage == StageData {
		return gomilter.RespAccept
	}
	return gomilter.RespContinue
}

func (c *connection) recordWould(stage Stage, decision string, d Decision, r *Recipient) would {
	w := would{stage: stage, decision: decision, d: d}
	if r != nil {
		w.rcpt = r.Addr
	}
	c.mon.woulds = append(c.mon.woulds, w)
	c.srv.metrics.MonitorDecisions.WithLabelValues(stage.String(), decision).Inc()
	return w
}

// monitorEnd ends a message in monitor mode: it records what the end of
// message would have done (record is false when an earlier stage decided and
// was recorded then), adds the monitor header, and accepts the message
// unchanged.
func (c *connection) monitorEnd(m gomilter.Modifier, t *Txn, d Decision, record bool) (*gomilter.Response, error) {
	if record && d.Final() {
		c.recordWould(StageData, d.Verdict.String(), d, nil)
	}
	if !d.Final() && t.Mutations.Quarantine != "" {
		c.recordWould(StageData, "quarantine", Decision{Verdict: Accept, Reason: t.Mutations.Quarantine}, nil)
	}
	t.Decision = d
	if fields := c.monitorHeaders(); len(fields) > 0 {
		header := Mutations{Append: fields}
		if err := header.Apply(m, nil, t.Rcpts, c.leadingSpace); err != nil {
			c.srv.metrics.MTAErrors.WithLabelValues("modify").Inc()
			c.srv.log.Error("sending changes to the MTA failed", "session", c.sess.ID, "queue_id", t.QueueID, "err", err)
			t.Decision = Decision{Verdict: TempFail, Rule: "mta_error", Reason: err.Error()}
			c.finish(t.Decision, false)
			return nil, err
		}
	}
	c.finish(d, false)
	return gomilter.RespAccept, nil
}

// maxMonitorHeader keeps each monitor header well inside RFC 5322's 998
// characters a line.
const maxMonitorHeader = 900

// monitorHeaders are the header fields that tell what would have happened,
// one per decision: "reject at rcpt <carol@example.net>: 550 5.7.1 relay not
// permitted (rule relay)".
func (c *connection) monitorHeaders() []HeaderField {
	if c.mon.mode.Header == "" {
		return nil
	}
	all := c.mon.woulds
	if s := c.mon.session; s != nil && !slices.Contains(all, *s) {
		// A refused connection is judged once, and told in every message of it.
		all = append([]would{*s}, all...)
	}
	var out []HeaderField
	for _, w := range all {
		var b strings.Builder
		fmt.Fprintf(&b, "%s at %s", w.decision, w.stage)
		if w.rcpt != "" {
			b.WriteString(" <" + w.rcpt + ">")
		}
		what := w.d.Reason
		if w.d.Final() {
			rep := w.d.Reply
			if rep.IsZero() {
				rep = DefaultReply(w.d.Verdict)
			}
			if !rep.IsZero() {
				what = rep.String()
			}
		}
		if what != "" {
			b.WriteString(": " + what)
		}
		if w.d.Rule != "" {
			b.WriteString(" (rule " + w.d.Rule + ")")
		}
		out = append(out, HeaderField{Name: c.mon.mode.Header, Value: headerSafe(b.String())})
	}
	return out
}

// headerSafe makes text one header line: rule texts come from the policy and
// the message, and may hold anything.
func headerSafe(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxMonitorHeader {
		s = strings.ToValidUTF8(s[:maxMonitorHeader], "") // no sequence cut in two
	}
	return s
}

// suppressed says what changes monitor mode left out, for the summary line:
// "add_header:3,del_rcpt:1,change_from".
func suppressed(m *Mutations, rcpts []*Recipient) string {
	var parts []string
	count := func(name string, n int) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s:%d", name, n))
		}
	}
	count("add_header", len(m.ARCSet)+len(m.AuthResults)+len(m.Prepend)+len(m.Append))
	count("change_header", len(m.Changes))
	count("remove_header", len(m.RemoveHeaders)+len(m.RemoveAll))
	if m.Envelope.Sender() != nil {
		parts = append(parts, "change_from")
	}
	del, add := m.Envelope.Resolve(rcpts)
	count("del_rcpt", len(del))
	count("add_rcpt", len(add))
	if m.Quarantine != "" {
		parts = append(parts, "quarantine")
	}
	return strings.Join(parts, ",")
}
