package milter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	gomilter "github.com/d--j/go-milter"
)

// connection adapts one go-milter connection to the pipeline: it builds the
// session and transactions, runs the hooks and the policy per stage, and turns
// decisions into milter replies.
type connection struct {
	srv    *Server
	sess   *Session
	txn    *Txn
	ctx    context.Context
	cancel context.CancelFunc

	protocol     gomilter.OptProtocol
	leadingSpace bool
	keepHeaders  bool
	// Whether any module streams headers or the body: without one, those
	// callbacks only count bytes.
	headerHooks, bodyHooks, eohHooks bool
	// pending is the first failure or rejection seen while headers and body
	// streamed; those stages send no reply, so it is decided at end of message.
	pending *Decision
	// overLimit is the on_error decision of a message whose header section
	// went past max_headers or max_header_bytes: nothing more of it is kept
	// and no module judges it.
	overLimit *Decision
	headers   int // header fields of the current message
	// mon is monitor mode's state: decisions made but not carried out.
	mon monitorState
	// connected is set once Connect ran: a later Connect or a QUIT_NC starts
	// a new SMTP session on this milter connection.
	connected bool
}

// NewConnection is called once after negotiation and again on QUIT_NC, when
// the MTA reuses the milter connection for another SMTP session: nothing of
// the previous one may remain.
func (c *connection) NewConnection(gomilter.Modifier) error {
	if c.connected {
		c.newSession()
	}
	return nil
}

// newSession replaces the session (identity, macros taken from it, acl_c_*
// variables) with a fresh one for the next SMTP session.
func (c *connection) newSession() {
	if c.txn != nil {
		c.finish(Decision{}, true)
	}
	c.sess = &Session{ID: c.srv.nextID.Add(1), runtime: c.sess.runtime, Vars: map[string]string{}}
	c.mon = monitorState{mode: c.mon.mode}
	c.connected = false
	c.srv.metrics.Sessions.Inc()
}

func (c *connection) Connect(host, family string, port uint16, addr string, m gomilter.Modifier) (*gomilter.Response, error) {
	if c.connected {
		c.newSession()
	}
	c.connected = true
	id := &c.sess.Identity
	id.fromConnect(host, family, port, addr)
	id.fromMacros(m)
	id.classify(c.sess.runtime.Identity())
	switch {
	case id.ProxyHandoff:
		// The proxy's own session before XCLIENT: Postfix replaces it with the
		// client's as soon as XCLIENT arrives, so it is never judged or counted.
		c.srv.metrics.ProxySessions.WithLabelValues("handoff").Inc()
		c.srv.log.Debug("proxy handoff session", "session", c.sess.ID, "proxy", id.Client(), "daemon", id.DaemonName)
		return gomilter.RespContinue, nil
	case id.ProxySession:
		c.srv.metrics.ProxySessions.WithLabelValues("proxied").Inc()
	}
	d := c.runStage(StageConnect, nil, nil, func(mod Module) hook {
		h, ok := mod.(ConnectHook)
		if !ok {
			return nil
		}
		return func(ctx context.Context) error { return h.Connect(ctx, c.sess) }
	})
	if d.Final() {
		attrs := []any{"session", c.sess.ID, "client", c.sess.Identity.Client(), "decision", c.verdictName(d),
			"reply", d.Reply.String(), "rule", d.Rule}
		if d.Reason != "" {
			attrs = append(attrs, "reason", d.Reason)
		}
		c.srv.log.Info("connection refused", attrs...)
	}
	return c.reply(StageConnect, d, nil)
}

func (c *connection) Helo(name string, m gomilter.Modifier) (*gomilter.Response, error) {
	c.sess.Identity.Helo = name
	c.sess.Identity.fromMacros(m)
	if c.sess.Identity.ProxyHandoff {
		return gomilter.RespContinue, nil
	}
	d := c.runStage(StageHelo, nil, nil, func(mod Module) hook {
		h, ok := mod.(HeloHook)
		if !ok {
			return nil
		}
		return func(ctx context.Context) error { return h.Helo(ctx, c.sess) }
	})
	return c.reply(StageHelo, d, nil)
}

func (c *connection) MailFrom(from, esmtpArgs string, m gomilter.Modifier) (*gomilter.Response, error) {
	if c.txn != nil {
		c.finish(Decision{}, true)
	}
	id := &c.sess.Identity
	id.fromMacros(m)
	if !id.checkLogin() {
		c.srv.metrics.UntrustedLogins.Inc()
		c.srv.warnLog.Warn("XCLIENT login off the proxy path ignored", "session", c.sess.ID, "client", id.Client(),
			"login", id.UntrustedLogin, "daemon", id.DaemonName)
	}
	c.sess.Messages++
	c.pending = nil
	t := &Txn{
		Session:      c.sess,
		QueueID:      m.Get("i"),
		Sender:       from,
		SenderArgs:   esmtpArgs,
		Started:      time.Now(),
		leadingSpace: c.leadingSpace,
	}
	c.txn = t
	if id.ProxyHandoff {
		c.srv.metrics.ProxySessions.WithLabelValues("without_xclient").Inc()
		if d := c.sess.runtime.Identity().WithoutXClient; d.Verdict != Continue {
			resp, err := c.reply(StageMail, d, nil)
			if !c.mon.mode.On {
				c.finish(d, false)
			}
			return resp, err
		}
	}
	d := c.runStage(StageMail, t, nil, func(mod Module) hook {
		h, ok := mod.(MailHook)
		if !ok {
			return nil
		}
		return func(ctx context.Context) error { return h.Mail(ctx, t) }
	})
	resp, err := c.reply(StageMail, d, nil)
	if d.Final() && !c.mon.mode.On {
		c.finish(d, false)
	}
	return resp, err
}

func (c *connection) RcptTo(rcptTo, esmtpArgs string, m gomilter.Modifier) (*gomilter.Response, error) {
	t := c.txn
	if t == nil {
		return gomilter.RespContinue, nil
	}
	if t.QueueID == "" {
		t.QueueID = m.Get("i")
	}
	r := &Recipient{Addr: rcptTo, Args: esmtpArgs, Index: len(t.Rcpts)}
	t.Rcpts = append(t.Rcpts, r)
	d := c.runStage(StageRcpt, t, r, func(mod Module) hook {
		h, ok := mod.(RcptHook)
		if !ok {
			return nil
		}
		return func(ctx context.Context) error { return h.Rcpt(ctx, t, r) }
	})
	r.Decision = d
	if c.mon.mode.On {
		c.srv.metrics.Recipients.WithLabelValues("accept").Inc() // what the MTA was told
	} else {
		c.srv.metrics.Recipients.WithLabelValues(rcptResult(d.Verdict)).Inc()
	}
	if d.Final() {
		c.logRecipient(t, r, d)
	}
	return c.reply(StageRcpt, d, r)
}

// logRecipient writes one line for a recipient refused or discarded at RCPT,
// as it happens: a client that gives up after the refusal leaves no other
// trace of the address. The queue id is there once the MTA has one (Sendmail
// from MAIL on, Postfix once a recipient was accepted).
func (c *connection) logRecipient(t *Txn, r *Recipient, d Decision) {
	msg := "recipient refused"
	if d.Verdict == Discard {
		msg = "recipient discarded"
	}
	attrs := make([]slog.Attr, 0, 10)
	attrs = append(attrs, slog.Uint64("session", c.sess.ID))
	if t.QueueID != "" {
		attrs = append(attrs, slog.String("queue_id", t.QueueID))
	}
	attrs = append(attrs,
		slog.String("client", c.sess.Identity.Client()),
		slog.String("sender", "<"+t.Sender+">"),
		slog.String("recipient", "<"+r.Addr+">"),
		slog.String("decision", c.verdictName(d)))
	attrs = appendOutcome(attrs, d)
	c.srv.log.LogAttrs(c.ctx, slog.LevelInfo, msg, attrs...)
}

// appendOutcome adds the reply, rule and reason of a decision.
func appendOutcome(attrs []slog.Attr, d Decision) []slog.Attr {
	if d.Final() {
		rep := d.Reply
		if rep.IsZero() {
			rep = DefaultReply(d.Verdict)
		}
		if !rep.IsZero() {
			attrs = append(attrs, slog.String("reply", rep.String()))
		}
	}
	if d.Rule != "" {
		attrs = append(attrs, slog.String("rule", d.Rule))
	}
	if d.Reason != "" {
		attrs = append(attrs, slog.String("reason", d.Reason))
	}
	return attrs
}

// maxLoggedRcpts bounds each recipient list of a summary line: Postfix takes
// up to 1000 recipients a message, and syslog cuts lines past a few KiB. The
// refused ones each have their own line as well.
const maxLoggedRcpts = 20

// rcptList writes addresses as "<a>,<b>", the rest past maxLoggedRcpts as a count.
func rcptList(addrs []string) string {
	var b strings.Builder
	for i, a := range addrs {
		if i == maxLoggedRcpts {
			fmt.Fprintf(&b, ",+%d more", len(addrs)-i)
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("<" + a + ">")
	}
	return b.String()
}

func rcptResult(v Verdict) string {
	switch v {
	case Continue, Accept:
		return "accept"
	case Drop:
		return "drop"
	}
	return v.String()
}

func (c *connection) Data(gomilter.Modifier) (*gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

func (c *connection) Header(name, value string, m gomilter.Modifier) (*gomilter.Response, error) {
	t := c.txn
	if t == nil {
		return gomilter.RespContinue, nil
	}
	if c.overLimit != nil {
		return gomilter.RespContinue, nil
	}
	c.headers++
	size := int64(len(name) + 1 + len(value) + 2)
	if lim := c.srv.limits(); c.headers > lim.MaxHeaders || t.HeaderBytes+size > lim.MaxHeaderBytes {
		limit, reason := limitHeaders, fmt.Sprintf("more than %d header fields", lim.MaxHeaders)
		if c.headers <= lim.MaxHeaders {
			limit, reason = limitHeaderBytes, fmt.Sprintf("header section larger than %d bytes", lim.MaxHeaderBytes)
		}
		d := c.sess.runtime.OnError()
		d.Rule, d.Reason = "limits", reason
		c.overLimit = &d
		t.Headers = nil // what was kept is incomplete now: let it go
		c.srv.limitHit(limit, "message header section over the limit; the message gets on_error",
			"session", c.sess.ID, "queue_id", t.QueueID, "decision", d.Verdict.String())
		return gomilter.RespContinue, nil
	}
	h := Header{Name: name, Value: value}
	if c.keepHeaders {
		t.Headers = append(t.Headers, h)
	}
	t.HeaderBytes += size
	if !c.leadingSpace {
		t.HeaderBytes++ // the space the MTA swallowed
	}
	c.removeForgedAuthResults(t, h)
	if !c.headerHooks {
		return gomilter.RespContinue, nil
	}
	c.stream(StageHeader, func(mod Module) hook {
		hh, ok := mod.(HeaderHook)
		if !ok {
			return nil
		}
		return func(ctx context.Context) error { return hh.Header(ctx, t, h) }
	})
	return gomilter.RespContinue, nil
}

func (c *connection) Headers(gomilter.Modifier) (*gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

func (c *connection) BodyChunk(chunk []byte, m gomilter.Modifier) (*gomilter.Response, error) {
	t := c.txn
	if t == nil {
		return gomilter.RespContinue, nil
	}
	t.BodyBytes += int64(len(chunk))
	if c.overLimit != nil || c.mon.decided() {
		return gomilter.RespContinue, nil
	}
	c.endOfHeaders(t)
	t.WriteBody(chunk)
	if !c.bodyHooks {
		return gomilter.RespContinue, nil
	}
	c.stream(StageBody, func(mod Module) hook {
		b, ok := mod.(BodyHook)
		if !ok {
			return nil
		}
		return func(ctx context.Context) error { return b.Body(ctx, t, chunk) }
	})
	return gomilter.RespContinue, nil
}

// endOfHeaders runs the EndOfHeaders hooks once per message, before the
// body reaches anyone; their failures are kept for end of message, as
// streamed ones are.
func (c *connection) endOfHeaders(t *Txn) {
	if t.eohDone {
		return
	}
	t.eohDone = true
	if !c.eohHooks {
		return
	}
	for _, mod := range c.sess.runtime.Modules() {
		d, failed := c.callModule(StageHeader, mod, func(mod Module) hook {
			h, ok := mod.(EndOfHeadersHook)
			if !ok {
				return nil
			}
			return func(ctx context.Context) error { return h.EndOfHeaders(ctx, t) }
		})
		if failed && c.pending == nil {
			c.pending = &d
		}
	}
}

// endBody closes the shared body hashes before the end-of-message hooks
// read them, and counts the canonicalization passes that ran.
func (c *connection) endBody(t *Txn) {
	c.endOfHeaders(t)
	for _, canon := range t.EndBody() {
		c.srv.metrics.BodyCanonicalizations.WithLabelValues(canon.String()).Inc()
	}
}

// stream runs header or body hooks. Their failures are kept for end of message.
func (c *connection) stream(stage Stage, find func(Module) hook) {
	if c.mon.decided() {
		return
	}
	start := time.Now()
	for _, mod := range c.sess.runtime.Modules() {
		d, failed := c.callModule(stage, mod, find)
		if failed && c.pending == nil {
			c.pending = &d
		}
	}
	c.srv.metrics.stage(stage).Observe(time.Since(start).Seconds())
}

func (c *connection) EndOfMessage(m gomilter.Modifier) (*gomilter.Response, error) {
	t := c.txn
	if t == nil {
		return gomilter.RespAccept, nil
	}
	if q := m.Get("i"); q != "" {
		t.QueueID = q
	}
	c.srv.metrics.MessageBytes.Observe(float64(t.Size()))
	if c.overLimit != nil {
		// Modules saw an incomplete header section: none of them acts on the
		// message, and an accepting on_error passes it unchanged.
		d := *c.overLimit
		if d.Verdict == Continue {
			d.Verdict = Accept
		}
		if c.mon.mode.On {
			return c.monitorEnd(m, t, d, true)
		}
		t.Decision = d
		resp, err := c.reply(StageData, d, nil)
		c.finish(d, false)
		return resp, err
	}
	if c.mon.mode.On {
		// In monitor mode a message can get here that an earlier stage would
		// have ended: it is not judged again.
		if w := c.mon.decision(); w != nil {
			return c.monitorEnd(m, t, w.d, false)
		}
		if len(t.Rcpts) > 0 && len(t.AcceptedRcpts()) == 0 {
			return c.monitorEnd(m, t, abortedDecision(t), false)
		}
	}
	start := time.Now()
	stopProgress := c.keepAlive(m)
	c.endBody(t)
	var d Decision
	if c.pending != nil && c.pending.Final() {
		d = *c.pending
	} else {
		// A streamed failure whose on_error lets the message through: the
		// policy still runs.
		d = c.runStage(StageData, t, nil, func(mod Module) hook {
			h, ok := mod.(EndOfMessageHook)
			if !ok {
				return nil
			}
			return func(ctx context.Context) error { return h.EndOfMessage(ctx, t) }
		})
	}
	d = c.discardedRecipients(t, d)
	if d.Verdict == Continue {
		d.Verdict = Accept // at end of message, nothing decided means accepted
	}
	t.Decision = d
	for _, mod := range c.sess.runtime.Modules() {
		fd, failed := c.callModule(StageData, mod, func(mod Module) hook {
			h, ok := mod.(FinalizeHook)
			if !ok {
				return nil
			}
			return func(ctx context.Context) error { return h.Finalize(ctx, t, d) }
		})
		if failed && fd.Final() && (d.Verdict == Accept || d.Verdict == Continue) {
			// The message would leave without what this module had to add
			// (an ARC seal, an SRS sender): the failure decides, and later
			// finalizers must not act on an accept that no longer holds.
			d = fd
			t.Decision = d
			break
		}
	}
	if d.Verdict == Accept && t.Mutations.Envelope.DropsAll(t.Rcpts) {
		// Each module that drops recipients (BMI, DCC, SRS) sees only its own
		// drops when it finalizes: the one owner of the envelope tells when
		// together they left nobody, and that is a discard, not an accept
		// with every recipient deleted.
		d = Decision{Verdict: Discard, Rule: d.Rule, Reason: "every recipient was dropped"}
		t.Decision = d
	}
	stopProgress()
	if c.mon.mode.On {
		c.srv.metrics.stage(StageData).Observe(time.Since(start).Seconds())
		return c.monitorEnd(m, t, d, true)
	}
	if d.Verdict == Accept || d.Verdict == Continue {
		if err := t.Mutations.Apply(m, t.Headers, t.Rcpts, c.leadingSpace); err != nil {
			// The MTA connection is unusable or refused a change it had granted:
			// failing the milter connection makes the MTA apply its
			// milter_default_action, which never loses the message.
			c.srv.metrics.MTAErrors.WithLabelValues("modify").Inc()
			c.srv.log.Error("sending changes to the MTA failed", "session", c.sess.ID, "queue_id", t.QueueID, "err", err)
			t.Decision = Decision{Verdict: TempFail, Rule: "mta_error", Reason: err.Error()}
			c.finish(t.Decision, false)
			return nil, err
		}
	}
	c.srv.metrics.stage(StageData).Observe(time.Since(start).Seconds())
	resp, err := c.reply(StageData, d, nil)
	c.finish(d, false)
	return resp, err
}

// keepAlive sends progress packets until the returned function is called,
// which must happen before anything else is written to the MTA.
func (c *connection) keepAlive(m gomilter.Modifier) func() {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(c.srv.progressInterval)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if err := m.Progress(); err != nil && !errors.Is(err, gomilter.ErrVersionTooLow) {
					return
				}
			}
		}
	}()
	return func() {
		select {
		case <-stop:
		default:
			close(stop)
			<-done
		}
	}
}

// discardedRecipients applies rcpt-stage discards: those recipients are
// deleted, and a message left with none is discarded as a whole.
func (c *connection) discardedRecipients(t *Txn, d Decision) Decision {
	if d.Verdict != Accept && d.Verdict != Continue {
		return d
	}
	kept, discarded := 0, 0
	var last Decision
	for _, r := range t.Rcpts {
		switch r.Decision.Verdict {
		case Discard:
			discarded++
			last = r.Decision
		case Continue, Accept:
			kept++
		}
	}
	if discarded == 0 {
		return d
	}
	if kept == 0 {
		return Decision{Verdict: Discard, Rule: last.Rule, Reason: "every recipient was discarded"}
	}
	for _, r := range t.Rcpts {
		if r.Decision.Verdict == Discard {
			t.Mutations.Envelope.Drop(r, "rcpt_discard")
		}
	}
	return d
}

func (c *connection) Abort(gomilter.Modifier) error {
	if c.txn != nil {
		c.finish(Decision{}, true)
	}
	return nil
}

func (c *connection) Unknown(string, gomilter.Modifier) (*gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

func (c *connection) Cleanup(gomilter.Modifier) {
	if c.txn != nil {
		c.finish(Decision{}, true)
	}
	c.cancel()
	c.srv.metrics.SessionsActive.Dec()
	c.srv.sessionDone()
	release(c.sess.runtime)
}

// runStage runs the hooks of a deciding stage and then the policy of that stage.
func (c *connection) runStage(stage Stage, t *Txn, r *Recipient, find func(Module) hook) Decision {
	if c.mon.decided() {
		return Decision{} // monitor mode: this stage would not have happened
	}
	start := time.Now()
	defer func() {
		c.srv.metrics.stage(stage).Observe(time.Since(start).Seconds())
	}()
	for _, mod := range c.sess.runtime.Modules() {
		if d, failed := c.callModule(stage, mod, find); failed && d.Final() {
			return d
		}
	}
	if stage == StageData {
		WriteAuthResults(t, authResultsConfig(c.sess.runtime))
	}
	d, err := c.evaluate(stage, t, r)
	if err != nil {
		c.srv.metrics.PolicyErrors.WithLabelValues(stage.String()).Inc()
		od := c.sess.runtime.OnError()
		od.Reason = err.Error()
		c.srv.warnLog.Error("policy evaluation failed", "session", c.sess.ID, "stage", stage.String(),
			"queue_id", queueID(t), "decision", od.Verdict.String(), "err", err)
		return od
	}
	return d
}

func (c *connection) evaluate(stage Stage, t *Txn, r *Recipient) (d Decision, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("policy: panic: %v", p)
			c.srv.log.Error("policy panic", "stage", stage.String(), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		}
	}()
	return c.sess.runtime.Evaluate(c.ctx, stage, c.sess, t, r)
}

// callModule runs one hook with timing, panic recovery and error accounting.
// It reports the decision the call led to and whether it was a failure or a
// rejection (either of which the caller must act on).
func (c *connection) callModule(stage Stage, mod Module, find func(Module) hook) (d Decision, failed bool) {
	h := find(mod)
	if h == nil {
		return Decision{}, false
	}
	start := time.Now()
	err := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = &modulePanic{value: p, stack: debug.Stack()}
			}
		}()
		return h(c.ctx)
	}()
	c.srv.metrics.ModuleDuration.WithLabelValues(mod.Name(), stage.String()).Observe(time.Since(start).Seconds())
	if err == nil {
		return Decision{}, false
	}
	var rej *Rejection
	if errors.As(err, &rej) {
		d = rej.Decision
		if d.Rule == "" {
			d.Rule = "module:" + mod.Name()
		}
		return d, true
	}
	kind := "error"
	var mp *modulePanic
	if errors.As(err, &mp) {
		kind = "panic"
	}
	c.srv.metrics.ModuleErrors.WithLabelValues(mod.Name(), kind).Inc()
	d = c.sess.runtime.OnError()
	d.Reason = mod.Name() + ": " + err.Error()
	attrs := []any{"session", c.sess.ID, "module", mod.Name(), "stage", stage.String(), "queue_id", queueID(c.txn),
		"decision", d.Verdict.String(), "err", err}
	if mp != nil {
		attrs = append(attrs, "stack", string(mp.stack))
	}
	c.srv.warnLog.Error("module failed", attrs...)
	return d, true
}

// hook is one module's hook for a stage, bound to its arguments.
type hook func(ctx context.Context) error

type modulePanic struct {
	value any
	stack []byte
}

func (p *modulePanic) Error() string { return fmt.Sprintf("panic: %v", p.value) }

func queueID(t *Txn) string {
	if t == nil {
		return ""
	}
	return t.QueueID
}

// reply turns a decision into the milter response for a stage.
func (c *connection) reply(stage Stage, d Decision, r *Recipient) (*gomilter.Response, error) {
	if c.mon.mode.On && d.Final() {
		return c.monitorReply(stage, d, r), nil
	}
	switch d.Verdict {
	case Continue:
		return gomilter.RespContinue, nil
	case Accept:
		if stage == StageData {
			return gomilter.RespAccept, nil
		}
		// Exim's accept ends the stage's ACL, not the whole message.
		return gomilter.RespContinue, nil
	case Discard:
		if stage == StageRcpt {
			return gomilter.RespContinue, nil // deleted at end of message
		}
		return gomilter.RespDiscard, nil
	}
	rep := d.Reply
	if rep.Code == 0 {
		def := DefaultReply(d.Verdict)
		rep.Code = def.Code
		if rep.Enhanced == "" && rep.Text == "" {
			rep = def
		}
	}
	text := rep.Text
	if rep.Enhanced != "" {
		text = strings.TrimSpace(rep.Enhanced + " " + text)
	}
	resp, err := gomilter.RejectWithCodeAndReason(uint16(rep.Code), text)
	if err != nil {
		// Only an oversized text gets here: fall back to the MTA's own reply.
		c.srv.warnLog.Warn("reply not sendable, using the MTA's default reply", "reply", rep.String(), "err", err)
		if d.Verdict == Reject {
			return gomilter.RespReject, nil
		}
		return gomilter.RespTempFail, nil
	}
	return resp, nil
}

// finish ends the current transaction: the summary line and the message metrics.
func (c *connection) finish(d Decision, aborted bool) {
	t := c.txn
	c.txn = nil
	c.pending, c.overLimit, c.headers = nil, nil, 0
	if t == nil {
		return
	}
	for _, mod := range c.sess.runtime.Modules() {
		if h, ok := mod.(TxnEndHook); ok {
			func() {
				defer func() {
					if p := recover(); p != nil {
						c.srv.metrics.ModuleErrors.WithLabelValues(mod.Name(), "panic").Inc()
						c.srv.log.Error("module panic at end of message", "module", mod.Name(), "panic", fmt.Sprint(p))
					}
				}()
				h.TxnEnd(t)
			}()
		}
	}
	if aborted {
		d = abortedDecision(t)
		if w := c.mon.decision(); w != nil {
			d = w.d
		}
	}
	decision := d.Verdict.String()
	if aborted && d.Verdict == Continue {
		decision = "aborted"
	} else if d.Verdict == Continue {
		decision = "accept"
	}
	told := decision // what the MTA was told
	if c.mon.mode.On && d.Final() {
		decision = "would_" + decision
		told = "accept"
		if aborted {
			told = "aborted"
		}
	}
	c.mon.message, c.mon.woulds = nil, nil
	c.srv.metrics.Messages.WithLabelValues(told).Inc()
	var to, discarded, refused []string
	for _, r := range t.Rcpts {
		switch {
		case r.Decision.Verdict == Discard:
			discarded = append(discarded, r.Addr)
		case r.Accepted():
			to = append(to, r.Addr)
		default:
			refused = append(refused, r.Addr)
		}
	}
	id := &c.sess.Identity
	attrs := make([]slog.Attr, 0, 24)
	if t.QueueID != "" {
		attrs = append(attrs, slog.String("queue_id", t.QueueID))
	}
	attrs = append(attrs,
		slog.String("client", id.Client()),
		slog.String("helo", id.Helo),
		slog.String("sender", "<"+t.Sender+">"),
		slog.Int("rcpts", len(to)+len(discarded)),
	)
	if len(refused) > 0 {
		attrs = append(attrs, slog.Int("rcpts_rejected", len(refused)))
	}
	if len(to) > 0 {
		attrs = append(attrs, slog.String("to", rcptList(to)))
	}
	if len(discarded) > 0 {
		attrs = append(attrs, slog.String("discarded_to", rcptList(discarded)))
	}
	if len(refused) > 0 {
		attrs = append(attrs, slog.String("rejected_to", rcptList(refused)))
	}
	if id.AuthLogin != "" {
		attrs = append(attrs, slog.String("login", id.AuthLogin))
	}
	if id.ProxySession {
		proxy := "yes"
		if id.ProxyLocalAddr.IsValid() {
			proxy = id.ProxyLocalAddr.String()
		}
		attrs = append(attrs, slog.String("proxy", proxy))
	} else if id.ProxyHandoff {
		attrs = append(attrs, slog.String("proxy", "without_xclient"))
	}
	if c.mon.mode.On {
		attrs = append(attrs, slog.String("mode", "monitor"))
	}
	attrs = append(attrs, slog.String("decision", decision))
	attrs = appendOutcome(attrs, d)
	if c.mon.mode.On && !aborted && !d.Final() {
		if s := suppressed(&t.Mutations, t.Rcpts); s != "" {
			attrs = append(attrs, slog.String("suppressed", s))
		}
	}
	if size := t.Size(); size > 0 {
		attrs = append(attrs, slog.Int64("size", size))
	}
	for _, tag := range t.Tags {
		attrs = append(attrs, slog.String(tag[0], tag[1]))
	}
	if len(t.Logs) > 0 {
		attrs = append(attrs, slog.String("log", strings.Join(t.Logs, "; ")))
	}
	attrs = append(attrs, slog.Int64("duration_ms", time.Since(t.Started).Milliseconds()), slog.Uint64("session", c.sess.ID))
	c.srv.log.LogAttrs(c.ctx, slog.LevelInfo, "message", attrs...)
}

// abortedDecision says what became of a message that never reached end of
// message: when every recipient was refused, that refusal is its outcome.
func abortedDecision(t *Txn) Decision {
	var last Decision
	for _, r := range t.Rcpts {
		if r.Accepted() {
			return Decision{}
		}
		last = r.Decision
	}
	if len(t.Rcpts) == 0 {
		return Decision{}
	}
	return last
}
