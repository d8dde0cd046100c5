// Package bmi gives per-recipient verdicts in the manner of Exim's
// Brightmail (BMI) support, computed by a real scanner: spamd
// (SPAMC/SPAMD 1.5) or rspamd (/checkv2). It holds the scanner backends, the
// spool a message waits in before it is sent, the numbered rule engine
// (every matching rule fires, the first decides deliver, alternate or drop)
// and the X-Brightmail-Verdict and X-Brightmail-Tracker encodings.
//
// The milter module and the policy build on it; see README.md.
package bmi
