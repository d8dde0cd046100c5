package bmi

import (
	"encoding/base64"
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
