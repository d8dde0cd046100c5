package dcc

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults.
const (
	DefaultAddress = "/var/dcc/dccifd"
	DefaultTimeout = 10 * time.Second
	// MaxHeaderLen is the largest X-DCC header dccifd writes
	// (DCC_MAX_XHDR_LEN), folds and final newline included.
	MaxHeaderLen = 240
)

// defaultOptions is the options line when Options.Options is empty.
var defaultOptions = []string{"header"}

// Options configures the dccifd client. The zero value talks to
// /var/dcc/dccifd with "header" and a 10 s budget.
type Options struct {
	// Address of dccifd: "/var/dcc/dccifd" or "unix:/path" (unix socket),
	// "host,port" (DCC's own form), "host port" (Exim's), "host:port",
	// "[v6]:port", "inet:host:port" or "tcp:host:port" (TCP).
	Address string

	// Options are the option words of the request's first line, e.g.
	// ["header", "grey-off"]. An entry may hold several words separated by
	// spaces. Empty means ["header"]. Words are checked against the words
	// dccifd knows (case-insensitively): dccifd hangs up without a reply on
	// an unknown one, so it is refused here instead. "body" and "cksums"
	// are known to dccifd but refused too: they make dccifd send the whole
	// message or its checksums back, which this client does not read.
	Options []string

	// Timeout is the total budget of one message for the time spent waiting
	// on dccifd: connecting, every write, and the reply. Time spent waiting
	// for the SMTP client between chunks does not count. 0 means 10 s.
	Timeout time.Duration

	// Dialer connects to dccifd; nil uses net.Dialer. Tests inject one.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
}

// knownOptions are the words dccifd 2.3.167 accepts on the first line
// (dccif.h, dccifd.c ascii_job), mapped to whether this client supports them.
var knownOptions = map[string]bool{
	"header":     true,
	"body":       false, // dccifd sends the whole message back
	"cksums":     false, // dccifd sends the checksums after the header
	"query":      true,
	"grey-off":   true,
	"no-grey":    true,
	"grey-query": true,
	"no-reject":  true,
	"spam":       true,
	"log":        true,
	"rcvd-next":  true,
	"rcvd-nxt":   true, // dccifd's original spelling; rcvd-next is the duplicate
}

// KnownOptions returns the option words this client sends, sorted.
func KnownOptions() []string {
	var out []string
	for _, w := range slices.Sorted(maps.Keys(knownOptions)) {
		if knownOptions[w] {
			out = append(out, w)
		}
	}
	return out
}

// ValidateOptions checks option words (entries may hold several words
// separated by spaces or tabs) and returns them lower-cased, one word per
// entry, without duplicates. All problems are reported at once.
func ValidateOptions(words ...string) ([]string, error) {
	var (
		out  []string
		errs []error
	)
	for _, entry := range words {
		if strings.ContainsAny(entry, "\r\n\x00") {
			errs = append(errs, newErr(ErrConfig, "option", fmt.Sprintf("%q: line break or NUL in an option word", entry), nil))
			continue
		}
		for _, w := range strings.Fields(entry) {
			lw := strings.ToLower(w)
			supported, known := knownOptions[lw]
			switch {
			case !known:
				errs = append(errs, newErr(ErrConfig, "option", fmt.Sprintf("unknown option word %q (dccifd would hang up without a reply); known: %s", w, strings.Join(KnownOptions(), ", ")), nil))
				continue
			case !supported:
				errs = append(errs, newErr(ErrConfig, "option", fmt.Sprintf("option word %q is not supported: dccifd would send the message or its checksums back instead of a short reply", w), nil))
				continue
			}
			dup := false
			for _, o := range out {
				if o == lw {
					dup = true
					break
				}
			}
			if !dup {
				out = append(out, lw)
			}
		}
	}
	return out, errors.Join(errs...)
}

// Validate checks the options: address, option words and timeout. All
// problems are reported at once; each matches ErrConfig.
func (o *Options) Validate() error {
	_, err := o.compile()
	return err
}

// compiled is a validated Options.
type compiled struct {
	network, addr string
	words         []string
	timeout       time.Duration
}

func (o *Options) compile() (*compiled, error) {
	var errs []error
	c := &compiled{timeout: o.Timeout}
	a := o.Address
	if a == "" {
		a = DefaultAddress
	}
	var err error
	if c.network, c.addr, err = ParseAddress(a); err != nil {
		errs = append(errs, err)
	}
	words := o.Options
	if len(strings.Fields(strings.Join(words, " "))) == 0 {
		words = defaultOptions
	}
	if c.words, err = ValidateOptions(words...); err != nil {
		errs = append(errs, err)
	}
	switch {
	case c.timeout < 0:
		errs = append(errs, newErr(ErrConfig, "timeout", fmt.Sprintf("negative timeout %v", c.timeout), nil))
	case c.timeout == 0:
		c.timeout = DefaultTimeout
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// ParseAddress turns a dccifd address into a network ("unix" or "tcp") and
// an address for net.Dial. Accepted forms:
//
//	/var/dcc/dccifd, ./dccifd, unix:/var/dcc/dccifd   unix socket
//	127.0.0.1,10045   ::1,10045   dcc.example,10045   DCC's host,port
//	127.0.0.1 10045                                   Exim's "ip port"
//	127.0.0.1:10045   [::1]:10045   dcc.example:10045
//	inet:127.0.0.1:10045   tcp:[::1]:10045
//
// The port must be numeric. A bare word ("dccifd") is refused: it could be
// a relative path or a host without a port.
func ParseAddress(s string) (network, addr string, err error) {
	bad := func(why string) (string, string, error) {
		return "", "", newErr(ErrConfig, "address", fmt.Sprintf("%q: %s", s, why), nil)
	}
	in := strings.TrimSpace(s)
	if in == "" {
		return bad("empty")
	}
	if strings.ContainsAny(in, "\r\n\x00") {
		return bad("control character")
	}
	lower := strings.ToLower(in)
	switch {
	case strings.HasPrefix(lower, "unix:"):
		p := in[len("unix:"):]
		if p == "" {
			return bad("empty socket path")
		}
		return "unix", p, nil
	case strings.HasPrefix(in, "/"), strings.HasPrefix(in, "./"), strings.HasPrefix(in, "../"):
		return "unix", in, nil
	case strings.HasPrefix(lower, "inet:"), strings.HasPrefix(lower, "inet6:"), strings.HasPrefix(lower, "tcp:"):
		rest := in[strings.IndexByte(in, ':')+1:]
		host, port, err := net.SplitHostPort(rest)
		if err != nil {
			return bad("want inet:host:port ([v6]:port for IPv6)")
		}
		return tcpAddr(s, host, port)
	case strings.Contains(in, ","):
		i := strings.LastIndexByte(in, ',')
		host := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(in[:i]), "["), "]")
		return tcpAddr(s, host, strings.TrimSpace(in[i+1:]))
	case strings.ContainsAny(in, " \t"):
		f := strings.Fields(in)
		if len(f) != 2 {
			return bad("want \"host port\"")
		}
		return tcpAddr(s, strings.TrimSuffix(strings.TrimPrefix(f[0], "["), "]"), f[1])
	case strings.Contains(in, ":"):
		host, port, err := net.SplitHostPort(in)
		if err != nil {
			return bad("want host:port ([v6]:port for IPv6), host,port, or a socket path starting with /")
		}
		return tcpAddr(s, host, port)
	}
	return bad("not a socket path (start it with / or unix:) nor host,port")
}

func tcpAddr(orig, host, port string) (string, string, error) {
	bad := func(why string) (string, string, error) {
		return "", "", newErr(ErrConfig, "address", fmt.Sprintf("%q: %s", orig, why), nil)
	}
	if host == "" {
		return bad("missing host")
	}
	if strings.ContainsAny(host, " \t/,[]") {
		return bad("bad host " + strconv.Quote(host))
	}
	if strings.Contains(host, ":") {
		if _, err := netip.ParseAddr(host); err != nil {
			return bad("bad IPv6 address " + strconv.Quote(host))
		}
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return bad("bad port " + strconv.Quote(port) + " (want 1-65535)")
	}
	return "tcp", net.JoinHostPort(host, strconv.FormatUint(n, 10)), nil
}
