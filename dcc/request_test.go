package dcc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tollgate/tollgate/dcc/dcctest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const metrics = "X-DCC-EXAMPLE-Metrics: mx.example.org 1085; bulk Body=many Fuz1=many Fuz2=many rep=99%"

var typical = Envelope{
	ClientIP:   netip.MustParseAddr("192.0.2.25"),
	ClientName: "mail.sender.example",
	Helo:       "mail.sender.example",
	Sender:     "alice@sender.example",
	Rcpts:      []Rcpt{{Addr: "bob@example.org", User: "bob"}, {Addr: "carol@example.org"}},
}

func opts(s *dcctest.Server) Options {
	return Options{Address: s.DCCAddress(), Timeout: 5 * time.Second}
}

// send streams a small message and returns the result.
func send(t testing.TB, o Options, env Envelope, extra ...string) (*Result, error) {
	t.Helper()
	r, err := Start(context.Background(), o, env, extra...)
	if err != nil {
		return nil, err
	}
	defer r.Abort()
	for _, h := range [][2]string{{"From", " alice@sender.example"}, {"Subject", " hello\r\n\tfolded"}} {
		if err := r.Header(h[0], h[1]); err != nil {
			return nil, err
		}
	}
	if err := r.EndOfHeaders(); err != nil {
		return nil, err
	}
	if err := r.Body([]byte("Hi Bob.\r\n")); err != nil {
		return nil, err
	}
	return r.Finish()
}

func TestOverallLetters(t *testing.T) {
	cases := []struct {
		letter  byte
		rcpts   string
		verdict Verdict
	}{
		{'A', "AA", VerdictAccept},
		{'S', "AA", VerdictAccept},
		{'R', "RR", VerdictFail},
		{'G', "GG", VerdictFail},
		{'T', "", VerdictDefer},
	}
	s := dcctest.New(t, dcctest.Config{Handler: func(req *dcctest.Request) dcctest.Reply {
		return dcctest.Reply{Overall: req.Helo[0], Header: metrics}
	}})
	for _, c := range cases {
		t.Run(string(c.letter), func(t *testing.T) {
			env := typical
			env.Helo = string(c.letter) + ".example"
			res, err := send(t, opts(s), env)
			if err != nil {
				t.Fatal(err)
			}
			if res.Overall != c.letter || string(res.Rcpts) != c.rcpts || res.Verdict != c.verdict || res.Header != metrics {
				t.Fatalf("result %+v", res)
			}
		})
	}
}

func TestRecipientLetters(t *testing.T) {
	// dccifd never mixes G with other letters; the parser still keeps
	// whatever letters come, in order.
	s := dcctest.New(t, dcctest.Config{Handler: dcctest.Fixed(dcctest.Reply{Raw: []byte("A\nARG\n")})})
	env := typical
	env.Rcpts = []Rcpt{{Addr: "a@example.org"}, {Addr: "r@example.org"}, {Addr: "g@example.org"}}
	res, err := send(t, opts(s), env)
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Rcpts) != "ARG" || res.Rcpt(0) != 'A' || res.Rcpt(1) != 'R' || res.Rcpt(2) != 'G' || res.Rcpt(3) != 0 {
		t.Fatalf("recipients %q", res.Rcpts)
	}
	if res.String() != "A ARG" {
		t.Fatalf("String %q", res.String())
	}
	// Without the header option, dccifd sends no header and no empty line.
	res, err = send(t, Options{Address: s.DCCAddress(), Options: []string{"query"}}, env)
	if err != nil || res.Header != "" {
		t.Fatalf("without header: %+v, %v", res, err)
	}
}

// With no-reject, dccifd says A overall and R for the recipients that did
// not want the message.
func TestNoReject(t *testing.T) {
	s := dcctest.New(t, dcctest.Config{Handler: func(req *dcctest.Request) dcctest.Reply {
		if req.HasOption("no-reject") {
			return dcctest.Reply{Overall: 'A', Rcpts: "AR", Header: metrics}
		}
		return dcctest.Reply{Overall: 'R', Header: metrics}
	}})
	res, err := send(t, opts(s), typical, "no-reject")
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict != VerdictAccept || string(res.Rcpts) != "AR" {
		t.Fatalf("result %+v", res)
	}
	if got := s.Requests()[0].OptionsLine; got != "header no-reject" {
		t.Fatalf("options line %q", got)
	}
	res, err = send(t, opts(s), typical)
	if err != nil || res.Verdict != VerdictFail || string(res.Rcpts) != "RR" {
		t.Fatalf("without no-reject: %+v, %v", res, err)
	}
}

func TestDeferMapping(t *testing.T) {
	for _, c := range []struct {
		b byte
		v Verdict
	}{{'A', VerdictAccept}, {'S', VerdictAccept}, {'R', VerdictFail}, {'G', VerdictFail}, {'T', VerdictDefer}, {'X', VerdictDefer}, {0, VerdictDefer}} {
		if got := VerdictOf(c.b); got != c.v {
			t.Errorf("VerdictOf(%q) = %s, want %s", c.b, got, c.v)
		}
	}
	// T after the recipients were read: letters present.
	s := dcctest.New(t, dcctest.Config{Handler: dcctest.Fixed(dcctest.Reply{Overall: 'T', Rcpts: "AA"})})
	res, err := send(t, opts(s), typical)
	if err != nil || res.Verdict != VerdictDefer || string(res.Rcpts) != "AA" {
		t.Fatalf("%+v, %v", res, err)
	}
}

func TestFoldedHeader(t *testing.T) {
	long := "X-DCC-EXAMPLE-Metrics: mx.example.org 1085; bulk Body=many Fuz1=many Fuz2=many rep=99% Body=many Fuz1=123456 Fuz2=ok2"
	s := dcctest.New(t, dcctest.Config{Handler: dcctest.Fixed(dcctest.Reply{Overall: 'A', Header: long})})
	res, err := send(t, opts(s), typical)
	if err != nil {
		t.Fatal(err)
	}
	if res.Header != long {
		t.Fatalf("unfolded %q\nwant     %q", res.Header, long)
	}
	if res.HeaderName() != "X-DCC-EXAMPLE-Metrics" || res.HeaderValue() != strings.TrimPrefix(long, "X-DCC-EXAMPLE-Metrics: ") {
		t.Fatalf("name %q value %q", res.HeaderName(), res.HeaderValue())
	}
	folded := FoldHeader(res.HeaderName(), res.HeaderValue(), 0)
	field := res.HeaderName() + ": " + folded
	if !strings.Contains(folded, "\n\t") || strings.Contains(folded, "\r") {
		t.Fatalf("not folded with LF TAB: %q", folded)
	}
	for _, l := range strings.Split(field, "\n") {
		if n := len(strings.ReplaceAll(l, "\t", "        ")); n > 78 {
			t.Errorf("line of %d columns: %q", n, l)
		}
	}
	if got := strings.ReplaceAll(field, "\n\t", " "); got != long {
		t.Fatalf("refolded header unfolds to %q", got)
	}
	// Folded as dccifd folds it, byte for byte.
	if field+"\n" != dcctest.Fold(long) {
		t.Errorf("FoldHeader %q\ndccifd     %q", field+"\n", dcctest.Fold(long))
	}
}

func TestTimeoutWaitingForReply(t *testing.T) {
	s := dcctest.New(t, dcctest.Config{Handler: dcctest.Fixed(dcctest.Reply{Hang: true})})
	o := opts(s)
	o.Timeout = 300 * time.Millisecond
	start := time.Now()
	_, err := send(t, o, typical)
	d := time.Since(start)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, ErrUnavailable) || Kind(err) != "timeout" {
		t.Fatalf("err %v (kind %s)", err, Kind(err))
	}
	// The slack is for a loaded CI machine; the budget itself is exact.
	if d < 300*time.Millisecond || d > 300*time.Millisecond+2*time.Second {
		t.Fatalf("returned after %v, budget 300ms", d)
	}
}

// A dccifd that stops reading: our writes block, and their deadline fires.
func TestTimeoutWriting(t *testing.T) {
	for _, rep := range []dcctest.Reply{{StallRead: -1}, {ReadDelay: 20 * time.Millisecond, ReadChunk: 1024}} {
		t.Run(fmt.Sprintf("stall=%v,delay=%v", rep.StallRead, rep.ReadDelay), func(t *testing.T) {
			s := dcctest.New(t, dcctest.Config{Handler: dcctest.Fixed(rep), RecordLimit: -1})
			o := opts(s)
			o.Timeout = 300 * time.Millisecond
			start := time.Now()
			r, err := Start(context.Background(), o, typical)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Abort()
			chunk := bytes.Repeat([]byte("x"), 64<<10)
			var werr error
			for i := 0; i < 160 && werr == nil; i++ { // 10 MB: far more than socket buffers
				werr = r.Body(chunk)
			}
			_, err = r.Finish()
			d := time.Since(start)
			if !errors.Is(werr, ErrTimeout) || !errors.Is(err, ErrTimeout) {
				t.Fatalf("body error %v, finish error %v", werr, err)
			}
			if d > 300*time.Millisecond+2*time.Second {
				t.Fatalf("returned after %v, budget 300ms", d)
			}
			if r.Waited() < 300*time.Millisecond {
				t.Fatalf("waited %v", r.Waited())
			}
		})
	}
}

// The budget counts time spent waiting on dccifd, not on the SMTP client.
func TestBudgetExcludesClientTime(t *testing.T) {
	s := dcctest.New(t, dcctest.Config{})
	o := opts(s)
	o.Timeout = time.Second
	r, err := Start(context.Background(), o, typical)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Abort()
	r.Header("Subject", " slow client")
	time.Sleep(1100 * time.Millisecond)
	r.Body([]byte("late body\r\n"))
	res, err := r.Finish()
	if err != nil || res.Overall != 'A' {
		t.Fatalf("%+v, %v", res, err)
	}
	if r.Waited() >= time.Second {
		t.Fatalf("waited %v", r.Waited())
	}
}

func TestConnectionRefused(t *testing.T) {
	dir := t.TempDir()
	// A TCP port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcp := ln.Addr().(*net.TCPAddr)
	ln.Close()
	// A unix socket file nobody listens on.
	stale := filepath.Join(dir, "stale")
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ul.SetUnlinkOnClose(false)
	ul.Close()
	for _, addr := range []string{filepath.Join(dir, "missing"), stale, fmt.Sprintf("127.0.0.1,%d", tcp.Port)} {
		t.Run(addr, func(t *testing.T) {
			_, err := send(t, Options{Address: addr, Timeout: time.Second}, typical)
			if !errors.Is(err, ErrDial) || !errors.Is(err, ErrUnavailable) || Kind(err) != "dial" {
				t.Fatalf("err %v (kind %s)", err, Kind(err))
			}
		})
	}
}

func TestClosedWithoutReply(t *testing.T) {
	for name, rep := range map[string]dcctest.Reply{
		"after the message":  {Close: true},
		"after the envelope": {CloseAfterEnvelope: true},
		"cut short":          {Raw: []byte("A\n")},
		"cut in a line":      {Raw: []byte("A\nA")},
		"cut in the header":  {Raw: []byte("A\nAA\nX-DCC-x-Metrics: h 1;\n")},
	} {
		t.Run(name, func(t *testing.T) {
			s := dcctest.New(t, dcctest.Config{Handler: dcctest.Fixed(rep)})
			_, err := send(t, opts(s), typical)
			if !errors.Is(err, ErrClosed) || Kind(err) != "closed" {
				t.Fatalf("err %v (kind %s)", err, Kind(err))
			}
		})
	}
}

// An older dccifd that does not know an option hangs up without a reply.
func TestUnknownOptionAtRuntime(t *testing.T) {
	s := dcctest.New(t, dcctest.Config{UnknownOptions: []string{"grey-query"}, AllowProtocolErrors: true})
	_, err := send(t, opts(s), typical, "grey-query")
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("err %v", err)
	}
}

func TestOversizedHeader(t *testing.T) {
	big := "X-DCC-EXAMPLE-Metrics: mx.example.org 1085;" + strings.Repeat(" Fuz1=many", 25)
	for name, rep := range map[string]dcctest.Reply{
		"folded":   {Overall: 'A', Header: big},
		"one line": {Overall: 'A', HeaderRaw: big + "\n"},
		"endless":  {Raw: append([]byte("A\nAA\nX-DCC-x: "), bytes.Repeat([]byte("y"), 100<<10)...)},
	} {
		t.Run(name, func(t *testing.T) {
			s := dcctest.New(t, dcctest.Config{Handler: dcctest.Fixed(rep)})
			_, err := send(t, opts(s), typical)
			if !errors.Is(err, ErrTooBig) || Kind(err) != "too_big" {
				t.Fatalf("err %v (kind %s)", err, Kind(err))
			}
		})
	}
}

func TestGarbage(t *testing.T) {
	for name, raw := range map[string]string{
		"http":              "HTTP/1.1 400 Bad Request\r\n\r\n",
		"unknown letter":    "X\nAA\n\n",
		"letter and more":   "AA\nAA\n\n",
		"too few rcpts":     "A\nA\n\n",
		"too many rcpts":    "A\nAAA\n\n",
		"bad rcpt letter":   "A\nAT\n\n",
		"not x-dcc":         "A\nAA\nReceived: from evil\n\n",
		"two headers":       "A\nAA\nX-DCC-x-Metrics: h 1\nX-Other: y\n\n",
		"data after end":    "A\nAA\n\nmore",
		"control in header": "A\nAA\nX-DCC-x-Metrics: h\x01 1\n\n",
	} {
		t.Run(name, func(t *testing.T) {
			s := dcctest.New(t, dcctest.Config{Handler: dcctest.Fixed(dcctest.Reply{Raw: []byte(raw)})})
			_, err := send(t, opts(s), typical)
			if !errors.Is(err, ErrGarbage) || Kind(err) != "garbage" {
				t.Fatalf("err %v (kind %s)", err, Kind(err))
			}
		})
	}
}

func TestUnknownOptionRefusedAtConfig(t *testing.T) {
	s := dcctest.New(t, dcctest.Config{})
	for _, o := range []Options{
		{Address: s.DCCAddress(), Options: []string{"header", "bogus"}},
		{Address: s.DCCAddress(), Options: []string{"header body"}},
		{Address: s.DCCAddress(), Options: []string{"cksums"}},
		{Address: s.DCCAddress(), Options: []string{"header\nquery"}},
	} {
		err := o.Validate()
		if !errors.Is(err, ErrConfig) || Kind(err) != "config" || errors.Is(err, ErrUnavailable) {
			t.Errorf("Validate(%q) = %v", o.Options, err)
		}
		if _, err := Start(context.Background(), o, typical); !errors.Is(err, ErrConfig) {
			t.Errorf("Start(%q) = %v", o.Options, err)
		}
	}
	if _, err := Start(context.Background(), opts(s), typical, "grey-of"); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), `"grey-of"`) {
		t.Errorf("extra option: %v", err)
	}
	if n := s.Accepted(); n != 0 {
		t.Fatalf("%d connections for refused options", n)
	}
	words, err := ValidateOptions("HEADER Grey-Off", "no-grey\tquery", "header")
	if err != nil || strings.Join(words, " ") != "header grey-off no-grey query" {
		t.Fatalf("ValidateOptions = %q, %v", words, err)
	}
	// Every problem at once.
	err = (&Options{Address: "nowhere", Options: []string{"x", "y"}, Timeout: -1}).Validate()
	if n := strings.Count(err.Error(), "\n") + 1; n != 4 {
		t.Fatalf("want 4 errors, got %d: %v", n, err)
	}
}

func TestDefaultOptionsLine(t *testing.T) {
	s := dcctest.New(t, dcctest.Config{})
	for _, c := range []struct {
		opts  []string
		extra []string
		want  string
	}{
		{nil, nil, "header"},
		{[]string{" "}, nil, "header"},
		{[]string{"header grey-off"}, []string{"query", "GREY-OFF"}, "header grey-off query"},
		{[]string{"query"}, nil, "query"},
	} {
		o := opts(s)
		o.Options = c.opts
		if _, err := send(t, o, typical, c.extra...); err != nil {
			t.Fatal(err)
		}
		reqs := s.Requests()
		if got := reqs[len(reqs)-1].OptionsLine; got != c.want {
			t.Errorf("options %q + %q: line %q, want %q", c.opts, c.extra, got, c.want)
		}
	}
}

func TestClientIPOverride(t *testing.T) {
	path := filepath.Join(t.TempDir(), "helo-ip")
	os.WriteFile(path, []byte("# multiple-IP sending clusters\nmail.cluster.example  192.0.2.10\nout.bulk.example: 2001:db8::25\n"), 0o600)
	m, err := LoadHeloMap(path)
	if err != nil {
		t.Fatal(err)
	}
	s := dcctest.New(t, dcctest.Config{})
	env := typical
	env.Helo = "MX7.Cluster.Example"
	env.ClientIP = netip.MustParseAddr("198.51.100.7")
	env.ClientName = ""
	if _, ok := LookupHelo(m, env.Helo); ok {
		t.Fatal("override for an unlisted HELO")
	}
	env.Helo = "Mail.Cluster.Example."
	ip, ok := LookupHelo(m, env.Helo)
	if !ok {
		t.Fatal("no override")
	}
	env.ClientIP = ip
	if _, err := send(t, opts(s), env); err != nil {
		t.Fatal(err)
	}
	r := s.Requests()[0]
	if r.ClientLine != "192.0.2.10" || r.ClientIP != ip || r.HasClientName {
		t.Fatalf("client line %q", r.ClientLine)
	}
}

func TestIPv6Client(t *testing.T) {
	s := dcctest.New(t, dcctest.Config{Network: "tcp"})
	for _, c := range []struct{ ip, name, line string }{
		{"2001:db8::25", "mail6.example", "2001:db8::25\rmail6.example"},
		{"fe80::1%eth0", "", "fe80::1"},
		{"::ffff:192.0.2.1", "", "192.0.2.1"},
		{"", "ignored.example", ""},
	} {
		env := typical
		env.ClientIP, _ = netip.ParseAddr(c.ip)
		env.ClientName = c.name
		if _, err := send(t, opts(s), env); err != nil {
			t.Fatal(err)
		}
		reqs := s.Requests()
		if got := reqs[len(reqs)-1].ClientLine; got != c.line {
			t.Errorf("client %q %q: line %q, want %q", c.ip, c.name, got, c.line)
		}
	}
}

func TestRecipientsWithUser(t *testing.T) {
	s := dcctest.New(t, dcctest.Config{})
	if _, err := send(t, opts(s), typical); err != nil {
		t.Fatal(err)
	}
	got := s.Requests()[0].Rcpts
	want := []dcctest.Rcpt{{Addr: "bob@example.org", User: "bob", HasUser: true}, {Addr: "carol@example.org"}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("recipients %+v", got)
	}
}

func TestNullSender(t *testing.T) {
	s := dcctest.New(t, dcctest.Config{})
	env := typical
	env.Sender = ""
	if _, err := send(t, opts(s), env); err != nil {
		t.Fatal(err)
	}
	if got := s.Requests()[0].Sender; got != "<>" {
		t.Fatalf("sender line %q", got)
	}
}

func TestExactRequestBytes(t *testing.T) {
	s := dcctest.New(t, dcctest.Config{})
	if _, err := send(t, opts(s), typical, "grey-off"); err != nil {
		t.Fatal(err)
	}
	want := "header grey-off\n" +
		"192.0.2.25\rmail.sender.example\n" +
		"mail.sender.example\n" +
		"alice@sender.example\n" +
		"bob@example.org\rbob\n" +
		"carol@example.org\n" +
		"\n" +
		"From: alice@sender.example\r\n" +
		"Subject: hello\r\n\tfolded\r\n" +
		"\r\n" +
		"Hi Bob.\r\n"
	r := s.Requests()[0]
	if string(r.Raw) != want {
		t.Fatalf("request\n%q\nwant\n%q", r.Raw, want)
	}
	if !r.HalfClosed || !r.Replied || r.Err != nil {
		t.Fatalf("request %+v", r)
	}
}

func TestBadRequests(t *testing.T) {
	s := dcctest.New(t, dcctest.Config{})
	for name, env := range map[string]Envelope{
		"empty recipient":    {Rcpts: []Rcpt{{Addr: ""}}},
		"null recipient":     {Rcpts: []Rcpt{{Addr: "<>"}}},
		"LF in HELO":         {Helo: "a\nb", Rcpts: []Rcpt{{Addr: "x@example.org"}}},
		"CR in sender":       {Sender: "a\r@b", Rcpts: []Rcpt{{Addr: "x@example.org"}}},
		"CR in user":         {Rcpts: []Rcpt{{Addr: "x@example.org", User: "a\rb"}}},
		"LF in client name":  {ClientIP: netip.MustParseAddr("192.0.2.1"), ClientName: "a\nb", Rcpts: []Rcpt{{Addr: "x@example.org"}}},
		"NUL in a recipient": {Rcpts: []Rcpt{{Addr: "x\x00@example.org"}}},
	} {
		if _, err := Start(context.Background(), opts(s), env); !errors.Is(err, ErrRequest) || Kind(err) != "bad_request" {
			t.Errorf("%s: %v", name, err)
		}
	}
	if n := s.Accepted(); n != 0 {
		t.Fatalf("%d connections for refused envelopes", n)
	}
	for name, h := range map[string][2]string{
		"bare LF":    {"Subject", " a\nb"},
		"final CRLF": {"Subject", " a\r\n"},
		"colon":      {"Sub:ject", " a"},
		"empty name": {"", " a"},
		"NUL":        {"Subject", " a\x00"},
	} {
		r, err := Start(context.Background(), opts(s), typical)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Header(h[0], h[1]); !errors.Is(err, ErrRequest) {
			t.Errorf("%s: %v", name, err)
		}
		if _, err := r.Finish(); !errors.Is(err, ErrRequest) {
			t.Errorf("%s: Finish after a bad header: %v", name, err)
		}
	}
}

func TestCallOrder(t *testing.T) {
	s := dcctest.New(t, dcctest.Config{})
	r, err := Start(context.Background(), opts(s), typical)
	if err != nil {
		t.Fatal(err)
	}
	// Body without EndOfHeaders writes the empty line itself.
	r.Header("Subject", " x")
	r.Body([]byte("b"))
	if err := r.Header("X-Late", " y"); !errors.Is(err, ErrRequest) {
		t.Fatalf("header after body: %v", err)
	}
	r.Abort()
	r.Abort()

	r, err = Start(context.Background(), opts(s), typical)
	if err != nil {
		t.Fatal(err)
	}
	r.Header("Subject", " x")
	if _, err := r.Finish(); err != nil {
		t.Fatal(err)
	}
	if err := r.Body([]byte("late")); !errors.Is(err, ErrRequest) {
		t.Fatalf("body after finish: %v", err)
	}
	if _, err := r.Finish(); !errors.Is(err, ErrRequest) {
		t.Fatalf("finish twice: %v", err)
	}
	r.Abort()
	// The aborted request ends at some point too (with what was flushed:
	// the envelope); the finished one is a headers-only message.
	found := false
	for _, req := range s.WaitRequests(2, time.Second) {
		found = found || strings.HasSuffix(string(req.Raw), "\n\nSubject: x\r\n\r\n") && req.Replied
	}
	if !found {
		t.Fatalf("no headers-only message among %d requests", len(s.Requests()))
	}

	var nilReq *Request
	nilReq.Abort()
}

func TestCancel(t *testing.T) {
	s := dcctest.New(t, dcctest.Config{Handler: dcctest.Fixed(dcctest.Reply{Hang: true})})
	ctx, cancel := context.WithCancel(context.Background())
	r, err := Start(ctx, opts(s), typical)
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err = r.Finish()
	if !errors.Is(err, ErrCanceled) || errors.Is(err, ErrUnavailable) || time.Since(start) > time.Second {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
	if _, err := Start(ctx, opts(s), typical); !errors.Is(err, ErrCanceled) {
		t.Fatalf("start with a canceled context: %v", err)
	}

	// Abort from another goroutine stops a pending Finish.
	r, err = Start(context.Background(), opts(s), typical)
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(100*time.Millisecond, r.Abort)
	if _, err = r.Finish(); !errors.Is(err, ErrCanceled) {
		t.Fatalf("aborted: %v", err)
	}
}

func TestInjectedDialer(t *testing.T) {
	s := dcctest.New(t, dcctest.Config{})
	var got []string
	o := Options{Address: "dcc.example,10045", Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
		got = append(got, network+" "+addr)
		var d net.Dialer
		return d.DialContext(ctx, s.Network(), s.Addr())
	}}
	if _, err := send(t, o, typical); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "tcp dcc.example:10045" {
		t.Fatalf("dialed %q", got)
	}
	// A connection that cannot half-close is an error, not a hang.
	o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		a, b := net.Pipe()
		go func() {
			buf := make([]byte, 4096)
			for {
				if _, err := b.Read(buf); err != nil {
					return
				}
			}
		}()
		return a, nil
	}
	if _, err := send(t, o, typical); !errors.Is(err, ErrIO) {
		t.Fatalf("pipe: %v", err)
	}
	// A dialer that hangs is bounded by the budget.
	o.Timeout = 100 * time.Millisecond
	o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if _, err := send(t, o, typical); !errors.Is(err, ErrTimeout) {
		t.Fatalf("hanging dialer: %v", err)
	}
}

func TestTCPAddressForms(t *testing.T) {
	s := dcctest.New(t, dcctest.Config{Network: "tcp"})
	_, port, _ := net.SplitHostPort(s.Addr())
	for _, a := range []string{"127.0.0.1," + port, "127.0.0.1:" + port, "inet:127.0.0.1:" + port, "127.0.0.1 " + port} {
		if _, err := send(t, Options{Address: a}, typical); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
	u := dcctest.New(t, dcctest.Config{})
	if _, err := send(t, Options{Address: "unix:" + u.Addr()}, typical); err != nil {
		t.Errorf("unix: %v", err)
	}
}

func TestConcurrent(t *testing.T) {
	s := dcctest.New(t, dcctest.Config{Handler: func(req *dcctest.Request) dcctest.Reply {
		return dcctest.Reply{Overall: req.Sender[0], Header: metrics}
	}})
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			env := typical
			env.Sender = string("ARGTS"[i%5]) + "@example.com"
			res, err := send(t, opts(s), env)
			if err != nil || res.Overall != env.Sender[0] {
				t.Errorf("%d: %+v, %v", i, res, err)
			}
		}()
	}
	wg.Wait()
}

// The message is streamed: sending 50 MB allocates a few kilobytes, not
// the message, and dccifd receives every byte.
func TestStreaming50MB(t *testing.T) {
	if testing.Short() {
		t.Skip("50 MB")
	}
	s := dcctest.New(t, dcctest.Config{RecordLimit: 4 << 10})
	const total = 50 << 20
	chunk := make([]byte, 64<<10)
	for i := range chunk {
		chunk[i] = "abcdefghijklmnopqrstuvwxyz0123456789\r\n"[i%38]
	}
	sum := sha256.New()

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)

	o := opts(s)
	o.Timeout = time.Minute // this test is about memory, not speed
	r, err := Start(context.Background(), o, typical)
	if err != nil {
		t.Fatal(err)
	}
	r.Header("Subject", " big")
	sum.Write([]byte("Subject: big\r\n\r\n"))
	for sent := 0; sent < total; sent += len(chunk) {
		if err := r.Body(chunk); err != nil {
			t.Fatal(err)
		}
		sum.Write(chunk)
	}
	res, err := r.Finish()
	if err != nil || res.Overall != 'A' {
		t.Fatalf("%+v, %v", res, err)
	}

	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("50 MB sent: %d bytes allocated in all (client and test server), heap growth %d bytes", alloc, growth)
	if alloc > 8<<20 || growth > 8<<20 {
		t.Fatalf("allocated %d bytes, heap grew %d bytes: the message is being buffered", alloc, growth)
	}

	req := s.Requests()[0]
	wantLen := int64(len("Subject: big\r\n\r\n") + total)
	if req.MessageLen != wantLen || !bytes.Equal(req.MessageSHA256[:], sum.Sum(nil)) || r.Written() != wantLen {
		t.Fatalf("server got %d bytes (want %d), hash match %v, written %d", req.MessageLen, wantLen,
			bytes.Equal(req.MessageSHA256[:], sum.Sum(nil)), r.Written())
	}
}
