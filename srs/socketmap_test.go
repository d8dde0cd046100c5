package srs

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func socketmapRewriter(t testing.TB) ModuleOptions {
	s := mustNew(t, Options{Domain: "fwd.example", Secrets: []string{"tops3cr3t"}, HashLength: 4, MaxAge: 21 * Day, Now: at(time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC))})
	return ModuleOptions{SRS: s, Local: func(d string) bool { return strings.EqualFold(d, "example.org") }}
}

func smExchange(t *testing.T, c net.Conn, br *bufio.Reader, req string) string {
	t.Helper()
	if _, err := c.Write(appendNetstring(nil, req)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	reply, err := readNetstring(br, 4096)
	if err != nil {
		t.Fatalf("%q: %v", req, err)
	}
	return reply
}

func TestSocketmapLookups(t *testing.T) {
	metrics := NewMetrics(prometheus.NewRegistry())
	rw := socketmapRewriter(t)
	s, err := ListenSocketmap("inet:127.0.0.1:0", rw, SocketmapOptions{Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	fwd, _ := rw.SRS.Forward("alice@example.net")
	for _, tc := range []struct{ req, want string }{
		{"forward alice@example.net", "OK " + fwd},
		{"reverse " + fwd, "OK alice@example.net"},
		{"reverse " + strings.ToLower(fwd), "OK alice@example.net"},
		{"forward bob@example.org", "NOTFOUND Need not rewrite local domain."},
		{"forward bob@fwd.example", "NOTFOUND Need not rewrite local domain."},
		{"forward nobody", "NOTFOUND No domain."},
		{"forward", "NOTFOUND No domain."},
		{"  forward alice@example.net", "OK " + fwd},
		{"reverse postmaster@fwd.example", "NOTFOUND Not an SRS address."},
		{"reverse " + strings.Replace(fwd, "SRS0=", "SRS0=x", 1), "NOTFOUND Hash invalid in SRS address."},
		{"reverse SRS0=abc=JW=example.net=alice@fwd.example", "NOTFOUND Hash too short in SRS address."},
		{"reverse SRS0=abcd=J1=example.net=alice@fwd.example", "NOTFOUND Bad base32 character in timestamp."},
		{"reverse " + fwd[:strings.IndexByte(fwd, '@')] + "@elsewhere.example", "NOTFOUND Not an SRS address."},
		{"lookup alice@example.net", "PERM Invalid map."},
		{"forward " + strings.Repeat("a", 600) + "@example.net", "PERM Too big."},
		{"forward carol@example.net", "OK " + func() string { a, _ := rw.SRS.Forward("carol@example.net"); return a }()},
	} {
		if got := smExchange(t, c, br, tc.req); got != tc.want {
			t.Errorf("%.60q: %q, want %q", tc.req, got, tc.want)
		}
	}
	old := mustNew(t, Options{Domain: "fwd.example", Secrets: []string{"tops3cr3t"}, HashLength: 4, Now: at(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))})
	expired, _ := old.Forward("dave@example.net")
	if got := smExchange(t, c, br, "reverse "+expired); got != "NOTFOUND Time stamp out of date." {
		t.Errorf("expired: %q", got)
	}
	if n := testutil.ToFloat64(metrics.Forward.WithLabelValues("rewritten")); n != 3 {
		t.Errorf("forward rewritten = %v", n)
	}
	if n := testutil.ToFloat64(metrics.Reverse.WithLabelValues("bad_hash")); n != 1 {
		t.Errorf("reverse bad_hash = %v", n)
	}
	if n := testutil.ToFloat64(metrics.Socketmap.WithLabelValues("too_big")); n != 1 {
		t.Errorf("too_big = %v", n)
	}

	// A reload swaps the rewriter under open connections.
	other := mustNew(t, Options{Domain: "fwd.example", Secrets: []string{"new"}, HashLength: 4})
	s.SetRewriter(ModuleOptions{SRS: other})
	if got := smExchange(t, c, br, "reverse "+fwd); got != "NOTFOUND Hash invalid in SRS address." {
		t.Errorf("after SetRewriter: %q", got)
	}
}

// Malformed netstrings are answered "PERM Invalid query." and closed; a
// connection over the limit is closed at once; an idle one after the
// timeout. The server keeps serving throughout.
func TestSocketmapBounds(t *testing.T) {
	metrics := NewMetrics(prometheus.NewRegistry())
	s, err := ListenSocketmap("inet:127.0.0.1:0", socketmapRewriter(t), SocketmapOptions{Metrics: metrics, MaxConns: 2, IdleTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	for _, raw := range []string{"x:forward a@b,", "5:abc", "3:abc;", "99999999:", "0:,", "-1:,", "12 :forward a@b,"} {
		c := dial()
		c.Write([]byte(raw))
		if raw == "5:abc" {
			c.(*net.TCPConn).CloseWrite()
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, _ := io.ReadAll(c)
		want := "19:PERM Invalid query.,"
		if raw == "5:abc" {
			want = "" // cut short: nothing to answer
		}
		if string(got) != want {
			t.Errorf("%q: got %q, want %q then close", raw, got, want)
		}
	}
	// Two connections held; the third is closed at once.
	a, b := dial(), dial()
	for _, c := range []net.Conn{a, b} {
		if got := smExchange(t, c, bufio.NewReader(c), "forward x@example.net"); !strings.HasPrefix(got, "OK SRS0=") {
			t.Fatal(got)
		}
	}
	third := dial()
	third.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := io.ReadAll(third); len(got) != 0 || err != nil {
		t.Errorf("third connection: %q, %v; want closed", got, err)
	}
	// Idle ones are closed after the timeout, and their slots come back.
	a.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := io.ReadAll(a); len(got) != 0 || err != nil {
		t.Errorf("idle connection: %q, %v", got, err)
	}
	time.Sleep(100 * time.Millisecond)
	c := dial()
	if got := smExchange(t, c, bufio.NewReader(c), "forward y@example.net"); !strings.HasPrefix(got, "OK SRS0=") {
		t.Errorf("after the idle ones closed: %q", got)
	}
	for event, want := range map[string]float64{"malformed": 6, "connection_limit": 1} {
		if n := testutil.ToFloat64(metrics.Socketmap.WithLabelValues(event)); n != want {
			t.Errorf("%s = %v, want %v", event, n, want)
		}
	}
}

func TestSocketmapUnixSocket(t *testing.T) {
	path := t.TempDir() + "/srs.sock"
	for range 2 { // the second replaces the first's stale socket
		s, err := ListenSocketmap("unix:"+path, socketmapRewriter(t), SocketmapOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		if got := smExchange(t, c, bufio.NewReader(c), "forward x@example.net"); !strings.HasPrefix(got, "OK SRS0=") {
			t.Errorf("unix: %q", got)
		}
		c.Close()
		s.Close()
	}
	// A live socket is never taken over.
	live, err := ListenSocketmap("unix:"+path, socketmapRewriter(t), SocketmapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if s, err := ListenSocketmap("unix:"+path, socketmapRewriter(t), SocketmapOptions{}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("a second server on a live socket: %v", err)
		if s != nil {
			s.Close()
		}
	}
	if c, err := net.Dial("unix", path); err != nil {
		t.Errorf("the live socket is gone: %v", err)
	} else {
		c.Close()
	}
	for _, bad := range []string{"tcp:127.0.0.1:1", "unix:relative", "inet:nohost", ""} {
		if _, _, err := ParseSocketmapListen(bad); err == nil {
			t.Errorf("ParseSocketmapListen(%q) accepted", bad)
		}
	}
}

// FuzzSocketmap feeds arbitrary bytes to a connection: never a panic, every
// reply a netstring with one of the four answers, and a malformed request
// ends the connection. Seeds in testdata/fuzz/FuzzSocketmap.
func FuzzSocketmap(f *testing.F) {
	rw := socketmapRewriter(f)
	s := NewSocketmap(rw, SocketmapOptions{IdleTimeout: time.Second})
	f.Fuzz(func(t *testing.T, in []byte) {
		conn := &bufferConn{in: bytes.NewReader(in)}
		s.ServeConn(conn)
		out := conn.out.Bytes()
		br := bufio.NewReader(bytes.NewReader(out))
		for {
			r, err := readNetstring(br, 4096)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("reply %q: %v", out, err)
			}
			if !strings.HasPrefix(r, "OK ") && !strings.HasPrefix(r, "NOTFOUND ") && !strings.HasPrefix(r, "PERM ") && !strings.HasPrefix(r, "TEMP ") {
				t.Fatalf("reply %q", r)
			}
		}
	})
}

// bufferConn is a connection reading from in and writing to out.
type bufferConn struct {
	net.Conn
	in  *bytes.Reader
	out bytes.Buffer
}

func (c *bufferConn) Read(p []byte) (int, error)       { return c.in.Read(p) }
func (c *bufferConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *bufferConn) SetReadDeadline(time.Time) error  { return nil }
func (c *bufferConn) SetWriteDeadline(time.Time) error { return nil }

// A configuration that ends (or a reload that failed after registering)
// gives the server back to the newest one still open.
func TestSocketmapRegister(t *testing.T) {
	one := ModuleOptions{SRS: mustNew(t, Options{Domain: "one.example", Secrets: []string{"1"}})}
	two := ModuleOptions{SRS: mustNew(t, Options{Domain: "two.example", Secrets: []string{"2"}})}
	s := NewSocketmap(one, SocketmapOptions{})
	domain := func() string {
		r := s.Lookup(t.Context(), "forward", "a@example.net")
		return r[strings.LastIndexByte(r, '@')+1:]
	}
	r1 := s.Register(one)
	r2 := s.Register(two)
	if d := domain(); d != "two.example" {
		t.Errorf("newest registration: %s", d)
	}
	r2.Close()
	if d := domain(); d != "one.example" {
		t.Errorf("after the newest closed: %s", d)
	}
	r3 := s.Register(two)
	r1.Close()
	r1.Close()
	if d := domain(); d != "two.example" {
		t.Errorf("after an older one closed: %s", d)
	}
	r3.Close()
}
