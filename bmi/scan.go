package bmi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"
)

// Envelope is what a scanner is told besides the message. Rcpts are the
// recipients of the scan (those of one profile), as given at RCPT.
type Envelope struct {
	ClientIP netip.Addr // zero: not sent
	Helo     string
	Hostname string // the client's verified host name
	Sender   string // "" is the null sender
	Login    string // SASL login; "" when not authenticated
	QueueID  string
	Rcpts    []string
}

// ScanResult is a scanner's answer.
type ScanResult struct {
	Score     float64
	Threshold float64 // spamd: required_score of the profile; rspamd: required_score (the reject threshold)
	IsSpam    bool    // spamd: its Spam: verdict; rspamd: the action is one of SpamActions
	Action    string  // rspamd's action ("no action", "add header", ...); "" from spamd
	Symbols   []string
	Backend   string // "spamd" or "rspamd"
	Profile   string // the profile it was scanned with ("" = the scanner's default)
}

// Backend is a scanner.
type Backend interface {
	Name() string
	// MaxSize is the largest message Scan sends; larger ones fail with
	// KindTooBig without a connection (and so are delivered normally).
	MaxSize() int64
	// Scan sends size bytes of msg from its start and returns the verdict.
	// It never returns a result for a request it did not fully send.
	Scan(ctx context.Context, msg io.ReadSeeker, size int64, env Envelope, profile string) (*ScanResult, error)
}

// Defaults of the backends' options.
const (
	DefaultTimeout      = 30 * time.Second
	DefaultSpamdMaxSize = 512000   // spamc's default (-s): SpamAssassin's time grows with size, spam is small
	DefaultRspamdMax    = 20 << 20 // rspamd's own limit is 50 MiB (max_message)
	// DefaultSpoolMemory is what a message may take in memory before its
	// spool moves to a temp file.
	DefaultSpoolMemory = 1 << 20
)

// ValidProfile reports whether name can be sent as a profile: spamd puts it
// in a path (--virtual-config-dir=DIR/%u), so it is 1 to 64 characters of
// letters, digits and . _ + @ -, starting with a letter or digit, without "..".
func ValidProfile(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("bmi: profile %q: must be 1 to 64 characters", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '+' || c == '@' || c == '-'):
			if c == '.' && name[i-1] == '.' {
				return fmt.Errorf("bmi: profile %q: \"..\" not allowed", name)
			}
		default:
			return fmt.Errorf("bmi: profile %q: character %q not allowed", name, c)
		}
	}
	return nil
}

// ProfileGroup is the recipients (indexes into the RcptInput slice) that
// share a scan profile.
type ProfileGroup struct {
	Profile string
	Rcpts   []int
}

// Profiles groups recipients by profile, in order of first appearance: one
// scan per group, normally one per message. profileOf nil puts everyone in
// the default profile "".
func Profiles(rcpts []RcptInput, profileOf func(RcptInput) string) []ProfileGroup {
	var groups []ProfileGroup
	idx := make(map[string]int)
	for i, r := range rcpts {
		p := ""
		if profileOf != nil {
			p = profileOf(r)
		}
		g, ok := idx[p]
		if !ok {
			g = len(groups)
			idx[p] = g
			groups = append(groups, ProfileGroup{Profile: p})
		}
		groups[g].Rcpts = append(groups[g].Rcpts, i)
	}
	return groups
}

// ProfileMap chooses a recipient's profile from its opt-in strings: the
// first opt-in (of two characters or more) that has an entry wins, else
// Default.
type ProfileMap struct {
	ByOptin map[string]string
	Default string
}

// Of returns the profile of r.
func (m ProfileMap) Of(r RcptInput) string {
	for _, o := range r.Optins {
		if len(o) <= 1 {
			continue
		}
		if p, ok := m.ByOptin[o]; ok {
			return p
		}
	}
	return m.Default
}

// GroupScan is the outcome of one group's scan.
type GroupScan struct {
	ProfileGroup
	Result   *ScanResult // nil when Err is set
	Err      error
	Duration time.Duration
}

// ScanGroups runs one scan per group, one after the other, each with the
// envelope's recipients narrowed to the group's. A group whose scan fails
// has no verdict (its recipients are delivered normally); the caller counts
// Kind(Err) and Duration.
func ScanGroups(ctx context.Context, b Backend, msg io.ReadSeeker, size int64, env Envelope, rcpts []RcptInput, groups []ProfileGroup) []GroupScan {
	out := make([]GroupScan, len(groups))
	for i, g := range groups {
		e := env
		e.Rcpts = make([]string, 0, len(g.Rcpts))
		for _, j := range g.Rcpts {
			e.Rcpts = append(e.Rcpts, rcpts[j].Addr)
		}
		start := time.Now()
		res, err := b.Scan(ctx, msg, size, e, g.Profile)
		out[i] = GroupScan{ProfileGroup: g, Result: res, Err: err, Duration: time.Since(start)}
		if err != nil {
			out[i].Result = nil
		}
	}
	return out
}

// EvaluateGroups gives every recipient its verdict from its group's scan
// (NoVerdict for a recipient in no group or in a failed one).
func EvaluateGroups(rules []Rule, rcpts []RcptInput, scans []GroupScan) []Verdict {
	out := make([]Verdict, len(rcpts))
	for i := range out {
		out[i] = NoVerdict()
	}
	for _, s := range scans {
		for _, j := range s.Rcpts {
			if j >= 0 && j < len(rcpts) {
				out[j] = Evaluate(rules, s.Result, rcpts[j])
			}
		}
	}
	return out
}

// copyExactly writes exactly size bytes of msg, from its start, and checks
// that msg has no more: a message shorter or longer than announced is not
// fully sent, whatever the peer may answer.
func copyExactly(w io.Writer, msg io.ReadSeeker, size int64) error {
	if size <= 0 || msg == nil {
		return errors.New("empty message")
	}
	if _, err := msg.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rewinding the message: %w", err)
	}
	n, err := io.CopyN(w, msg, size)
	if err == io.EOF {
		return fmt.Errorf("message ended after %d of %d bytes", n, size)
	}
	if err != nil {
		return fmt.Errorf("after %d of %d bytes: %w", n, size, err)
	}
	var one [1]byte
	if k, _ := io.ReadFull(msg, one[:]); k > 0 {
		return fmt.Errorf("message longer than its announced %d bytes", size)
	}
	return nil
}
