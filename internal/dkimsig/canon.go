package dkimsig

import (
	"bytes"
	"encoding/binary"
	"hash"
	"math/bits"
	"strings"
)

// Canon is a canonicalization algorithm (RFC 6376 §3.4).
type Canon uint8

// The two algorithms: Simple is the zero value, the default of c=.
const (
	Simple Canon = iota
	Relaxed
)

func (c Canon) String() string {
	if c == Relaxed {
		return "relaxed"
	}
	return "simple"
}

// ParseCanon parses a c= value "header[/body]" (RFC 6376 §3.5); a missing
// body part means simple.
func ParseCanon(v string) (hdr, body Canon, ok bool) {
	h, b, slash := strings.Cut(v, "/")
	var okH, okB bool
	hdr, okH = canonByName(h)
	body, okB = Simple, true
	if slash {
		body, okB = canonByName(b)
	}
	return hdr, body, okH && okB
}

func canonByName(s string) (Canon, bool) {
	switch s {
	case "simple":
		return Simple, true
	case "relaxed":
		return Relaxed, true
	}
	return 0, false
}

// FixLF turns the bare LF of folded values (Postfix hands them to milters
// so) into the CRLF they are on the wire.
func FixLF(v string) string {
	if strings.IndexByte(v, '\n') < 0 {
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

// AppendHeader appends the canonical form of one header field including
// its CRLF. value is the raw text after the colon.
func AppendHeader(dst []byte, c Canon, name, value string) []byte {
	if c == Simple {
		dst = append(dst, name...)
		dst = append(dst, ':')
		dst = append(dst, value...)
		return append(dst, '\r', '\n')
	}
	return append(AppendRelaxedHeader(dst, name, value), '\r', '\n')
}

// AppendRelaxedHeader appends RFC 6376 §3.4.2 relaxed "name:value" without
// the CRLF: name lower-cased and stripped of trailing WSP, CRLF pairs
// deleted (unfolding), WSP runs reduced to one SP, WSP at both ends of
// the value removed.
func AppendRelaxedHeader(dst []byte, name, value string) []byte {
	name = strings.TrimRight(name, " \t")
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	dst = append(dst, ':')
	wsp, started := false, false
	for i := 0; i < len(value); i++ {
		c := value[i]
		switch c {
		case '\r':
			if i+1 < len(value) && value[i+1] == '\n' {
				i++
				continue
			}
		case ' ', '\t':
			wsp = true
			continue
		}
		if wsp && started {
			dst = append(dst, ' ')
		}
		wsp, started = false, true
		dst = append(dst, c)
	}
	return dst
}

// BodyHash is one body hash being computed, possibly cut at an l= limit.
type BodyHash struct {
	Hash  hash.Hash
	Limit int64  // -1 for the whole body
	N     int64  // canonical length seen so far, past the limit too
	Sum   []byte // the digest, once the BodyCanon feeding it is closed
}

func (b *BodyHash) write(p []byte) {
	if b.Limit >= 0 {
		room := b.Limit - b.N
		if room < int64(len(p)) {
			if room > 0 {
				b.Hash.Write(p[:room])
			}
			b.N += int64(len(p))
			return
		}
	}
	b.Hash.Write(p)
	b.N += int64(len(p))
}

var (
	crlfs  = []byte(strings.Repeat("\r\n", 64))
	space  = []byte{' '}
	crByte = []byte{'\r'}
)

// BodyCanon canonicalizes a body streamed in arbitrary chunks (RFC 6376
// §3.4.3 and §3.4.4) and feeds every sink. Only CRLF ends a line; a lone
// CR or LF is an ordinary byte, as in dkimpy and Mail::DKIM.
//
// It hashes the input in place: runs of input that canonicalize to
// themselves are written straight from the caller's buffer, and only what
// changes (tabs, WSP runs, trailing WSP, empty lines) is written
// separately. Empty lines are counted, not written, until a non-empty line
// follows, because trailing ones are dropped.
type BodyCanon struct {
	Relaxed bool
	Sinks   []*BodyHash

	emptyLines  int  // CRLFs of empty lines not yet written
	lineContent bool // the current line has written content
	wsp         bool // relaxed: WSP seen and not yet written
	cr          bool // the previous chunk ended in CR
	any         bool // anything but empty lines written
	done        bool

	// small pieces (a replacement space, a short span between two
	// fixes) are gathered here so that the hashes see few, large writes
	stage []byte
}

const stageSize = 4096

func (c *BodyCanon) emit(p []byte) {
	if len(p) <= 128 {
		if len(c.stage)+len(p) > stageSize {
			c.flush()
		}
		if c.stage == nil {
			c.stage = make([]byte, 0, stageSize)
		}
		c.stage = append(c.stage, p...)
		return
	}
	c.flush()
	for _, s := range c.Sinks {
		s.write(p)
	}
}

func (c *BodyCanon) flush() {
	if len(c.stage) == 0 {
		return
	}
	for _, s := range c.Sinks {
		s.write(c.stage)
	}
	c.stage = c.stage[:0]
}

// pending writes the held-back empty lines and WSP before new content.
func (c *BodyCanon) pending() {
	for c.emptyLines > 0 {
		n := c.emptyLines
		if n > len(crlfs)/2 {
			n = len(crlfs) / 2
		}
		c.emit(crlfs[:2*n])
		c.emptyLines -= n
	}
	if c.wsp {
		c.emit(space)
		c.wsp = false
	}
}

// eol handles one CRLF that is not part of an identity span.
func (c *BodyCanon) eol() {
	c.wsp = false
	if c.lineContent {
		c.emit(crlfs[:2])
		c.lineContent = false
		return
	}
	c.emptyLines++
}

// Write feeds the next chunk of the body, cut anywhere.
func (c *BodyCanon) Write(p []byte) {
	if c.done || len(p) == 0 {
		return
	}
	i := 0
	if c.cr {
		c.cr = false
		if p[0] == '\n' {
			c.eol()
			i = 1
		} else {
			c.pending()
			c.emit(crByte)
			c.lineContent, c.any = true, true
		}
	}
	if c.Relaxed {
		c.writeRelaxed(p, i)
	} else {
		c.writeSimple(p, i)
	}
}

func (c *BodyCanon) writeSimple(p []byte, i int) {
	n := len(p)
	start := -1 // start of the identity span, -1 if none
	for i < n {
		if p[i] != '\r' {
			if start < 0 {
				c.pending()
				start = i
			}
			c.lineContent, c.any = true, true
			j := indexCR(p[i:])
			if j < 0 {
				i = n
				break
			}
			i += j
			continue
		}
		if i+1 == n {
			if start >= 0 {
				c.emit(p[start:i])
				start = -1
			}
			c.cr = true
			return
		}
		if p[i+1] != '\n' { // a lone CR is content
			if start < 0 {
				c.pending()
				start = i
			}
			c.lineContent, c.any = true, true
			i++
			continue
		}
		if c.lineContent {
			if start < 0 {
				start = i
			}
			c.lineContent = false
		} else {
			if start >= 0 {
				c.emit(p[start:i])
				start = -1
			}
			c.emptyLines++
		}
		i += 2
	}
	if start >= 0 {
		c.emit(p[start:n])
	}
}

// regular marks bytes that relaxed canonicalization copies unchanged.
var regular = func() (t [256]bool) {
	for i := range t {
		t[i] = true
	}
	t[' '], t['\t'], t['\r'] = false, false, false
	return
}()

func (c *BodyCanon) writeRelaxed(p []byte, i int) {
	n := len(p)
	start := -1
	for i < n {
		b := p[i]
		if regular[b] {
			if start < 0 {
				c.pending()
				start = i
			}
			c.lineContent, c.any = true, true
			i = skipPlain(p, i+1)
			continue
		}
		switch b {
		case ' ', '\t':
			if b == ' ' && start >= 0 && i+1 < n && regular[p[i+1]] {
				i++
				continue
			}
			if start >= 0 {
				c.emit(p[start:i])
				start = -1
			}
			c.wsp = true
			i++
		case '\r':
			if i+1 == n {
				if start >= 0 {
					c.emit(p[start:i])
					start = -1
				}
				c.cr = true
				return
			}
			if p[i+1] != '\n' { // a lone CR is content
				if start < 0 {
					c.pending()
					start = i
				}
				c.lineContent, c.any = true, true
				i++
				continue
			}
			if c.lineContent {
				// trailing WSP, if any, already broke the span and is
				// dropped here; the CRLF itself is output as it is
				c.wsp = false
				if start < 0 {
					start = i
				}
				c.lineContent = false
			} else {
				if start >= 0 {
					c.emit(p[start:i])
					start = -1
				}
				c.wsp = false
				c.emptyLines++
			}
			i += 2
		}
	}
	if start >= 0 {
		c.emit(p[start:n])
	}
}

// Close ends the body: a last line without CRLF gets one, trailing empty
// lines are dropped, and an empty simple body becomes a single CRLF. Every
// sink's Sum is set; later writes are ignored.
func (c *BodyCanon) Close() {
	if c.done {
		return
	}
	if c.cr {
		c.cr = false
		c.pending()
		c.emit(crByte)
		c.lineContent, c.any = true, true
	}
	if c.wsp {
		// WSP on a last line without CRLF is not "at the end of a line"
		// for dkimpy, which keeps it; SMTP always ends a body with CRLF,
		// so this only matters for agreeing with the reference.
		c.pending()
		c.lineContent, c.any = true, true
	}
	if c.lineContent {
		c.emit(crlfs[:2])
	}
	if !c.any && !c.Relaxed {
		c.emit(crlfs[:2])
	}
	c.flush()
	c.done = true
	for _, s := range c.Sinks {
		s.Sum = s.Hash.Sum(nil)
	}
}

func indexCR(p []byte) int { return bytes.IndexByte(p, '\r') }

const (
	lsb = 0x0101010101010101
	low = 0x7f7f7f7f7f7f7f7f
	msb = 0x8080808080808080
)

// ctlMask sets the high bit of every byte of w below 0x21 (space, tab,
// CR, LF and the other controls), exactly: no carry crosses bytes.
func ctlMask(w uint64) uint64 {
	return ^(((w & low) + lsb*(0x80-0x21)) | w) & msb
}

// eqMask sets the high bit of every byte of w equal to c, exactly.
func eqMask(w, c uint64) uint64 {
	x := w ^ (lsb * c)
	return ^(((x & low) + low) | x) & msb
}

// skipPlain returns the first index from i on that relaxed body
// canonicalization might not copy unchanged inside a span whose line has
// content: a control character other than space (tab, CR; a lone LF or
// other control is rare and sorted out by the caller), or a space
// followed by a space, a control or the end of p. A CRLF followed by a
// printable character is copied as it is and skipped too. It looks at
// eight bytes at a time, which is what makes relaxed hashing run near
// SHA-256 speed.
func skipPlain(p []byte, i int) int {
	n := len(p)
	for i+9 <= n {
		w := binary.LittleEndian.Uint64(p[i:])
		ctl := ctlMask(w)
		if ctl == 0 {
			i += 8
			continue
		}
		sp := eqMask(w, ' ')
		next := ctl >> 8
		if p[i+8] < 0x21 {
			next |= 1 << 63
		}
		if stop := ctl&^sp | sp&next; stop != 0 {
			j := i + bits.TrailingZeros64(stop)/8
			if p[j] == '\r' && j+2 < n && p[j+1] == '\n' && p[j+2] > ' ' {
				i = j + 3
				continue
			}
			return j
		}
		i += 8
	}
	for ; i < n; i++ {
		b := p[i]
		if regular[b] {
			continue
		}
		if b == ' ' && i+1 < n && regular[p[i+1]] {
			i++
			continue
		}
		if b == '\r' && i+2 < n && p[i+1] == '\n' && p[i+2] > ' ' {
			i += 2
			continue
		}
		return i
	}
	return n
}
