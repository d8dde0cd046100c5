// Package dmarc is DMARC (RFC 7489) for tollgate: it judges the message's
// RFC5322.From domain against the SPF and DKIM results the other methods
// recorded (read from the message's Authentication-Results results, never
// from those features), the domain's record (go-msgauth's dmarc parser) and
// the public suffix list (golang.org/x/net/publicsuffix), with an ARC-aware
// local policy override for trusted forwarders (RFC 8617 §7.2.1). Its
// statuses are Exim's $dmarc_status values.
package dmarc
