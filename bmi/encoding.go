package bmi

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// The X-Brightmail-Verdict and X-Brightmail-Tracker values: standard base64
// (with padding) of a versioned ASCII payload, written the same way for the
// same input, byte for byte. See README.md, "Encodings", for the grammar.
//
//	verdict  v=1;outcome=drop;rule=8;fired=8,11;score=1003.3;threshold=5;spam=1;action=;backend=spamd;profile=strict;alt=
//	tracker  v=1;fired=8,11

const payloadVersion = "1"

var b64 = base64.StdEncoding.Strict()

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

// EncodeVerdict is bmi_base64_verdict: "" without a verdict (v not Scanned
// or res nil), otherwise the base64 of the payload.
func EncodeVerdict(v Verdict, res *ScanResult) string {
	if !v.Scanned || res == nil {
		return ""
	}
	return b64.EncodeToString([]byte(verdictPayload(v, res)))
}

func verdictPayload(v Verdict, res *ScanResult) string {
	var b strings.Builder
	b.Grow(128 + len(res.Action) + len(res.Backend) + len(res.Profile) + len(v.AltLocation) + 4*len(v.Fired))
	outcome := v.Outcome
	if outcome != OutcomeAlternate && outcome != OutcomeDrop {
		outcome = OutcomeDeliver
	}
	alt := ""
	if outcome == OutcomeAlternate {
		alt = v.AltLocation
	}
	spam := "0"
	if res.IsSpam {
		spam = "1"
	}
	b.WriteString("v=" + payloadVersion)
	b.WriteString(";outcome=" + string(outcome))
	b.WriteString(";rule=" + strconv.Itoa(v.Rule))
	b.WriteString(";fired=" + joinInts(v.Fired))
	b.WriteString(";score=" + formatScore(res.Score))
	b.WriteString(";threshold=" + formatScore(res.Threshold))
	b.WriteString(";spam=" + spam)
	b.WriteString(";action=" + pctEncode(res.Action))
	b.WriteString(";backend=" + pctEncode(res.Backend))
	b.WriteString(";profile=" + pctEncode(res.Profile))
	b.WriteString(";alt=" + pctEncode(alt))
	return b.String()
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

// EncodeTracker is the X-Brightmail-Tracker value for the rules that fired
// (also for none: a scanned message always has a tracker). Verdict.Tracker
// gives "" without a verdict.
func EncodeTracker(fired []int) string {
	return b64.EncodeToString([]byte("v=" + payloadVersion + ";fired=" + joinInts(fired)))
}

// Tracker is bmi_base64_tracker_verdict: "" without a verdict.
func (v Verdict) Tracker() string {
	if !v.Scanned {
		return ""
	}
	return EncodeTracker(v.Fired)
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

func joinInts(ids []int) string {
	var b strings.Builder
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(id))
	}
	return b.String()
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

// formatScore writes the shortest plain decimal (no exponent) that reads
// back to the same float64. Out of the parsers' bounds it clamps, so that
// what it writes always decodes: -0, NaN and |f| < 1e-9 are 0, |f| > 1e9
// is ±1e9.
func formatScore(f float64) string {
	switch {
	case math.IsNaN(f), math.Abs(f) < minScore:
		return "0"
	case f > maxScore:
		f = maxScore
	case f < -maxScore:
		f = -maxScore
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// pctEncode escapes %, ;, = and every byte outside printable ASCII (space
// included) as %XX, upper-case hex.
func pctEncode(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '%' || c == ';' || c == '=' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
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
