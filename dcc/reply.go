package dcc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Verdict is what an overall result letter means for the message, as in
// Exim's DCC support.
type Verdict string

const (
	VerdictAccept Verdict = "accept" // A, S
	VerdictFail   Verdict = "fail"   // R (reject), G (greylist embargo)
	VerdictDefer  Verdict = "defer"  // T, and any other letter
)

// VerdictOf maps an overall result letter: A and S accept, R and G fail, T
// and anything else defer.
func VerdictOf(letter byte) Verdict {
	switch letter {
	case 'A', 'S':
		return VerdictAccept
	case 'R', 'G':
		return VerdictFail
	}
	return VerdictDefer
}

// Result is dccifd's answer for one message.
type Result struct {
	// Overall is the first reply line: 'A' accept, 'R' reject, 'G' greylist
	// embargo, 'T' temporary failure, 'S' accept for some (no longer sent).
	Overall byte
	// Rcpts has one letter per recipient in request order: 'A', 'R' or
	// 'G'. It is empty when dccifd answered T before reading the
	// recipients.
	Rcpts []byte
	// Header is the X-DCC header as one unfolded field, "X-DCC-...: value"
	// (folds and white space runs turned into single spaces), or "" when
	// dccifd sent none. See HeaderName, HeaderValue and FoldHeader.
	Header string
	// Verdict is VerdictOf(Overall).
	Verdict Verdict
}

// HeaderName is the X-DCC header's field name, "" without a header.
func (r *Result) HeaderName() string {
	name, _, _ := strings.Cut(r.Header, ":")
	return name
}

// HeaderValue is the X-DCC header's value without the leading space.
func (r *Result) HeaderValue() string {
	_, v, _ := strings.Cut(r.Header, ":")
	return strings.TrimLeft(v, " ")
}

// Rcpt returns the letter for recipient i (request order), or 0 when dccifd
// gave none.
func (r *Result) Rcpt(i int) byte {
	if i < 0 || i >= len(r.Rcpts) {
		return 0
	}
	return r.Rcpts[i]
}

// String renders the result for logs: "A AAR" or "G GG".
func (r *Result) String() string {
	return string(r.Overall) + " " + string(r.Rcpts)
}

// ParseReply reads a dccifd reply to the end and checks it strictly:
//
//	line 1: one letter, A R G T or S
//	line 2: one letter per recipient, A R or G (T may come with none)
//	then, with the "header" option: the X-DCC header (folded lines) and an
//	empty line; without it, nothing
//
// It reads at most what dccifd can write for nrcpts recipients, so a peer
// that sends too much cannot make it buffer without bound. Errors: EOF
// before the two result lines is ErrClosed, anything malformed ErrGarbage,
// a line longer than dccifd writes ErrTooBig; read errors are classified
// (a deadline is ErrTimeout).
func ParseReply(r io.Reader, nrcpts int) (*Result, error) {
	if nrcpts < 0 {
		return nil, newErr(ErrRequest, "parse reply", "negative recipient count", nil)
	}
	// Every line fits in the buffer: the recipient line, a header line
	// (at most MaxHeaderLen bytes in all), CRLF tolerance.
	size := max(nrcpts, MaxHeaderLen) + 8
	p := &replyParser{br: bufio.NewReaderSize(r, size)}

	line, err := p.line("result")
	if err != nil {
		if errors.Is(err, errNoData) {
			return nil, newErr(ErrClosed, "read reply", "connection closed without a reply", nil)
		}
		return nil, err
	}
	if len(line) != 1 || !strings.ContainsRune("ARGTS", rune(line[0])) {
		return nil, newErr(ErrGarbage, "read reply", fmt.Sprintf("bad result line %s", quote(line)), nil)
	}
	res := &Result{Overall: line[0], Verdict: VerdictOf(line[0])}

	line, err = p.line("recipient results")
	if err != nil {
		return nil, err
	}
	for _, c := range line {
		if c != 'A' && c != 'R' && c != 'G' {
			return nil, newErr(ErrGarbage, "read reply", fmt.Sprintf("bad recipient result line %s", quote(line)), nil)
		}
	}
	if len(line) != nrcpts && !(len(line) == 0 && res.Overall == 'T') {
		return nil, newErr(ErrGarbage, "read reply", fmt.Sprintf("%d recipient results for %d recipients", len(line), nrcpts), nil)
	}
	if len(line) > 0 {
		res.Rcpts = bytes.Clone(line)
	}

	// Without the header option dccifd stops here; with it, a header (or
	// none) and an empty line follow.
	line, err = p.line("header")
	if errors.Is(err, errNoData) {
		return res, nil
	}
	if err != nil {
		return nil, err
	}
	if len(line) > 0 {
		if res.Header, err = p.header(line); err != nil {
			return nil, err
		}
	}
	// The empty line was the last one.
	if _, err := p.br.ReadByte(); err == nil {
		return nil, newErr(ErrGarbage, "read reply", "data after the end of the reply", nil)
	} else if err != io.EOF {
		return nil, wrap("read reply", err)
	}
	return res, nil
}

var errNoData = errors.New("no data")

type replyParser struct {
	br        *bufio.Reader
	hdrLen    int
	lastBytes int
}

// line returns the next line without its LF (and one CR before it).
// errNoData: clean EOF before the line; EOF within a line is ErrClosed.
func (p *replyParser) line(what string) ([]byte, error) {
	b, err := p.br.ReadSlice('\n')
	p.lastBytes = len(b)
	switch {
	case err == nil:
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, newErr(ErrTooBig, "read reply", what+" line too long", nil)
	case err == io.EOF && len(b) == 0:
		if what == "header" {
			return nil, errNoData
		}
		if what == "result" {
			return nil, errNoData
		}
		return nil, newErr(ErrClosed, "read reply", "reply cut short before the "+what, nil)
	case err == io.EOF:
		return nil, newErr(ErrClosed, "read reply", "reply cut short in the "+what, nil)
	default:
		return nil, wrap("read reply", err)
	}
	b = b[:len(b)-1]
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b, nil
}

// header reads the X-DCC header that starts with first, up to and
// including the empty line, and returns it unfolded.
func (p *replyParser) header(first []byte) (string, error) {
	colon := bytes.IndexByte(first, ':')
	if colon <= 0 {
		return "", newErr(ErrGarbage, "read reply", fmt.Sprintf("not a header line %s", quote(first)), nil)
	}
	name := first[:colon]
	if len(name) < len("X-DCC-") || !strings.EqualFold(string(name[:len("X-DCC-")]), "X-DCC-") {
		return "", newErr(ErrGarbage, "read reply", fmt.Sprintf("not an X-DCC header %s", quote(name)), nil)
	}
	for _, c := range name {
		if c <= ' ' || c >= 127 {
			return "", newErr(ErrGarbage, "read reply", fmt.Sprintf("bad header name %s", quote(name)), nil)
		}
	}
	var sb strings.Builder
	sb.Grow(MaxHeaderLen)
	sb.Write(name)
	sb.WriteString(":")
	p.hdrLen = p.lastBytes
	rest := first[colon+1:]
	for {
		if err := appendWords(&sb, rest); err != nil {
			return "", err
		}
		line, err := p.line("header")
		if errors.Is(err, errNoData) {
			return "", newErr(ErrClosed, "read reply", "reply cut short in the header", nil)
		}
		if err != nil {
			return "", err
		}
		if len(line) == 0 {
			break
		}
		p.hdrLen += p.lastBytes
		if p.hdrLen > MaxHeaderLen {
			return "", newErr(ErrTooBig, "read reply", fmt.Sprintf("X-DCC header longer than %d bytes", MaxHeaderLen), nil)
		}
		if line[0] != ' ' && line[0] != '\t' {
			return "", newErr(ErrGarbage, "read reply", fmt.Sprintf("unexpected line after the X-DCC header %s", quote(line)), nil)
		}
		rest = line
	}
	if p.hdrLen > MaxHeaderLen {
		return "", newErr(ErrTooBig, "read reply", fmt.Sprintf("X-DCC header longer than %d bytes", MaxHeaderLen), nil)
	}
	return sb.String(), nil
}

// appendWords adds the white-space separated words of b, each after one
// space. Only printable ASCII is allowed: the header goes into messages.
func appendWords(sb *strings.Builder, b []byte) error {
	inWord := false
	for _, c := range b {
		switch {
		case c == ' ' || c == '\t':
			inWord = false
		case c > ' ' && c < 127:
			if !inWord {
				sb.WriteByte(' ')
				inWord = true
			}
			sb.WriteByte(c)
		default:
			return newErr(ErrGarbage, "read reply", fmt.Sprintf("control or 8-bit byte %#02x in the X-DCC header", c), nil)
		}
	}
	return nil
}

func quote(b []byte) string {
	if len(b) > 40 {
		return fmt.Sprintf("%q...", b[:40])
	}
	return fmt.Sprintf("%q", b)
}

// FoldHeader folds an X-DCC header value for adding to a message exactly as
// dccifd folds the header it writes (DCC 2.3.167, xhdr_add_str), so the
// field added is byte for byte the one dccifd logs. White space runs (and
// any folds) first become single spaces. dccifd builds the header from
// pieces: "host id;" right after the name (never folded away from it), then
// one piece per word, except "bulk rep", which is one piece. Each piece
// after the first is added after a space; when that pushes the column past
// width, the space becomes "\n\t" and the column restarts at the piece's
// length plus 9 (the tab counted as 8, and dccifd's count of the space it
// replaced, so a line after a fold is one column shorter than it could be).
// No fold is made once the header holds 238 bytes (dccifd's 240-byte
// buffer). A whitelist header ("host; whitelist") is one piece. width 0 or
// less is dccifd's 78. The result is the value only, without the leading
// space, folded with LF as go-milter hands header values to the MTA.
func FoldHeader(name, value string, width int) string {
	if width <= 0 {
		width = 78
	}
	words := strings.FieldsFunc(value, isWSP)
	if len(words) == 0 {
		return ""
	}
	pieces := dccPieces(words)
	var sb strings.Builder
	sb.Grow(len(value) + 8)
	sb.WriteString(pieces[0])
	// used counts what dccifd's buffer holds: the name, ": ", the pieces,
	// their separators and the newline it keeps after the last piece.
	col := len(name) + 2 + len(pieces[0])
	used := col + 1
	for _, p := range pieces[1:] {
		col += 1 + len(p)
		used += 1 + len(p)
		if col > width && used < MaxHeaderLen-2 {
			sb.WriteString("\n\t")
			col = len(p) + 9
			used++
		} else {
			sb.WriteByte(' ')
		}
		sb.WriteString(p)
	}
	return sb.String()
}

// dccPieces groups the words of an X-DCC value as dccifd adds them: the
// words up to the first one ending in ";" (host and server id), each word
// after it, "bulk rep" as one piece; a whitelist value is one piece.
func dccPieces(words []string) []string {
	if len(words) == 2 && strings.HasSuffix(words[0], ";") && words[1] == "whitelist" {
		return []string{words[0] + " " + words[1]}
	}
	first := len(words) - 1
	for i, w := range words {
		if strings.HasSuffix(w, ";") {
			first = i
			break
		}
	}
	pieces := []string{strings.Join(words[:first+1], " ")}
	for i := first + 1; i < len(words); i++ {
		if words[i] == "bulk" && i+1 < len(words) && words[i+1] == "rep" {
			pieces = append(pieces, "bulk rep")
			i++
			continue
		}
		pieces = append(pieces, words[i])
	}
	return pieces
}

func isWSP(r rune) bool { return r == ' ' || r == '\t' || r == '\r' || r == '\n' }
