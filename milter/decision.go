package milter

import (
	"fmt"
	"strconv"
	"strings"
)

// Stage is a point of the SMTP transaction at which modules run and the policy decides.
type Stage uint8

const (
	StageConnect Stage = iota
	StageHelo
	StageMail
	StageRcpt
	StageHeader // streamed, one call per header; the policy does not decide here
	StageBody   // streamed chunks; the policy does not decide here
	StageData   // end of message: the last point for a decision and the only one for changes
	stageCount
)

var stageNames = [...]string{"connect", "helo", "mail", "rcpt", "header", "body", "data"}

func (s Stage) String() string {
	if int(s) < len(stageNames) {
		return stageNames[s]
	}
	return "stage(" + strconv.Itoa(int(s)) + ")"
}

// PolicyStages are the stages at which an ACL can be written, in transaction order.
var PolicyStages = []Stage{StageConnect, StageHelo, StageMail, StageRcpt, StageData}

// Verdict is what a stage tells the MTA. The names follow Exim's ACL verbs where
// they exist; Continue means nothing was decided.
type Verdict uint8

const (
	Continue Verdict = iota
	Accept           // at rcpt: this recipient is accepted; at data: the message is accepted
	Reject           // 5xx; at rcpt only for that recipient
	TempFail         // 4xx; at rcpt only for that recipient
	Discard          // accepted and silently thrown away; at rcpt only for that recipient
	Drop             // 421 and the MTA closes the SMTP connection
)

var verdictNames = [...]string{"continue", "accept", "reject", "tempfail", "discard", "drop"}

func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return "verdict(" + strconv.Itoa(int(v)) + ")"
}

// Reply is the SMTP reply the MTA sends for a reject, tempfail or drop. A zero
// Code lets the MTA use its own reply.
type Reply struct {
	Code     int    // 4xx or 5xx
	Enhanced string // RFC 3463 status code such as 5.7.1, may be empty
	Text     string
}

func (r Reply) IsZero() bool { return r.Code == 0 && r.Enhanced == "" && r.Text == "" }

// String renders the reply as the client sees it (first line), e.g. "550 5.7.1 relay not permitted".
func (r Reply) String() string {
	var b strings.Builder
	if r.Code != 0 {
		b.WriteString(strconv.Itoa(r.Code))
	}
	for _, part := range []string{r.Enhanced, r.Text} {
		if part != "" {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(part)
		}
	}
	return b.String()
}

// DefaultReply is what tollgate answers for a verdict when the policy gives no message.
func DefaultReply(v Verdict) Reply {
	switch v {
	case Reject:
		return Reply{Code: 550, Enhanced: "5.7.1", Text: "rejected by policy"}
	case TempFail:
		return Reply{Code: 451, Enhanced: "4.7.1", Text: "temporarily rejected, try again later"}
	case Drop:
		return Reply{Code: 421, Enhanced: "4.7.0", Text: "closing connection"}
	}
	return Reply{}
}

// CheckReply tells whether a reply fits a verdict: 5xx for reject, 4xx for
// tempfail, 421 for drop, and an enhanced code of the same class.
func CheckReply(v Verdict, r Reply) error {
	if r.Code == 0 {
		return nil
	}
	class := r.Code / 100
	switch v {
	case Reject:
		if class != 5 {
			return fmt.Errorf("code %d does not fit a permanent rejection: use 5xx", r.Code)
		}
	case TempFail:
		if class != 4 {
			return fmt.Errorf("code %d does not fit a temporary rejection: use 4xx", r.Code)
		}
	case Drop:
		if r.Code != 421 {
			return fmt.Errorf("code %d does not fit drop: the MTA closes the connection only on 421", r.Code)
		}
	default:
		return fmt.Errorf("a reply code is only used with a rejection, a deferral or a drop")
	}
	if r.Code < 400 || r.Code > 599 {
		return fmt.Errorf("code %d is not a 4xx or 5xx SMTP code", r.Code)
	}
	if r.Enhanced != "" && r.Enhanced[0] != byte('0'+class) {
		return fmt.Errorf("enhanced code %s does not match the class of %d", r.Enhanced, r.Code)
	}
	return nil
}

// ParseReply reads an SMTP reply written as "550 5.7.1 text", "5.7.1 text" or
// "text". A leading code is taken only when followed by a space or the end.
func ParseReply(s string) (Reply, error) {
	var r Reply
	rest := strings.TrimSpace(s)
	if len(rest) >= 3 && isDigits(rest[:3]) && (len(rest) == 3 || rest[3] == ' ') {
		r.Code, _ = strconv.Atoi(rest[:3])
		rest = strings.TrimSpace(rest[3:])
		if r.Code < 400 || r.Code > 599 {
			return r, fmt.Errorf("code %d is not a 4xx or 5xx SMTP code", r.Code)
		}
	}
	if word, after, _ := strings.Cut(rest, " "); isEnhancedCode(word) {
		r.Enhanced = word
		rest = strings.TrimSpace(after)
	} else if looksLikeEnhancedCode(word) {
		return r, fmt.Errorf("%q is not a valid enhanced status code (class.subject.detail, class 2, 4 or 5)", word)
	}
	if r.Enhanced != "" && r.Code != 0 && r.Enhanced[0] != byte('0'+r.Code/100) {
		return r, fmt.Errorf("enhanced code %s does not match the class of %d", r.Enhanced, r.Code)
	}
	if strings.ContainsAny(rest, "\r\n\x00") {
		return r, fmt.Errorf("reply text must be one line")
	}
	r.Text = rest
	return r, nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func looksLikeEnhancedCode(w string) bool {
	return len(w) >= 5 && w[0] >= '0' && w[0] <= '9' && w[1] == '.' && strings.Count(w, ".") == 2 && strings.Trim(w, "0123456789.") == ""
}

func isEnhancedCode(w string) bool {
	parts := strings.Split(w, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || !strings.ContainsAny(parts[0], "245") {
		return false
	}
	for _, p := range parts[1:] {
		if !isDigits(p) || len(p) > 3 {
			return false
		}
	}
	return true
}

// Decision is the outcome of a stage: the verdict, the reply and the rule that gave it.
type Decision struct {
	Verdict Verdict
	Reply   Reply
	Rule    string // policy rule name, or "module:<name>" / "on_error"; empty when nothing decided
	Reason  string // why, for the log
}

// Final reports whether the decision ends the message (for a recipient-stage
// decision only reject, tempfail and discard end that recipient, see Recipient).
func (d Decision) Final() bool { return d.Verdict != Continue && d.Verdict != Accept }

// Rejection is returned by a module hook to propose a decision instead of failing.
// It is not counted as a module error.
type Rejection struct{ Decision Decision }

func (r *Rejection) Error() string {
	return "rejected: " + r.Decision.Verdict.String() + " " + r.Decision.Reply.String()
}
