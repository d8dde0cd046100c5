package bmi

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// In-process servers for what the real daemons do not do on demand:
// garbage, silence, cut requests.

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// fakeServer accepts connections and hands each to handle.
type fakeServer struct {
	l    net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	reqs [][]byte // what handle recorded
}

func newFakeServer(t *testing.T, network string, handle func(c net.Conn, s *fakeServer)) *fakeServer {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "fake.sock")
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{l: l}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				handle(c, s)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		s.wg.Wait()
	})
	return s
}

func (s *fakeServer) addr() string { return s.l.Addr().String() }

func (s *fakeServer) record(b []byte) {
	s.mu.Lock()
	s.reqs = append(s.reqs, b)
	s.mu.Unlock()
}

func (s *fakeServer) requests() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.reqs...)
}

// readSpamdRequest reads a SPAMC request with its body.
func readSpamdRequest(br *bufio.Reader) ([]byte, error) {
	var head bytes.Buffer
	length := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return head.Bytes(), err
		}
		head.WriteString(line)
		if line == "\r\n" {
			break
		}
		if v, ok := strings.CutPrefix(line, "Content-length: "); ok {
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	body := make([]byte, length)
	n, err := io.ReadFull(br, body)
	return append(head.Bytes(), body[:n]...), err
}

// spamdReplying answers every complete request with reply.
func spamdReplying(reply string) func(net.Conn, *fakeServer) {
	return func(c net.Conn, s *fakeServer) {
		req, err := readSpamdRequest(bufio.NewReader(c))
		s.record(req)
		if err == nil {
			io.WriteString(c, reply)
		}
	}
}

func TestSpamdGarbageReplies(t *testing.T) {
	msg := cleanMessage()
	for _, c := range []struct {
		reply string
		kind  string
	}{
		{"", KindProtocol},
		{"SPAMD/1.1 0 EX_OK\r\n", KindProtocol},
		{"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 4", KindProtocol},
		{"SPAMD/1.1 0 EX_OK\r\nContent-length: 20\r\nSpam: True ; 7.0 / 5.0\r\n\r\nGTUBE", KindProtocol},
		{"HTTP/1.1 200 OK\r\n\r\n", KindGarbage},
		{"SPAMD/2.0 0 EX_OK\r\nSpam: True ; 1.0 / 5.0\r\n\r\n", KindGarbage},
		{"SPAMD/1.1 0 EX_OK\r\n\r\n", KindGarbage},
		{"SPAMD/1.1 0 EX_OK\r\nSpam: Maybe ; 1.0 / 5.0\r\n\r\n", KindGarbage},
		{"SPAMD/1.1 0 EX_OK\r\nSpam: True ; NaN / 5.0\r\n\r\n", KindGarbage},
		{"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1e999 / 5.0\r\n\r\n", KindGarbage},
		{"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 0x10 / 5.0\r\n\r\n", KindGarbage},
		{"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1.0 5.0\r\n\r\n", KindGarbage},
		{"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1.0 / 5.0\r\nSpam: False ; 1.0 / 5.0\r\n\r\n", KindGarbage},
		{"SPAMD/1.1 0 EX_OK\r\nContent-length: 3\r\nSpam: True ; 7.0 / 5.0\r\n\r\nA,BXYZ", KindGarbage},
		{"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 7.0 / 5.0\r\n\r\nGTUBE,<script>", KindGarbage},
		{"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 7.0 / 5.0\r\n\r\n" + strings.Repeat("A", 70000), KindGarbage},
		{"SPAMD/1.0 76 Bad header line: (EOF)\r\n", KindScanner},
		{"SPAMD/1.0 75 EX_TEMPFAIL\r\n", KindScanner},
		{"SPAMD/1.1 0 EX_OK\r\nSpam: False ; -0.0 / 5.0\r\n\r\n", ""},
		{"SPAMD/1.1 0 EX_OK\nContent-length: 13\nSpam: yes ; 6 / 5\n\nB_RULE,A_RULE", ""},
	} {
		srv := newFakeServer(t, "tcp", spamdReplying(c.reply))
		b := NewSpamd(SpamdOptions{Address: srv.addr(), Timeout: 5 * time.Second})
		res, err := b.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg)), env(), "lenient")
		if Kind(err) != c.kind {
			t.Errorf("reply %q: %+v, %v (kind %q); want kind %q", clip(c.reply), res, err, Kind(err), c.kind)
			continue
		}
		if err == nil && (res.Backend != "spamd" || res.Profile != "lenient") {
			t.Errorf("reply %q: %+v", clip(c.reply), res)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "bmi: spamd: ") {
			t.Errorf("error %q: want the bmi: spamd: prefix", err)
		}
	}
}

func TestSpamdRequestFormat(t *testing.T) {
	srv := newFakeServer(t, "unix", spamdReplying("SPAMD/1.1 0 EX_OK\r\nSpam: False ; 1.5 / 5.0\r\n\r\n"))
	msg := cleanMessage()
	b := NewSpamd(SpamdOptions{Address: srv.addr()})
	res := scan(t, b, msg, env("bob@example.net"), "strict")
	if res.Score != 1.5 || res.IsSpam || len(res.Symbols) != 0 {
		t.Errorf("%+v", res)
	}
	scan(t, b, msg, env(), "")
	reqs := srv.requests()
	want := fmt.Sprintf("SYMBOLS SPAMC/1.5\r\nContent-length: %d\r\nUser: strict\r\n\r\n%s", len(msg), msg)
	if string(reqs[0]) != want {
		t.Errorf("request:\n%q\nwant\n%q", reqs[0], want)
	}
	if want := fmt.Sprintf("SYMBOLS SPAMC/1.5\r\nContent-length: %d\r\n\r\n", len(msg)); !bytes.HasPrefix(reqs[1], []byte(want)) {
		t.Errorf("request without a profile: %q", clip(string(reqs[1])))
	}
	if _, err := b.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg)), env(), "../etc"); Kind(err) != KindSend {
		t.Errorf("a profile with a path in it: %v", err)
	}
}

// rspamdReplying reads a whole HTTP request and answers with status and body.
func rspamdReplying(status int, body string) func(net.Conn, *fakeServer) {
	return func(c net.Conn, s *fakeServer) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		b, err := io.ReadAll(req.Body)
		var dump bytes.Buffer
		req.Header.Write(&dump)
		dump.WriteString("\r\n")
		dump.Write(b)
		s.record(dump.Bytes())
		if err != nil {
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Length: %d\r\nContent-Type: application/json\r\n\r\n%s", status, http.StatusText(status), len(body), body)
	}
}

const noAction = `{"is_skipped":false,"score":0.0,"required_score":15.0,"action":"no action","symbols":{},"messages":{}}`

func TestRspamdGarbageReplies(t *testing.T) {
	msg := cleanMessage()
	raw := func(reply string) func(net.Conn, *fakeServer) {
		return func(c net.Conn, s *fakeServer) {
			req, err := http.ReadRequest(bufio.NewReader(c))
			if err != nil {
				return
			}
			if _, err := io.ReadAll(req.Body); err != nil {
				return
			}
			io.WriteString(c, reply)
		}
	}
	for _, c := range []struct {
		name   string
		handle func(net.Conn, *fakeServer)
		kind   string
	}{
		{"ok", rspamdReplying(200, noAction), ""},
		{"http 500", rspamdReplying(500, `{"error":"task timeout"}`), KindHTTPStatus},
		{"http 413", rspamdReplying(413, `{"error":"too large"}`), KindHTTPStatus},
		{"not json", rspamdReplying(200, `<html>hello</html>`), KindGarbage},
		{"json array", rspamdReplying(200, `[1,2]`), KindGarbage},
		{"no action field", rspamdReplying(200, `{"score":1,"required_score":15}`), KindGarbage},
		{"score a string", rspamdReplying(200, `{"action":"reject","score":"high","required_score":15}`), KindGarbage},
		{"score huge", rspamdReplying(200, `{"action":"reject","score":1e400,"required_score":15}`), KindGarbage},
		{"bad action", rspamdReplying(200, `{"action":"re\nject","score":1,"required_score":15}`), KindGarbage},
		{"bad symbol", rspamdReplying(200, `{"action":"reject","score":1,"required_score":15,"symbols":{"A B":{}}}`), KindGarbage},
		{"symbol not an object", rspamdReplying(200, `{"action":"reject","score":1,"required_score":15,"symbols":{"AB":3}}`), KindGarbage},
		{"trailing data", rspamdReplying(200, noAction+` {}`), KindGarbage},
		{"error in 200", rspamdReplying(200, `{"error":"something broke"}`), KindScanner},
		{"not http", raw("SPAMD/1.1 0 EX_OK\r\n\r\n"), KindGarbage},
		{"closed without reply", raw(""), KindProtocol},
		{"body cut", raw("HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"action\":"), KindProtocol},
		{"chunked ok", raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(noAction), noAction)), ""},
		{"close-delimited ok", raw("HTTP/1.0 200 OK\r\n\r\n" + noAction), ""},
	} {
		srv := newFakeServer(t, "tcp", c.handle)
		b := NewRspamd(RspamdOptions{Address: srv.addr(), Timeout: 5 * time.Second})
		res, err := b.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg)), env("bob@example.net"), "")
		if Kind(err) != c.kind {
			t.Errorf("%s: %+v, %v (kind %q); want kind %q", c.name, res, err, Kind(err), c.kind)
		}
		if c.kind == KindHTTPStatus {
			var e *Error
			if !asError(err, &e) || e.Status < 400 || !strings.Contains(err.Error(), "HTTP") {
				t.Errorf("%s: %v: want the status in the error", c.name, err)
			}
		}
	}
}

func asError(err error, e **Error) bool {
	x, ok := err.(*Error)
	if ok {
		*e = x
	}
	return ok
}

func TestRspamdRequestHeaders(t *testing.T) {
	srv := newFakeServer(t, "tcp", rspamdReplying(200, noAction))
	b := NewRspamd(RspamdOptions{Address: srv.addr(), Password: "s3cret"})
	msg := cleanMessage()
	e := Envelope{ClientIP: mustAddr("::ffff:192.0.2.7"), Helo: "mail.example.org", Hostname: "mail.example.org",
		Sender: "alice@example.org", Login: "alice", QueueID: "4AbCdE", Rcpts: []string{"bob@example.net", "Carol@example.net"}}
	scan(t, b, msg, e, "strict")
	scan(t, b, msg, Envelope{Rcpts: []string{"bob@example.net"}}, "")
	reqs := srv.requests()
	h, body, _ := bytes.Cut(reqs[0], []byte("\r\n\r\n"))
	for _, want := range []string{"From: alice@example.org", "Rcpt: bob@example.net", "Rcpt: Carol@example.net",
		"Ip: 192.0.2.7", "Helo: mail.example.org", "Hostname: mail.example.org", "User: alice",
		"Queue-Id: 4AbCdE", "Settings-Id: strict", "Password: s3cret", "Content-Length: " + strconv.Itoa(len(msg))} {
		if !strings.Contains(string(h)+"\r\n", want+"\r\n") {
			t.Errorf("request headers lack %q:\n%s", want, h)
		}
	}
	if bytes.Contains(h, []byte("Deliver-To")) {
		t.Error("Deliver-To with two recipients")
	}
	if !bytes.Equal(body, msg) {
		t.Error("body differs from the message")
	}
	h2, _, _ := bytes.Cut(reqs[1], []byte("\r\n\r\n"))
	for _, want := range []string{"From: <>", "Deliver-To: bob@example.net"} {
		if !strings.Contains(string(h2)+"\r\n", want+"\r\n") {
			t.Errorf("second request lacks %q:\n%s", want, h2)
		}
	}
	for _, bad := range []string{"Settings-Id", "Ip:", "Helo", "User", "Queue-Id"} {
		if bytes.Contains(h2, []byte(bad)) {
			t.Errorf("second request has an empty %s", bad)
		}
	}
	if _, err := b.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg)), Envelope{Helo: "x\r\nIP: 10.0.0.1"}, ""); Kind(err) != KindSend {
		t.Errorf("header injection through HELO: %v", err)
	}
}

// A server that reads only part of the request, answers "no action" at
// once and hangs up: the reply must not count, whatever the timing.
func TestRspamdCutRequestNeverTrusted(t *testing.T) {
	var mu sync.Mutex
	answered := 0
	srv := newFakeServer(t, "tcp", func(c net.Conn, s *fakeServer) {
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil || line == "\r\n" {
				break
			}
		}
		io.CopyN(io.Discard, br, 1000)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(noAction), noAction)
		mu.Lock()
		answered++
		mu.Unlock()
		// Unread data makes the close a reset.
		c.(*net.TCPConn).SetLinger(0)
	})
	// A small send buffer, so the body cannot all be handed to the kernel
	// before the reset arrives.
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4096) })
		}}
		return d.DialContext(ctx, network, addr)
	}
	msg := bytes.Repeat([]byte("X-Filler: 0123456789012345678901234567890123456789\r\n"), 80000) // 4 MB
	b := NewRspamd(RspamdOptions{Address: srv.addr(), Timeout: 10 * time.Second, MaxSize: 8 << 20, Dial: dial})
	for i := 0; i < 3; i++ {
		res, err := b.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg)), env(), "")
		if err == nil || Kind(err) != KindSend {
			t.Fatalf("cut request: %+v, %v (kind %q); want a send error", res, err, Kind(err))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if answered == 0 {
		t.Fatal("the server never answered: the test proves nothing")
	}
}

// The message source is longer than its announced size: the server got a
// complete request of size bytes and answered, but that is not the message.
func TestRspamdLongerSourceNotTrusted(t *testing.T) {
	srv := newFakeServer(t, "tcp", rspamdReplying(200, noAction))
	msg := cleanMessage()
	b := NewRspamd(RspamdOptions{Address: srv.addr()})
	if res, err := b.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg)-5), env(), ""); Kind(err) != KindSend {
		t.Fatalf("%+v, %v; want a send error", res, err)
	}
}

func TestTimeoutsAndDialErrors(t *testing.T) {
	silent := newFakeServer(t, "tcp", func(c net.Conn, s *fakeServer) {
		io.Copy(io.Discard, c) // reads everything, never answers
	})
	msg := cleanMessage()
	for _, b := range []Backend{
		NewSpamd(SpamdOptions{Address: silent.addr(), Timeout: 300 * time.Millisecond}),
		NewRspamd(RspamdOptions{Address: silent.addr(), Timeout: 300 * time.Millisecond}),
	} {
		start := time.Now()
		_, err := b.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg)), env(), "")
		if Kind(err) != KindTimeout || time.Since(start) > 3*time.Second {
			t.Errorf("%s silent server: %v after %v; want a timeout after 300ms", b.Name(), err, time.Since(start))
		}
		// The caller's deadline counts too, and cancellation is its own kind.
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err = b.Scan(ctx, bytes.NewReader(msg), int64(len(msg)), env(), "")
		cancel()
		if Kind(err) != KindTimeout {
			t.Errorf("%s caller deadline: %v", b.Name(), err)
		}
		ctx, cancel = context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		_, err = b.Scan(ctx, bytes.NewReader(msg), int64(len(msg)), env(), "")
		if Kind(err) != KindCanceled {
			t.Errorf("%s canceled: %v (kind %q)", b.Name(), err, Kind(err))
		}
	}

	closed := "127.0.0.1:" + strconv.Itoa(freePort(t))
	for _, b := range []Backend{
		NewSpamd(SpamdOptions{Address: closed}),
		NewRspamd(RspamdOptions{Address: closed}),
		NewSpamd(SpamdOptions{Address: filepath.Join(t.TempDir(), "none.sock")}),
		NewRspamd(RspamdOptions{Address: "unix:" + filepath.Join(t.TempDir(), "none.sock")}),
	} {
		if _, err := b.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg)), env(), ""); Kind(err) != KindDial {
			t.Errorf("%s nothing listening: %v (kind %q)", b.Name(), err, Kind(err))
		}
	}
}

func TestBackendConfigErrors(t *testing.T) {
	for _, c := range []interface{ Check() error }{
		NewSpamd(SpamdOptions{Address: "localhost"}),
		NewSpamd(SpamdOptions{Address: "127.0.0.1:783", Command: "REPORT"}),
		NewRspamd(RspamdOptions{Address: "unix:"}),
		NewRspamd(RspamdOptions{Address: ":11333"}),
		NewRspamd(RspamdOptions{Address: "127.0.0.1:11333", Password: "a\nb"}),
	} {
		if c.Check() == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	if err := NewSpamd(SpamdOptions{Address: "[::1]:783"}).Check(); err != nil {
		t.Error(err)
	}
	if Kind(nil) != "" || Kind(io.EOF) != KindOther || Kind(context.Canceled) != KindCanceled {
		t.Error("Kind of plain errors")
	}
}

func TestSpamdTooBig(t *testing.T) {
	b := NewSpamd(SpamdOptions{Address: "127.0.0.1:1", MaxSize: 100})
	msg := cleanMessage()
	_, err := b.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg)), env(), "")
	if Kind(err) != KindTooBig {
		t.Fatalf("got %v; want too_big without a connection", err)
	}
}
