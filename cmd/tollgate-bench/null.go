package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	gomilter "github.com/d--j/go-milter"
)

// The null milter is the baseline: go-milter's NoOpMilter behind go-milter's
// server, with nothing of tollgate in between. What it negotiates:
//
//   - full (the default): protocol version 6, no actions, no protocol flags:
//     the MTA sends every event (connect, helo, mail, each rcpt, data, each
//     header, end of headers, each body chunk, end of message, unknown) and
//     waits for a reply to each; the milter requests no macros (the MTA sends
//     its defaults). Every reply is "continue", end of message "accept". This
//     is what a milter written without care for round trips costs.
//   - lean: the MTA sends connect, helo, mail and rcpt without waiting for
//     replies, no data, header or body events, and waits only at end of message
//     (OptNoData|OptNoHeaders|OptNoEOH|OptNoBody|OptNoUnknown and every OptNo*Reply).
//   - mirror (main command only): the protocol flags and actions the target
//     negotiated, so both sides cost the same round trips and only the work differs.
//   - a list of flags such as NoHeaders|NoBody|NoRcptReply (the OptNo... names
//     of go-milter, with or without the Opt prefix), or a number.
//
// It never skips (OptSkip is not negotiated), never modifies the message and
// accepts at end of message.

const leanProtocol = gomilter.OptNoData | gomilter.OptNoHeaders | gomilter.OptNoEOH | gomilter.OptNoBody |
	gomilter.OptNoUnknown | gomilter.OptNoReplies

var protocolNames = map[string]gomilter.OptProtocol{
	"noconnect": gomilter.OptNoConnect, "nohelo": gomilter.OptNoHelo, "nomailfrom": gomilter.OptNoMailFrom,
	"norcptto": gomilter.OptNoRcptTo, "nobody": gomilter.OptNoBody, "noheaders": gomilter.OptNoHeaders,
	"noeoh": gomilter.OptNoEOH, "noheaderreply": gomilter.OptNoHeaderReply, "nounknown": gomilter.OptNoUnknown,
	"nodata": gomilter.OptNoData, "skip": gomilter.OptSkip, "rcptrej": gomilter.OptRcptRej,
	"noconnreply": gomilter.OptNoConnReply, "noheloreply": gomilter.OptNoHeloReply, "nomailreply": gomilter.OptNoMailReply,
	"norcptreply": gomilter.OptNoRcptReply, "nodatareply": gomilter.OptNoDataReply, "nounknownreply": gomilter.OptNoUnknownReply,
	"noeohreply": gomilter.OptNoEOHReply, "nobodyreply": gomilter.OptNoBodyReply, "headerleadingspace": gomilter.OptHeaderLeadingSpace,
	"noreplies": gomilter.OptNoReplies,
}

var actionNames = map[string]gomilter.OptAction{
	"addheader": gomilter.OptAddHeader, "changebody": gomilter.OptChangeBody, "addrcpt": gomilter.OptAddRcpt,
	"removercpt": gomilter.OptRemoveRcpt, "changeheader": gomilter.OptChangeHeader, "quarantine": gomilter.OptQuarantine,
	"changefrom": gomilter.OptChangeFrom, "addrcptwithargs": gomilter.OptAddRcptWithArgs, "setmacros": gomilter.OptSetMacros,
}

// parseProtocol reads full, lean, a number or a |-separated list of flag names.
func parseProtocol(s string) (gomilter.OptProtocol, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "full", "", "0":
		return 0, nil
	case "lean":
		return leanProtocol, nil
	}
	v, err := parseFlags(s, protocolNames)
	return gomilter.OptProtocol(v), err
}

func parseActions(s string) (gomilter.OptAction, error) {
	if strings.TrimSpace(s) == "" || s == "none" {
		return 0, nil
	}
	v, err := parseFlags(s, actionNames)
	return gomilter.OptAction(v), err
}

func parseFlags[T ~uint32](s string, names map[string]T) (uint32, error) {
	if n, err := strconv.ParseUint(s, 0, 32); err == nil {
		return uint32(n), nil
	}
	var v uint32
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == '|' || r == '+' || r == ' ' }) {
		key := strings.TrimPrefix(strings.ToLower(f), "opt")
		bit, ok := names[key]
		if !ok {
			return 0, fmt.Errorf("unknown flag %q", f)
		}
		v |= uint32(bit)
	}
	return v, nil
}

// nullServer is a running null milter.
type nullServer struct {
	srv  *gomilter.Server
	ln   net.Listener
	done chan error
}

// startNull serves the null milter on ln.
func startNull(ln net.Listener, protocol gomilter.OptProtocol, actions gomilter.OptAction) *nullServer {
	srv := gomilter.NewServer(
		gomilter.WithMilter(func() gomilter.Milter { return gomilter.NoOpMilter{} }),
		gomilter.WithProtocols(protocol),
		gomilter.WithActions(actions),
	)
	n := &nullServer{srv: srv, ln: ln, done: make(chan error, 1)}
	go func() { n.done <- srv.Serve(ln) }()
	return n
}

func (n *nullServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := n.srv.Shutdown(ctx)
	if serr := <-n.done; serr != nil && !errors.Is(serr, gomilter.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// listen opens a milter socket; a unix socket path left behind is replaced.
func listen(spec string) (net.Listener, error) {
	network, addr, err := parseTarget(spec)
	if err != nil {
		// inet:127.0.0.1:0 (any free port) is fine for a listener.
		if k, rest, ok := strings.Cut(spec, ":"); ok && (k == "inet" || k == "tcp") && strings.HasSuffix(rest, ":0") {
			network, addr = "tcp", rest
		} else {
			return nil, err
		}
	}
	if network == "unix" {
		if fi, err := os.Lstat(addr); err == nil && fi.Mode()&os.ModeSocket != 0 {
			if c, err := net.DialTimeout("unix", addr, time.Second); err == nil {
				c.Close()
				return nil, fmt.Errorf("listen %s: another process serves this socket", addr)
			}
			os.Remove(addr)
		}
	}
	return net.Listen(network, addr)
}

func listenerSpec(ln net.Listener) string {
	if ln.Addr().Network() == "unix" {
		return "unix:" + ln.Addr().String()
	}
	return "inet:" + ln.Addr().String()
}

// cmdNull runs the null milter until SIGTERM/SIGINT or --max-time.
func cmdNull(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("null", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listenSpec := fs.String("listen", "", "socket `unix:/path|inet:host:port` (inet:127.0.0.1:0 picks a free port; the address is printed)")
	protocol := fs.String("protocol", "full", "what to negotiate: full (every event and reply), lean (connect, helo, mail, rcpt without replies; no data, headers or body; a reply at end of message), or flags such as NoHeaders|NoBody|NoRcptReply, or a number")
	actions := fs.String("actions", "", "actions to negotiate, e.g. AddHeader|ChangeHeader (default none)")
	metrics := fs.String("metrics-listen", "", "serve go_memstats_alloc_bytes_total and go_memstats_mallocs_total at http://ADDR/metrics")
	maxTime := fs.Duration("max-time", time.Hour, "stop after this long in any case")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *listenSpec == "" {
		fmt.Fprintln(stderr, "tollgate-bench null: --listen is required")
		return 2
	}
	p, err := parseProtocol(*protocol)
	if err != nil {
		fmt.Fprintf(stderr, "tollgate-bench null: --protocol: %v\n", err)
		return 2
	}
	a, err := parseActions(*actions)
	if err != nil {
		fmt.Fprintf(stderr, "tollgate-bench null: --actions: %v\n", err)
		return 2
	}
	ln, err := listen(*listenSpec)
	if err != nil {
		fmt.Fprintf(stderr, "tollgate-bench null: %v\n", err)
		return 1
	}
	if *metrics != "" {
		mln, err := net.Listen("tcp", *metrics)
		if err != nil {
			ln.Close()
			fmt.Fprintf(stderr, "tollgate-bench null: --metrics-listen: %v\n", err)
			return 1
		}
		hs := &http.Server{Handler: http.HandlerFunc(serveMemStats), ReadHeaderTimeout: 5 * time.Second}
		go hs.Serve(mln)
		defer hs.Close()
	}
	n := startNull(ln, p, a)
	w := bufio.NewWriter(stdout)
	fmt.Fprintf(w, "listening %s protocol=%q actions=%q\n", listenerSpec(ln), p.String(), a.String())
	w.Flush()
	select {
	case <-ctx.Done():
	case <-time.After(*maxTime):
	case err := <-n.done:
		fmt.Fprintf(stderr, "tollgate-bench null: %v\n", err)
		return 1
	}
	if ln.Addr().Network() == "unix" {
		defer os.Remove(ln.Addr().String())
	}
	if err := n.Close(); err != nil {
		fmt.Fprintf(stderr, "tollgate-bench null: %v\n", err)
	}
	return 0
}

// serveMemStats writes the two Go memory counters the bench reads, in the
// Prometheus text format, as a Go daemon with the Go collector does.
func serveMemStats(w http.ResponseWriter, _ *http.Request) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprintf(w, "go_memstats_alloc_bytes_total %d\ngo_memstats_mallocs_total %d\n", ms.TotalAlloc, ms.Mallocs)
}
