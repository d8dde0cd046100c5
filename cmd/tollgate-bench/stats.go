package main

import (
	"math"
	"slices"
	"time"
)

// Stages timed for every message, as the MTA sees them.
const (
	stageConnect = iota // dial, option negotiation and the connect event (first message of a session)
	stageHelo           // HELO (first message of a session)
	stageMail           // MAIL FROM
	stageRcpt           // every RCPT TO of the message
	stageData           // DATA, headers, end of headers, body chunks and end of message
	stageEOM            // end of message alone (part of data): where a milter does its work
	stageMessage        // the sum: what the MTA waited for this message
	stageCount
)

var stageNames = [stageCount]string{"connect", "helo", "mail", "rcpt", "data", "eom", "message"}

// samples are latencies of one stage in nanoseconds.
type samples []int64

// LatencySummary is the distribution of one stage's latency, in milliseconds.
type LatencySummary struct {
	Count int     `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// percentile returns the nearest-rank percentile p (0 < p <= 100) of sorted
// values: the smallest value with at least p% of the values at or below it.
func percentile(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

func summarize(s samples) LatencySummary {
	if len(s) == 0 {
		return LatencySummary{}
	}
	sorted := slices.Clone(s)
	slices.Sort(sorted)
	var sum float64
	for _, v := range sorted {
		sum += float64(v)
	}
	return LatencySummary{
		Count: len(sorted),
		Mean:  ms(sum / float64(len(sorted))),
		P50:   ms(float64(percentile(sorted, 50))),
		P90:   ms(float64(percentile(sorted, 90))),
		P99:   ms(float64(percentile(sorted, 99))),
		Max:   ms(float64(sorted[len(sorted)-1])),
	}
}

func ms(ns float64) float64 { return ns / float64(time.Millisecond) }

// median of values (the mean of the two middle ones for an even count).
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// ratio is a/b, or 0 when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
