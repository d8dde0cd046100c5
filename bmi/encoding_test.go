package bmi

import (
	"encoding/base64"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestVerdictEncodingVectors(t *testing.T) {
	for _, c := range []struct {
		v       Verdict
		res     *ScanResult
		payload string
	}{
		{
			Verdict{Scanned: true, Deliver: false, Outcome: OutcomeDrop, Fired: []int{8, 11}, Rule: 8},
			&ScanResult{Score: 1003.3, Threshold: 5, IsSpam: true, Backend: "spamd", Profile: "strict", Symbols: []string{"GTUBE"}},
			"v=1;outcome=drop;rule=8;fired=8,11;score=1003.3;threshold=5;spam=1;action=;backend=spamd;profile=strict;alt=",
		},
		{
			Verdict{Scanned: true, Deliver: true, Outcome: OutcomeAlternate, AltLocation: "header:X-Spam-Folder: Junk", Fired: []int{2}, Rule: 2},
			&ScanResult{Score: 6, Threshold: 15, IsSpam: true, Action: "add header", Backend: "rspamd"},
			"v=1;outcome=alternate;rule=2;fired=2;score=6;threshold=15;spam=1;action=add%20header;backend=rspamd;profile=;alt=header:X-Spam-Folder:%20Junk",
		},
		{
			Verdict{Scanned: true, Deliver: true, Outcome: OutcomeDeliver},
			&ScanResult{Score: math.Copysign(0, -1), Threshold: -5, Backend: "spamd"},
			"v=1;outcome=deliver;rule=0;fired=;score=0;threshold=-5;spam=0;action=;backend=spamd;profile=;alt=",
		},
		{
			Verdict{Scanned: true, Deliver: true, Outcome: OutcomeAlternate, AltLocation: "quarantine:50%;a=b\u00e9", Fired: []int{3, 1}, Rule: 3},
			&ScanResult{Score: 0.30000000000000004, Threshold: 5, Backend: "x"},
			"v=1;outcome=alternate;rule=3;fired=3,1;score=0.30000000000000004;threshold=5;spam=0;action=;backend=x;profile=;alt=quarantine:50%25%3Ba%3Db%C3%A9",
		},
	} {
		got := EncodeVerdict(c.v, c.res)
		if want := base64.StdEncoding.EncodeToString([]byte(c.payload)); got != want {
			raw, _ := base64.StdEncoding.DecodeString(got)
			t.Errorf("EncodeVerdict:\n%s\nwant\n%s", raw, c.payload)
			continue
		}
		if again := EncodeVerdict(c.v, c.res); again != got {
			t.Error("not deterministic")
		}
		rec, err := DecodeVerdict(got)
		if err != nil {
			t.Errorf("DecodeVerdict(%s): %v", c.payload, err)
			continue
		}
		v := rec.Verdict()
		if v.Outcome != c.v.Outcome || v.Rule != c.v.Rule || !slices.Equal(v.Fired, c.v.Fired) || v.AltLocation != c.v.AltLocation ||
			v.Deliver != c.v.Deliver || !v.Scanned {
			t.Errorf("round trip verdict %+v; want %+v", v, c.v)
		}
		r := rec.Result()
		if r.Score != c.res.Score && !(r.Score == 0 && c.res.Score == 0) || r.Threshold != c.res.Threshold || r.IsSpam != c.res.IsSpam ||
			r.Action != c.res.Action || r.Backend != c.res.Backend || r.Profile != c.res.Profile {
			t.Errorf("round trip result %+v; want %+v", r, c.res)
		}
		if EncodeVerdict(rec.Verdict(), rec.Result()) != got {
			t.Error("re-encoding differs")
		}
	}
}

func TestVerdictEncodingRoundTripFromEvaluate(t *testing.T) {
	rules := exampleRules()
	results := []*ScanResult{
		{Score: 1003.3, Threshold: 5, IsSpam: true, Symbols: []string{"GTUBE"}, Backend: "spamd", Profile: "strict"},
		{Score: 6, Threshold: 15, IsSpam: true, Action: "add header", Backend: "rspamd"},
		{Score: 15, Threshold: 15, IsSpam: true, Action: "reject", Backend: "rspamd"},
		{Score: -0.5, Threshold: 5, Backend: "spamd"},
		{Score: 123456789.123456789, Threshold: -1e-10, Backend: "spamd"},
	}
	for _, res := range results {
		for _, rc := range []RcptInput{{Addr: "a@example.org"}, {Addr: "b@example.org", Optins: []string{"drop-spam"}}} {
			v := Evaluate(rules, res, rc)
			s := EncodeVerdict(v, res)
			rec, err := DecodeVerdict(s)
			if err != nil {
				t.Fatalf("%+v: %v", v, err)
			}
			if EncodeVerdict(rec.Verdict(), rec.Result()) != s {
				t.Errorf("round trip of %+v", v)
			}
			tr := v.Tracker()
			fired, err := DecodeTracker(tr)
			if err != nil || !slices.Equal(fired, v.Fired) {
				t.Errorf("tracker %q: %v, %v; want %v", tr, fired, err, v.Fired)
			}
		}
	}
}

func TestTrackerEncoding(t *testing.T) {
	for _, c := range []struct {
		fired   []int
		payload string
	}{
		{nil, "v=1;fired="},
		{[]int{5}, "v=1;fired=5"},
		{[]int{5, 8, 11}, "v=1;fired=5,8,11"},
		{[]int{11, 5}, "v=1;fired=11,5"},
	} {
		got := EncodeTracker(c.fired)
		if want := base64.StdEncoding.EncodeToString([]byte(c.payload)); got != want {
			t.Errorf("EncodeTracker(%v) = %s; want %s", c.fired, got, want)
		}
		back, err := DecodeTracker(got)
		if err != nil || !slices.Equal(back, c.fired) {
			t.Errorf("DecodeTracker: %v, %v", back, err)
		}
	}
}

func TestDecodeRejectsNonCanonical(t *testing.T) {
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	good := "v=1;outcome=drop;rule=8;fired=8,11;score=1003.3;threshold=5;spam=1;action=;backend=spamd;profile=strict;alt="
	if _, err := DecodeVerdict(base64.RawStdEncoding.EncodeToString([]byte(good + "x"))); err == nil {
		t.Error("accepted base64 without padding")
	}
	if _, err := DecodeVerdict(enc(good)); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		"",
		"!!!",
		enc(""),
		enc(strings.Replace(good, "v=1", "v=2", 1)),
		enc(strings.Replace(good, "outcome=drop", "outcome=bounce", 1)),
		enc(strings.Replace(good, "rule=8", "rule=08", 1)),
		enc(strings.Replace(good, "rule=8", "rule=11", 1)),        // not the first fired
		enc(strings.Replace(good, "fired=8,11", "fired=8,8", 1)),  // repeated
		enc(strings.Replace(good, "fired=8,11", "fired=8,-1", 1)), // negative
		enc(strings.Replace(good, "score=1003.3", "score=1.0033e3", 1)),
		enc(strings.Replace(good, "score=1003.3", "score=NaN", 1)),
		enc(strings.Replace(good, "spam=1", "spam=true", 1)),
		enc(strings.Replace(good, "profile=strict", "profile=str%69ct", 1)), // needless escape
		enc(strings.Replace(good, "alt=", "alt=quarantine", 1)),             // alt without alternate
		enc(strings.Replace(good, ";alt=", "", 1)),
		enc(good + ";extra=1"),
		enc(strings.Replace(good, "action=;backend", "backend=spamd;action", 1)),
		enc("v=1;outcome=alternate;rule=0;fired=;score=1;threshold=5;spam=0;action=;backend=;profile=;alt=x"),
	} {
		if rec, err := DecodeVerdict(bad); err == nil {
			t.Errorf("DecodeVerdict accepted %q: %+v", bad, rec)
		}
	}
	for _, bad := range []string{"", enc("v=1"), enc("v=1;fired=0"), enc("v=1;fired=1,,2"), enc("v=2;fired=1"), enc("v=1;fired=1;x=")} {
		if f, err := DecodeTracker(bad); err == nil {
			t.Errorf("DecodeTracker accepted %q: %v", bad, f)
		}
	}
}

func TestScoreBounds(t *testing.T) {
	for _, c := range []struct {
		in   float64
		want string
	}{
		{0, "0"}, {math.Copysign(0, -1), "0"}, {1e-12, "0"}, {-5.551115123125783e-17, "0"},
		{1e12, "1000000000"}, {-1e12, "-1000000000"}, {math.NaN(), "0"}, {math.Inf(1), "1000000000"},
		{1.5, "1.5"}, {-1000, "-1000"},
	} {
		if got := formatScore(c.in); got != c.want {
			t.Errorf("formatScore(%v) = %q; want %q", c.in, got, c.want)
		}
		if _, err := parseScore(formatScore(c.in)); err != nil {
			t.Errorf("parseScore(formatScore(%v)): %v", c.in, err)
		}
	}
}
