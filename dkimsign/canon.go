package dkimsign

import (
	"crypto/sha256"
	"hash"
	"strings"
)

// Canonicalization algorithms (RFC 6376 §3.4).
const (
	canonSimple  = "simple"
	canonRelaxed = "relaxed"
)

// bodyHasher canonicalises a body as it streams in, in chunks cut anywhere,
// and hashes it with SHA-256 (RFC 6376 §3.4.3 and §3.4.4). Only CRLF ends
// a line; a lone CR or LF is an ordinary byte, as in dkimpy and Mail::DKIM.
type bodyHasher struct {
	relaxed     bool
	h           hash.Hash
	buf         []byte
	pendingCR   bool // a CR ended the last chunk
	wsp         bool // relaxed: white space seen and not yet written
	lineContent bool // the current line has content written
	emptyLines  int  // empty lines not yet written (dropped at the end)
	written     bool // any content at all
}

func newBodyHasher(canon string) *bodyHasher {
	return &bodyHasher{relaxed: canon == canonRelaxed, h: sha256.New(), buf: make([]byte, 0, 4096)}
}

func (b *bodyHasher) Write(p []byte) (int, error) {
	for i := 0; i < len(p); {
		c := p[i]
		if b.pendingCR {
			b.pendingCR = false
			if c == '\n' {
				b.endLine()
				i++
				continue
			}
			b.content([]byte{'\r'})
		}
		switch {
		case c == '\r':
			b.pendingCR = true
			i++
		case b.relaxed && (c == ' ' || c == '\t'):
			b.wsp = true
			i++
		default:
			// a run of plain bytes at once: most of a body
			j := i + 1
			for j < len(p) && p[j] != '\r' && (!b.relaxed || (p[j] != ' ' && p[j] != '\t')) {
				j++
			}
			b.content(p[i:j])
			i = j
		}
	}
	return len(p), nil
}

// content writes a run of content bytes, after the empty lines and the
// white space (relaxed: one SP for a run) that came before it.
func (b *bodyHasher) content(run []byte) {
	for ; b.emptyLines > 0; b.emptyLines-- {
		b.buf = append(b.buf, '\r', '\n')
		if len(b.buf) >= 4096 {
			b.flush()
		}
	}
	if b.wsp {
		b.buf = append(b.buf, ' ')
		b.wsp = false
	}
	if len(b.buf)+len(run) > 4096 {
		b.flush()
		if len(run) > 1024 {
			b.h.Write(run)
			run = nil
		}
	}
	b.buf = append(b.buf, run...)
	b.lineContent, b.written = true, true
}

// endLine: white space at the end of a line goes (relaxed), and empty
// lines wait until content follows them.
func (b *bodyHasher) endLine() {
	if b.lineContent {
		b.buf = append(b.buf, '\r', '\n')
		if len(b.buf) >= 4096 {
			b.flush()
		}
	} else {
		b.emptyLines++
	}
	b.wsp, b.lineContent = false, false
}

func (b *bodyHasher) flush() {
	b.h.Write(b.buf)
	b.buf = b.buf[:0]
}

// Sum ends the body and returns its hash: a last line without CRLF gets
// one, trailing empty lines go, and an empty simple body is one CRLF.
func (b *bodyHasher) Sum() []byte {
	if b.pendingCR {
		b.pendingCR = false
		b.content([]byte{'\r'})
	}
	if b.lineContent {
		if b.wsp {
			// dkimpy keeps white space on a last line without CRLF; SMTP
			// always ends a body with CRLF, so this is for other sources.
			b.buf = append(b.buf, ' ')
		}
		b.buf = append(b.buf, '\r', '\n')
	}
	if !b.written && !b.relaxed {
		b.buf = append(b.buf, '\r', '\n')
	}
	b.flush()
	return b.h.Sum(nil)
}

// fixLF turns the bare LF of folded values (Postfix hands them to milters
// so) into the CRLF they are on the wire.
func fixLF(v string) string {
	if !strings.Contains(v, "\n") {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\n' && (i == 0 || v[i-1] != '\r') {
			b.WriteByte('\r')
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// appendHeader appends one header field canonicalised, with its CRLF.
// value is the text after the colon, leading space included.
func appendHeader(dst []byte, canon, name, value string) []byte {
	return append(appendHeaderNoCRLF(dst, canon, name, value), '\r', '\n')
}

// appendHeaderNoCRLF is appendHeader without the CRLF: how the
// DKIM-Signature itself is hashed (RFC 6376 §3.7).
func appendHeaderNoCRLF(dst []byte, canon, name, value string) []byte {
	value = fixLF(value)
	if canon == canonSimple {
		return append(append(append(dst, name...), ':'), value...)
	}
	dst = append(dst, strings.ToLower(strings.TrimRight(name, " \t"))...)
	dst = append(dst, ':')
	wsp, started := false, false
	for i := 0; i < len(value); i++ {
		c := value[i]
		switch {
		case c == '\r' && i+1 < len(value) && value[i+1] == '\n':
			i++ // unfold
		case c == ' ' || c == '\t':
			wsp = true
		default:
			if wsp && started {
				dst = append(dst, ' ')
			}
			wsp, started = false, true
			dst = append(dst, c)
		}
	}
	return dst
}
