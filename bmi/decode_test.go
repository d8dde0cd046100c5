package bmi

// The decoding half of the X-Brightmail-Verdict and X-Brightmail-Tracker
// encodings: the daemon only writes them; the tests read back what it wrote.

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// decodeB64 is b64.DecodeString without the line breaks Go's decoder
// skips: a header value is accepted only in the one form EncodeVerdict and
// EncodeTracker write.
func decodeB64(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, errors.New("bmi: line break in a base64 value")
	}
	return b64.DecodeString(s)
}

// VerdictRecord is a decoded X-Brightmail-Verdict.
type VerdictRecord struct {
	Version     int
	Outcome     Outcome
	Rule        int
	Fired       []int
	Score       float64
	Threshold   float64
	IsSpam      bool
	Action      string
	Backend     string
	Profile     string
	AltLocation string
}

// Verdict returns the verdict the record stands for.
func (r *VerdictRecord) Verdict() Verdict {
	return Verdict{Scanned: true, Deliver: r.Outcome != OutcomeDrop, Outcome: r.Outcome,
		AltLocation: r.AltLocation, Fired: append([]int(nil), r.Fired...), Rule: r.Rule}
}

// Result returns the scan result fields the record keeps (no symbols).
func (r *VerdictRecord) Result() *ScanResult {
	return &ScanResult{Score: r.Score, Threshold: r.Threshold, IsSpam: r.IsSpam, Action: r.Action,
		Backend: r.Backend, Profile: r.Profile}
}

var verdictKeys = []string{"v", "outcome", "rule", "fired", "score", "threshold", "spam", "action", "backend", "profile", "alt"}

// DecodeVerdict reads what EncodeVerdict wrote. Only the canonical form is
// accepted (it must encode back to s byte for byte); anything else, like an
// empty string, is an error, which Exim's rules treat as no verdict: deliver
// normally.
func DecodeVerdict(s string) (*VerdictRecord, error) {
	raw, err := decodeB64(s)
	if err != nil || len(raw) == 0 {
		return nil, errors.New("bmi: verdict: not base64")
	}
	fields, err := splitPayload(string(raw), verdictKeys)
	if err != nil {
		return nil, fmt.Errorf("bmi: verdict: %w", err)
	}
	if fields[0] != payloadVersion {
		return nil, fmt.Errorf("bmi: verdict: version %q not supported", clip(fields[0]))
	}
	r := &VerdictRecord{Version: 1, Outcome: Outcome(fields[1])}
	switch r.Outcome {
	case OutcomeDeliver, OutcomeAlternate, OutcomeDrop:
	default:
		return nil, fmt.Errorf("bmi: verdict: outcome %q", clip(fields[1]))
	}
	if r.Rule, err = strconv.Atoi(fields[2]); err != nil || r.Rule < 0 {
		return nil, fmt.Errorf("bmi: verdict: rule %q", clip(fields[2]))
	}
	if r.Fired, err = parseInts(fields[3]); err != nil {
		return nil, fmt.Errorf("bmi: verdict: fired: %w", err)
	}
	if r.Score, err = parseScore(fields[4]); err != nil {
		return nil, fmt.Errorf("bmi: verdict: score %q", clip(fields[4]))
	}
	if r.Threshold, err = parseScore(fields[5]); err != nil {
		return nil, fmt.Errorf("bmi: verdict: threshold %q", clip(fields[5]))
	}
	switch fields[6] {
	case "0":
	case "1":
		r.IsSpam = true
	default:
		return nil, fmt.Errorf("bmi: verdict: spam %q", clip(fields[6]))
	}
	for i, dst := range []*string{&r.Action, &r.Backend, &r.Profile, &r.AltLocation} {
		if *dst, err = pctDecode(fields[7+i]); err != nil {
			return nil, fmt.Errorf("bmi: verdict: %s: %w", verdictKeys[7+i], err)
		}
	}
	switch {
	case (r.Rule == 0) != (len(r.Fired) == 0), r.Rule != 0 && r.Fired[0] != r.Rule:
		return nil, errors.New("bmi: verdict: the deciding rule is not the first that fired")
	case r.Rule == 0 && r.Outcome != OutcomeDeliver:
		return nil, errors.New("bmi: verdict: an outcome other than deliver without a rule")
	case (r.Outcome == OutcomeAlternate) != (r.AltLocation != ""):
		return nil, errors.New("bmi: verdict: an alternate location goes with outcome alternate only")
	}
	if verdictPayload(r.Verdict(), r.Result()) != string(raw) {
		return nil, errors.New("bmi: verdict: not in canonical form")
	}
	return r, nil
}

// DecodeTracker reads what EncodeTracker wrote (canonical form only).
func DecodeTracker(s string) ([]int, error) {
	raw, err := decodeB64(s)
	if err != nil || len(raw) == 0 {
		return nil, errors.New("bmi: tracker: not base64")
	}
	fields, err := splitPayload(string(raw), []string{"v", "fired"})
	if err != nil {
		return nil, fmt.Errorf("bmi: tracker: %w", err)
	}
	if fields[0] != payloadVersion {
		return nil, fmt.Errorf("bmi: tracker: version %q not supported", clip(fields[0]))
	}
	fired, err := parseInts(fields[1])
	if err != nil {
		return nil, fmt.Errorf("bmi: tracker: fired: %w", err)
	}
	return fired, nil
}

// splitPayload checks that p is exactly key=value;... with keys in order.
func splitPayload(p string, keys []string) ([]string, error) {
	parts := strings.Split(p, ";")
	if len(parts) != len(keys) {
		return nil, fmt.Errorf("%d fields, want %d", len(parts), len(keys))
	}
	out := make([]string, len(keys))
	for i, part := range parts {
		k, v, ok := strings.Cut(part, "=")
		if !ok || k != keys[i] {
			return nil, fmt.Errorf("field %d: want %s=", i+1, keys[i])
		}
		out[i] = v
	}
	return out, nil
}

// parseInts reads "5,8,11": positive, no leading zeros, no repeats.
func parseInts(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var out []int
	seen := make(map[int]bool)
	for _, f := range strings.Split(s, ",") {
		if f == "" || len(f) > 9 || f[0] == '0' {
			return nil, fmt.Errorf("rule number %q", clip(f))
		}
		n := 0
		for i := 0; i < len(f); i++ {
			if f[i] < '0' || f[i] > '9' {
				return nil, fmt.Errorf("rule number %q", clip(f))
			}
			n = n*10 + int(f[i]-'0')
		}
		if seen[n] {
			return nil, fmt.Errorf("rule %d twice", n)
		}
		seen[n] = true
		out = append(out, n)
	}
	return out, nil
}

func pctDecode(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errors.New("cut %-escape")
		}
		hi, lo := unhex(s[i+1]), unhex(s[i+2])
		if hi < 0 || lo < 0 {
			return "", errors.New("bad %-escape")
		}
		b.WriteByte(byte(hi<<4 | lo))
		i += 2
	}
	return b.String(), nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
