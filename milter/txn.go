package milter

import (
	"crypto"
	"strings"
	"time"

	"github.com/tollgate/tollgate/internal/authres"
	"github.com/tollgate/tollgate/internal/dkimsig"
)

// Session is one milter connection, which is one SMTP connection.
type Session struct {
	ID       uint64
	Identity Identity
	Vars     map[string]string // connection variables (acl_c_*), kept across messages
	Started  time.Time
	Messages int // messages started in this session

	runtime Runtime
	facts   map[string]any
}

// Fact returns what the named feature found about this session (the
// client's reverse DNS, its HELO's SPF), nil if nothing. A session is one
// SMTP connection: nothing here outlives it.
func (s *Session) Fact(feature string) any { return s.facts[feature] }

// SetFact keeps a feature's findings about this session.
func (s *Session) SetFact(feature string, v any) {
	if s.facts == nil {
		s.facts = make(map[string]any)
	}
	s.facts[feature] = v
}

// KeepSessionFacts returns the facts feature keeps about s, made and kept
// on first use: what a feature that checks once per connection writes to.
func KeepSessionFacts[F any](s *Session, feature string) *F {
	f, ok := s.Fact(feature).(*F)
	if !ok {
		f = new(F)
		s.SetFact(feature, f)
	}
	return f
}

// Runtime returns the configuration this session started with.
func (s *Session) Runtime() Runtime { return s.runtime }

// Txn is one message: from MAIL FROM to the end of message or an abort.
type Txn struct {
	Session    *Session
	QueueID    string
	Sender     string // without angle brackets; "" is the null sender
	SenderArgs string
	Rcpts      []*Recipient

	// Headers as the MTA sent them, kept only when the configuration needs them.
	// A value keeps its leading space when that was negotiated (see RawHeaderValue).
	Headers     []Header
	HeaderBytes int64
	BodyBytes   int64

	Vars      map[string]string // message variables (acl_m_*)
	Controls  map[string]bool   // controls switched on by the policy (arc_sign, srs_forward, ...)
	Mutations Mutations
	Logs      []string // log_message texts of rules that fired, for the summary line
	Tags      [][2]string
	Started   time.Time
	Decision  Decision

	leadingSpace bool
	state        map[string]any
	facts        map[string]any

	bodies  dkimsig.BodyHashes
	eohDone bool // EndOfHeaders hooks have run

	authResults      []authres.Result
	authResultsValue string
	nAuthResults     int // Authentication-Results fields seen, for their index
}

// Fact returns what the named feature found about this message (its own
// type, which it exports an accessor for), nil if nothing.
func (t *Txn) Fact(feature string) any { return t.facts[feature] }

// SetFact keeps a feature's findings about this message, for the policy and
// other features to read through the feature's accessor.
func (t *Txn) SetFact(feature string, v any) {
	if t.facts == nil {
		t.facts = make(map[string]any)
	}
	t.facts[feature] = v
}

// TxnFacts returns the facts feature keeps about t as a *F: an empty one
// when it kept none (or t is nil), for readers; features export it as their
// FactsOf.
func TxnFacts[F any](t *Txn, feature string) *F {
	if t != nil {
		if f, ok := t.Fact(feature).(*F); ok {
			return f
		}
	}
	return new(F)
}

// KeepTxnFacts returns the facts feature keeps about t, made and kept on
// first use: what the feature itself writes to.
func KeepTxnFacts[F any](t *Txn, feature string) *F {
	f, ok := t.Fact(feature).(*F)
	if !ok {
		f = new(F)
		t.SetFact(feature, f)
	}
	return f
}

// BodyHash asks for the hash of the body canonicalized with c and hashed
// with h, over its first limit canonical bytes (-1: all of it): DKIM's and
// ARC's body hashes. Every module asking for the same one gets the same
// BodyHash, and each canonicalization runs once per message however many
// modules need it. Ask in an EndOfHeaders hook; the Sum is there from the
// EndOfMessage hooks on.
func (t *Txn) BodyHash(c dkimsig.Canon, h crypto.Hash, limit int64) (*dkimsig.BodyHash, error) {
	return t.bodies.Need(c, h, limit)
}

// BodyHashes is the message's shared body hashing, for a verifier that
// asks for its hashes itself (ARC asks one per distinct AMS c= and l=).
func (t *Txn) BodyHashes() *dkimsig.BodyHashes { return &t.bodies }

// WriteBody feeds a body chunk to the hashes modules asked for. The milter
// calls it; so do tests that drive a module's hooks themselves.
func (t *Txn) WriteBody(chunk []byte) { t.bodies.Write(chunk) }

// EndBody ends the body: every BodyHash gets its Sum. It returns the
// canonicalizations that ran, once.
func (t *Txn) EndBody() []dkimsig.Canon { return t.bodies.Close() }

// State returns what a module keeps for this message (nil if nothing).
func (t *Txn) State(module string) any { return t.state[module] }

// SetState keeps a module's per-message state, dropped with the message.
func (t *Txn) SetState(module string, v any) {
	if t.state == nil {
		t.state = make(map[string]any)
	}
	t.state[module] = v
}

// Recipient is one RCPT TO and what the stages decided for it.
type Recipient struct {
	Addr     string // without angle brackets, as the client gave it
	Args     string
	Decision Decision // the rcpt-stage decision (Continue or Accept = accepted)
	Index    int      // position among all RCPT commands of the message

	facts map[string]any
}

// Fact returns what the named feature found about this recipient, nil if
// nothing.
func (r *Recipient) Fact(feature string) any { return r.facts[feature] }

// SetFact keeps a feature's findings about this recipient.
func (r *Recipient) SetFact(feature string, v any) {
	if r.facts == nil {
		r.facts = make(map[string]any)
	}
	r.facts[feature] = v
}

// Accepted reports whether the MTA kept this recipient after the rcpt stage.
func (r *Recipient) Accepted() bool {
	return r.Decision.Verdict == Continue || r.Decision.Verdict == Accept || r.Decision.Verdict == Discard
}

// Header is one header field as received.
type Header struct {
	Name  string
	Value string
}

// Size is the message size in bytes as the MTA sent it: headers (name, colon,
// value, CRLF), the blank line and the body.
func (t *Txn) Size() int64 {
	if t.BodyBytes == 0 && t.HeaderBytes == 0 {
		return 0
	}
	return t.HeaderBytes + 2 + t.BodyBytes
}

// HeaderValue is a header's value without the leading space and with folding
// removed, which is what conditions compare against.
func (t *Txn) HeaderValue(h Header) string {
	v := h.Value
	if t.leadingSpace {
		v = strings.TrimPrefix(v, " ")
	}
	if strings.ContainsAny(v, "\r\n") {
		v = strings.NewReplacer("\r\n", "", "\n", "", "\r", "").Replace(v)
	}
	return strings.TrimLeft(v, " \t")
}

// RawHeaderValue reports whether header values keep exactly what followed the colon.
func (t *Txn) RawHeaderValue() bool { return t.leadingSpace }

// AcceptedRcpts returns the recipients the MTA still has, in RCPT order.
func (t *Txn) AcceptedRcpts() []*Recipient {
	out := make([]*Recipient, 0, len(t.Rcpts))
	for _, r := range t.Rcpts {
		if r.Accepted() {
			out = append(out, r)
		}
	}
	return out
}

// SetControl switches a control on for this message.
func (t *Txn) SetControl(name string) {
	if t.Controls == nil {
		t.Controls = make(map[string]bool)
	}
	t.Controls[name] = true
}

// Domain returns the domain part of an address (after the last @), lower-cased.
func Domain(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(strings.TrimSuffix(addr[i+1:], "."))
	}
	return ""
}

// LocalPart returns the part of an address before the last @.
func LocalPart(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[:i]
	}
	return addr
}
