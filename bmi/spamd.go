package bmi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// SpamdOptions configure a SpamAssassin spamd backend (SPAMC/SPAMD 1.5).
type SpamdOptions struct {
	Address string        // "host:port", "/path/to/socket" or "unix:/path"
	Timeout time.Duration // the whole exchange; 0: DefaultTimeout
	MaxSize int64         // larger messages are not sent; 0: DefaultSpamdMaxSize
	// Command is "SYMBOLS" (default: the rule names come back, for symbol
	// conditions) or "CHECK" (score only; a few bytes less).
	Command string
	Dial    DialFunc // nil: net.Dialer
}

// Spamd scans with spamd.
type Spamd struct {
	o       SpamdOptions
	network string
	addr    string
	err     error
}

// NewSpamd returns a spamd backend. A bad address or command is reported by
// Check and by every Scan.
func NewSpamd(o SpamdOptions) *Spamd {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxSize <= 0 {
		o.MaxSize = DefaultSpamdMaxSize
	}
	o.Command = strings.ToUpper(o.Command)
	if o.Command == "" {
		o.Command = "SYMBOLS"
	}
	s := &Spamd{o: o}
	s.network, s.addr, s.err = splitAddress(o.Address)
	if s.err == nil && o.Command != "SYMBOLS" && o.Command != "CHECK" {
		s.err = fmt.Errorf("command %q: want SYMBOLS or CHECK", o.Command)
	}
	if s.err != nil {
		s.err = fmt.Errorf("bmi: spamd: %w", s.err)
	}
	return s
}

// Check reports a configuration error.
func (s *Spamd) Check() error { return s.err }

func (s *Spamd) Name() string    { return "spamd" }
func (s *Spamd) MaxSize() int64  { return s.o.MaxSize }
func (s *Spamd) Address() string { return s.o.Address }

// Scan sends the message with "User: <profile>" (spamd's per-user settings,
// e.g. --virtual-config-dir=DIR/%u with a required_score of its own). The
// envelope is not part of the SPAMD protocol: spamd reads what it needs from
// the headers.
func (s *Spamd) Scan(ctx context.Context, msg io.ReadSeeker, size int64, env Envelope, profile string) (*ScanResult, error) {
	if s.err != nil {
		return nil, &Error{Backend: "spamd", Kind: KindOther, Err: s.err}
	}
	if size > s.o.MaxSize {
		return nil, &Error{Backend: "spamd", Kind: KindTooBig, Err: fmt.Errorf("%w: %d bytes, max_size %d", ErrTooBig, size, s.o.MaxSize)}
	}
	if profile != "" {
		if err := ValidProfile(profile); err != nil {
			return nil, &Error{Backend: "spamd", Kind: KindSend, Err: err}
		}
	}
	res, err := exchange(ctx, "spamd", s.o.Dial, s.network, s.addr, s.o.Timeout,
		func(w *bufio.Writer) error {
			fmt.Fprintf(w, "%s SPAMC/1.5\r\nContent-length: %d\r\n", s.o.Command, size)
			if profile != "" {
				fmt.Fprintf(w, "User: %s\r\n", profile)
			}
			w.WriteString("\r\n")
			return copyExactly(w, msg, size)
		},
		func(r *bufio.Reader) (*ScanResult, error) { return ParseSpamdReply(r) })
	if err != nil {
		return nil, err
	}
	res.Profile = profile
	return res, nil
}

// Ping sends PING and waits for PONG: spamd is up and answering.
func (s *Spamd) Ping(ctx context.Context) error {
	if s.err != nil {
		return s.err
	}
	_, err := exchange(ctx, "spamd", s.o.Dial, s.network, s.addr, s.o.Timeout,
		func(w *bufio.Writer) error {
			_, err := w.WriteString("PING SPAMC/1.5\r\n\r\n")
			return err
		},
		func(r *bufio.Reader) (*ScanResult, error) {
			line, err := r.ReadString('\n')
			if err != nil {
				return nil, err
			}
			if f := strings.Fields(line); len(f) != 3 || !strings.HasPrefix(f[0], "SPAMD/") || f[1] != "0" || f[2] != "PONG" {
				return nil, newErr(KindGarbage, fmt.Errorf("PING answered %q", strings.TrimSpace(line)))
			}
			return &ScanResult{}, nil
		})
	return err
}

// maxSpamdReply bounds a reply: headers and the SYMBOLS list.
const maxSpamdReply = 64 << 10

// spamd's exit codes (sysexits.h), for error messages.
var spamdCodes = map[int]string{64: "EX_USAGE", 65: "EX_DATAERR", 66: "EX_NOINPUT", 67: "EX_NOUSER",
	68: "EX_NOHOST", 69: "EX_UNAVAILABLE", 70: "EX_SOFTWARE", 71: "EX_OSERR", 72: "EX_OSFILE",
	73: "EX_CANTCREAT", 74: "EX_IOERR", 75: "EX_TEMPFAIL", 76: "EX_PROTOCOL", 77: "EX_NOPERM", 78: "EX_CONFIG"}

// ParseSpamdReply reads a whole reply to CHECK or SYMBOLS, up to the end of
// the stream:
//
//	SPAMD/1.1 0 EX_OK
//	Content-length: 33            (SYMBOLS only)
//	Spam: True ; 1003.3 / 5.0
//
//	GTUBE,MISSING_DATE,NO_RECEIVED
//
// A non-zero code ("SPAMD/1.0 76 Bad header line") is a KindScanner error;
// anything unexpected is KindGarbage, a reply cut short KindProtocol.
func ParseSpamdReply(r io.Reader) (*ScanResult, error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReader(r)
	}
	lr := &limitedLines{r: br, left: maxSpamdReply}

	line, err := lr.line()
	if err != nil {
		if err == io.EOF {
			return nil, newErr(KindProtocol, errors.New("connection closed without a reply"))
		}
		return nil, err
	}
	f := strings.SplitN(line, " ", 3)
	if len(f) < 2 || !strings.HasPrefix(f[0], "SPAMD/") || !validVersion(f[0][len("SPAMD/"):]) {
		return nil, newErr(KindGarbage, fmt.Errorf("status line %q", clip(line)))
	}
	code, err := strconv.Atoi(f[1])
	if err != nil || code < 0 || len(f[1]) > 3 {
		return nil, newErr(KindGarbage, fmt.Errorf("status line %q", clip(line)))
	}
	if code != 0 {
		msg := ""
		if len(f) == 3 {
			msg = f[2]
		}
		name := spamdCodes[code]
		if name == "" {
			name = "code " + f[1]
		}
		return nil, &Error{Kind: KindScanner, Status: code, Err: fmt.Errorf("spamd refused the request: %s %s", name, clip(msg))}
	}

	res := &ScanResult{}
	var haveSpam bool
	contentLength := -1
	for {
		line, err := lr.line()
		if err != nil {
			if err == io.EOF {
				return nil, newErr(KindProtocol, errors.New("reply ends inside its headers"))
			}
			return nil, err
		}
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || strings.TrimSpace(name) != name {
			return nil, newErr(KindGarbage, fmt.Errorf("header line %q", clip(line)))
		}
		value = strings.TrimSpace(value)
		switch strings.ToLower(name) {
		case "spam":
			if haveSpam {
				return nil, newErr(KindGarbage, errors.New("two Spam headers"))
			}
			haveSpam = true
			if err := parseSpamHeader(value, res); err != nil {
				return nil, err
			}
		case "content-length":
			if contentLength >= 0 {
				return nil, newErr(KindGarbage, errors.New("two Content-length headers"))
			}
			n, err := strconv.Atoi(value)
			if err != nil || n < 0 || n > maxSpamdReply || len(value) > 6 {
				return nil, newErr(KindGarbage, fmt.Errorf("Content-length %q", clip(value)))
			}
			contentLength = n
		}
	}
	if !haveSpam {
		return nil, newErr(KindGarbage, errors.New("no Spam header"))
	}

	body, err := lr.rest()
	if err != nil {
		return nil, err
	}
	if contentLength >= 0 {
		switch {
		case len(body) < contentLength:
			return nil, newErr(KindProtocol, fmt.Errorf("reply body cut at %d of %d bytes", len(body), contentLength))
		case len(body) > contentLength:
			return nil, newErr(KindGarbage, fmt.Errorf("%d bytes after the reply body", len(body)-contentLength))
		}
	}
	syms, err := parseSymbolList(body)
	if err != nil {
		return nil, err
	}
	res.Symbols = syms
	return res, nil
}

// parseSpamHeader reads "True ; 1000.0 / 5.0" (True/False, or Yes/No as in
// REPORT_IFSPAM replies).
func parseSpamHeader(v string, res *ScanResult) error {
	flag, scores, ok := strings.Cut(v, ";")
	if !ok {
		return newErr(KindGarbage, fmt.Errorf("Spam header %q", clip(v)))
	}
	switch strings.ToLower(strings.TrimSpace(flag)) {
	case "true", "yes":
		res.IsSpam = true
	case "false", "no":
	default:
		return newErr(KindGarbage, fmt.Errorf("Spam header %q", clip(v)))
	}
	score, threshold, ok := strings.Cut(scores, "/")
	if !ok {
		return newErr(KindGarbage, fmt.Errorf("Spam header %q", clip(v)))
	}
	var err error
	if res.Score, err = parseScore(score); err != nil {
		return err
	}
	if res.Threshold, err = parseScore(threshold); err != nil {
		return err
	}
	return nil
}

// Scores are finite and at most maxScore in magnitude; smaller than minScore
// is 0 (sums of float scores leave dust like 5.551115123125783e-17). Within
// these bounds the encodings write every score in at most 28 characters.
const (
	maxScore = 1e9
	minScore = 1e-9
)

// parseScore reads a decimal number; -0 becomes 0 (spamd writes "-0.0").
func parseScore(s string) (float64, error) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 32 || strings.ContainsAny(s, "xXpP_") {
		return 0, newErr(KindGarbage, fmt.Errorf("score %q", clip(s)))
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.Abs(f) > maxScore {
		return 0, newErr(KindGarbage, fmt.Errorf("score %q", clip(s)))
	}
	if math.Abs(f) < minScore {
		f = 0
	}
	return f, nil
}

// parseSymbolList reads SYMBOLS' comma-separated rule names.
func parseSymbolList(body []byte) ([]string, error) {
	body = bytes.TrimRight(body, "\r\n")
	if len(body) == 0 {
		return nil, nil
	}
	var out []string
	for _, s := range strings.Split(string(body), ",") {
		s = strings.TrimSpace(s)
		if !validSymbol(s) {
			return nil, newErr(KindGarbage, fmt.Errorf("symbol %q", clip(s)))
		}
		out = append(out, s)
	}
	return sortedUnique(out), nil
}

// validSymbol: rule and symbol names are letters, digits and _ (rspamd also
// uses . and -), at most 128 bytes.
func validSymbol(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func sortedUnique(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, x := range s {
		if i == 0 || x != s[i-1] {
			out = append(out, x)
		}
	}
	return out
}

// validVersion: "1.1", "1.5"...
func validVersion(v string) bool {
	major, minor, ok := strings.Cut(v, ".")
	if !ok || major != "1" || minor == "" || len(minor) > 3 {
		return false
	}
	for i := 0; i < len(minor); i++ {
		if minor[i] < '0' || minor[i] > '9' {
			return false
		}
	}
	return true
}

// clip shortens what goes into an error message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// limitedLines reads CRLF (or LF) lines and then the rest, at most left
// bytes in all.
type limitedLines struct {
	r    *bufio.Reader
	left int
}

func (l *limitedLines) line() (string, error) {
	var b []byte
	for {
		c, err := l.r.ReadByte()
		if err != nil {
			if err == io.EOF && len(b) > 0 {
				return "", newErr(KindProtocol, errors.New("reply ends inside a line"))
			}
			if err == io.EOF {
				return "", io.EOF
			}
			return "", newErr(KindProtocol, err)
		}
		if l.left--; l.left < 0 {
			return "", newErr(KindGarbage, fmt.Errorf("reply longer than %d bytes", maxSpamdReply))
		}
		if c == '\n' {
			break
		}
		if c == 0 {
			return "", newErr(KindGarbage, errors.New("NUL in reply"))
		}
		b = append(b, c)
	}
	return strings.TrimSuffix(string(b), "\r"), nil
}

func (l *limitedLines) rest() ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(l.r, int64(l.left)+1))
	if err != nil {
		return nil, newErr(KindProtocol, err)
	}
	if len(b) > l.left {
		return nil, newErr(KindGarbage, fmt.Errorf("reply longer than %d bytes", maxSpamdReply))
	}
	l.left -= len(b)
	return b, nil
}
