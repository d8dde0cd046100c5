package bmi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// DialFunc opens a connection; net.Dialer's DialContext fits. Tests inject one.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// splitAddress tells a unix socket ("/path" or "unix:/path") from host:port.
func splitAddress(a string) (network, addr string, err error) {
	switch {
	case strings.HasPrefix(a, "unix:"):
		a = strings.TrimPrefix(a, "unix:")
		if a == "" {
			return "", "", errors.New("empty unix socket path")
		}
		return "unix", a, nil
	case strings.HasPrefix(a, "/"):
		return "unix", a, nil
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return "", "", fmt.Errorf("address %q: want host:port or a unix socket path: %w", a, err)
	}
	if host == "" || port == "" {
		return "", "", fmt.Errorf("address %q: want host:port or a unix socket path", a)
	}
	return "tcp", a, nil
}

// exchange is one request and its reply on a new connection, in this order
// and never overlapping: the whole request is written and flushed, and only
// then is the reply read. A request that fails anywhere while being written
// (the message source, the connection, the deadline) is abandoned and its
// reply is never read, so an early answer from a peer that gave up on the
// request (rspamd answers an empty POST with "no action") cannot be taken
// for a verdict. net/http does not give this guarantee: it returns a
// response that arrives while the body is still being written.
func exchange(parent context.Context, backend string, dial DialFunc, network, addr string, timeout time.Duration,
	write func(w *bufio.Writer) error, read func(r *bufio.Reader) (*ScanResult, error)) (*ScanResult, error) {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	conn, err := dial(ctx, network, addr)
	if err != nil {
		return nil, classify(parent, ctx, backend, KindDial, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	// A cancellation interrupts blocked reads and writes at once.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	bw := bufio.NewWriterSize(conn, 32<<10)
	if err := write(bw); err != nil {
		return nil, classify(parent, ctx, backend, KindSend, err)
	}
	if err := bw.Flush(); err != nil {
		return nil, classify(parent, ctx, backend, KindSend, err)
	}
	res, err := read(bufio.NewReaderSize(conn, 16<<10))
	if err != nil {
		return nil, classify(parent, ctx, backend, KindProtocol, err)
	}
	res.Backend = backend
	return res, nil
}

// checkField refuses a value that would break the request's header block.
func checkField(name, value string) error {
	for i := 0; i < len(value); i++ {
		if c := value[i]; c == '\r' || c == '\n' || c == 0 {
			return fmt.Errorf("%s: control character in %q", name, value)
		}
	}
	return nil
}
