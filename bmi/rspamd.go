package bmi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// RspamdOptions configure an rspamd backend: POST /checkv2 on a normal
// worker (or the proxy in self-scan mode).
type RspamdOptions struct {
	Address string        // "host:port", "/path/to/socket" or "unix:/path"
	Timeout time.Duration // the whole exchange; 0: DefaultTimeout
	MaxSize int64         // larger messages are not sent; 0: DefaultRspamdMax
	// Password is sent as the Password header when set (a worker or proxy
	// that asks for one).
	Password string
	Dial     DialFunc // nil: net.Dialer
}

// Rspamd scans with rspamd.
type Rspamd struct {
	o       RspamdOptions
	network string
	addr    string
	host    string
	err     error
}

// NewRspamd returns an rspamd backend. A bad address is reported by Check
// and by every Scan.
func NewRspamd(o RspamdOptions) *Rspamd {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxSize <= 0 {
		o.MaxSize = DefaultRspamdMax
	}
	r := &Rspamd{o: o, host: "localhost"}
	r.network, r.addr, r.err = splitAddress(o.Address)
	if r.err == nil && r.network == "tcp" {
		r.host = r.addr
	}
	if r.err == nil {
		r.err = checkField("Password", o.Password)
	}
	if r.err != nil {
		r.err = fmt.Errorf("bmi: rspamd: %w", r.err)
	}
	return r
}

// Check reports a configuration error.
func (r *Rspamd) Check() error { return r.err }

func (r *Rspamd) Name() string    { return "rspamd" }
func (r *Rspamd) MaxSize() int64  { return r.o.MaxSize }
func (r *Rspamd) Address() string { return r.o.Address }

// Scan posts the message to /checkv2 with the envelope in rspamd's request
// headers (From, Rcpt per recipient, IP, Helo, Hostname, User, Queue-Id,
// Deliver-To when there is one recipient) and the profile as Settings-ID.
func (r *Rspamd) Scan(ctx context.Context, msg io.ReadSeeker, size int64, env Envelope, profile string) (*ScanResult, error) {
	if r.err != nil {
		return nil, &Error{Backend: "rspamd", Kind: KindOther, Err: r.err}
	}
	if size > r.o.MaxSize {
		return nil, &Error{Backend: "rspamd", Kind: KindTooBig, Err: fmt.Errorf("%w: %d bytes, max_size %d", ErrTooBig, size, r.o.MaxSize)}
	}
	if profile != "" {
		if err := ValidProfile(profile); err != nil {
			return nil, &Error{Backend: "rspamd", Kind: KindSend, Err: err}
		}
	}
	head, err := r.requestHead(size, env, profile)
	if err != nil {
		return nil, &Error{Backend: "rspamd", Kind: KindSend, Err: err}
	}
	res, err := exchange(ctx, "rspamd", r.o.Dial, r.network, r.addr, r.o.Timeout,
		func(w *bufio.Writer) error {
			w.Write(head)
			return copyExactly(w, msg, size)
		},
		readRspamdReply)
	if err != nil {
		return nil, err
	}
	res.Profile = profile
	return res, nil
}

// requestHead builds the request line and headers. One request per
// connection: Connection: close, and the reply is read only after the whole
// body went out (see exchange).
func (r *Rspamd) requestHead(size int64, env Envelope, profile string) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST /checkv2 HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nConnection: close\r\n", r.host, size)
	var err error
	add := func(name, value string) {
		if value == "" || err != nil {
			return
		}
		if err = checkField(name, value); err == nil {
			fmt.Fprintf(&b, "%s: %s\r\n", name, value)
		}
	}
	add("Password", r.o.Password)
	if env.Sender == "" {
		add("From", "<>") // the null sender, as rspamd's own milter sends it
	} else {
		add("From", env.Sender)
	}
	for _, rc := range env.Rcpts {
		add("Rcpt", rc)
	}
	if len(env.Rcpts) == 1 {
		add("Deliver-To", env.Rcpts[0])
	}
	if env.ClientIP.IsValid() {
		add("IP", env.ClientIP.Unmap().String())
	}
	add("Helo", env.Helo)
	add("Hostname", env.Hostname)
	add("User", env.Login)
	add("Queue-Id", env.QueueID)
	add("Settings-ID", profile)
	b.WriteString("\r\n")
	return b.Bytes(), err
}

// Ping asks GET /ping and wants "pong".
func (r *Rspamd) Ping(ctx context.Context) error {
	if r.err != nil {
		return r.err
	}
	_, err := exchange(ctx, "rspamd", r.o.Dial, r.network, r.addr, r.o.Timeout,
		func(w *bufio.Writer) error {
			_, err := fmt.Fprintf(w, "GET /ping HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", r.host)
			return err
		},
		func(br *bufio.Reader) (*ScanResult, error) {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return nil, newErr(KindGarbage, err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
			if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "pong" {
				return nil, newErr(KindGarbage, fmt.Errorf("/ping answered %d %q", resp.StatusCode, clip(string(body))))
			}
			return &ScanResult{}, nil
		})
	return err
}

// maxRspamdReply bounds the JSON reply (symbols with their options, URLs).
const maxRspamdReply = 4 << 20

// readRspamdReply reads the HTTP response that follows a fully sent request.
func readRspamdReply(br *bufio.Reader) (*ScanResult, error) {
	if _, err := br.Peek(1); err != nil {
		if err == io.EOF {
			return nil, newErr(KindProtocol, errors.New("connection closed without a reply"))
		}
		return nil, newErr(KindProtocol, err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		var ne net.Error
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.As(err, &ne) {
			return nil, newErr(KindProtocol, fmt.Errorf("reading the reply: %w", err))
		}
		return nil, newErr(KindGarbage, fmt.Errorf("reading the reply: %w", err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxRspamdReply+1))
	if err != nil {
		return nil, newErr(KindProtocol, fmt.Errorf("reading the reply body: %w", err))
	}
	if len(body) > maxRspamdReply {
		return nil, newErr(KindGarbage, fmt.Errorf("reply longer than %d bytes", maxRspamdReply))
	}
	if resp.StatusCode != http.StatusOK {
		detail := ""
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			detail = ": " + clip(e.Error)
		}
		return nil, &Error{Kind: KindHTTPStatus, Status: resp.StatusCode, Err: fmt.Errorf("HTTP %d%s", resp.StatusCode, detail)}
	}
	return ParseRspamdReply(body)
}

// SpamActions are the rspamd actions that make IsSpam true. "greylist" and
// "soft reject" are temporary decisions, not verdicts on the content.
var SpamActions = []string{"reject", "rewrite subject", "add header", "discard", "quarantine"}

// ParseRspamdReply reads a /checkv2 JSON reply. action, score and
// required_score are required; symbols is optional (the names are kept,
// sorted). A reply with "error" is KindScanner; anything else unusable is
// KindGarbage.
func ParseRspamdReply(body []byte) (*ScanResult, error) {
	var v struct {
		Action        *string                    `json:"action"`
		Score         *json.Number               `json:"score"`
		RequiredScore *json.Number               `json:"required_score"`
		Symbols       map[string]json.RawMessage `json:"symbols"`
		Error         *string                    `json:"error"`
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return nil, newErr(KindGarbage, fmt.Errorf("JSON: %w", err))
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, newErr(KindGarbage, errors.New("data after the JSON reply"))
	}
	if v.Error != nil {
		return nil, newErr(KindScanner, fmt.Errorf("rspamd: %s", clip(*v.Error)))
	}
	if v.Action == nil || v.Score == nil || v.RequiredScore == nil {
		return nil, newErr(KindGarbage, errors.New("reply without action, score or required_score"))
	}
	action := normalizeAction(*v.Action)
	if !validAction(action) {
		return nil, newErr(KindGarbage, fmt.Errorf("action %q", clip(*v.Action)))
	}
	res := &ScanResult{Action: action}
	var err error
	if res.Score, err = parseScore(v.Score.String()); err != nil {
		return nil, err
	}
	if res.Threshold, err = parseScore(v.RequiredScore.String()); err != nil {
		return nil, err
	}
	for _, a := range SpamActions {
		if action == a {
			res.IsSpam = true
		}
	}
	for name, raw := range v.Symbols {
		if !validSymbol(name) {
			return nil, newErr(KindGarbage, fmt.Errorf("symbol %q", clip(name)))
		}
		if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' {
			return nil, newErr(KindGarbage, fmt.Errorf("symbol %s is not an object", name))
		}
		res.Symbols = append(res.Symbols, name)
	}
	res.Symbols = sortedUnique(res.Symbols)
	return res, nil
}

// normalizeAction lower-cases an action and writes "add_header" as rspamd's
// configuration also allows, "add header".
func normalizeAction(a string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimSpace(a)), "_", " ")
}

func validAction(a string) bool {
	if a == "" || len(a) > 64 {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == ' ' || c == '-') {
			return false
		}
	}
	return true
}
