package dcctest

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// exchange sends a raw request, half-closes, and returns all the server
// wrote back.
func exchange(t *testing.T, s *Server, req string) string {
	t.Helper()
	c, err := net.Dial(s.Network(), s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

const hdr = "X-DCC-EXAMPLE-Metrics: mx.example.org 1085; bulk Body=many Fuz1=many Fuz2=many rep=99%"

func TestReplyAsDccifd(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			s := New(t, Config{Network: network, Handler: Fixed(Reply{Overall: 'A', Rcpts: "AR", Header: hdr})})
			req := "header\n192.0.2.1\rmail.example\nhelo.example\n<a@example.com>\nb@example.org\rb\nc@example.org\n\nSubject: x\r\n\r\nbody\r\n"
			got := exchange(t, s, req)
			want := "A\nAR\n" + Fold(hdr) + "\n"
			if got != want {
				t.Fatalf("reply %q, want %q", got, want)
			}
			r := s.WaitRequests(1, time.Second)[0]
			if string(r.Raw) != req || r.Total != int64(len(req)) || r.Truncated {
				t.Fatalf("raw %q (total %d)", r.Raw, r.Total)
			}
			if r.ClientIP.String() != "192.0.2.1" || r.ClientName != "mail.example" || r.Helo != "helo.example" ||
				r.Sender != "<a@example.com>" || len(r.Rcpts) != 2 || r.Rcpts[0] != (Rcpt{"b@example.org", "b", true}) ||
				r.Rcpts[1] != (Rcpt{"c@example.org", "", false}) || r.MessageLen != int64(len("Subject: x\r\n\r\nbody\r\n")) ||
				!r.HalfClosed || !r.Replied || r.Err != nil {
				t.Fatalf("parsed %+v", r)
			}
		})
	}
}

func TestFoldLikeDccifd(t *testing.T) {
	f := Fold(hdr + " " + hdr)
	if !strings.HasSuffix(f, "\n") || !strings.Contains(f, "\n\t") {
		t.Fatalf("not folded: %q", f)
	}
	for _, l := range strings.Split(strings.TrimSuffix(f, "\n"), "\n") {
		if n := len(strings.ReplaceAll(l, "\t", "        ")); n > 78 {
			t.Errorf("line of %d columns: %q", n, l)
		}
	}
	if got := strings.ReplaceAll(strings.TrimSuffix(f, "\n"), "\n\t", " "); got != hdr+" "+hdr {
		t.Errorf("unfolds to %q", got)
	}
	if f := Fold("X-DCC--Metrics: h 0; Body=0"); f != "X-DCC--Metrics: h 0; Body=0\n" {
		t.Errorf("short header folded: %q", f)
	}
}

func TestNoHeaderOption(t *testing.T) {
	s := New(t, Config{Handler: Fixed(Reply{Overall: 'G', Header: hdr})})
	if got := exchange(t, s, "query\n\n\n<>\nx@example.org\ny@example.org\n\nbody"); got != "G\nGG\n" {
		t.Fatalf("reply %q", got)
	}
	r := s.WaitRequests(1, time.Second)[0]
	if r.ClientIP.IsValid() || r.Sender != "<>" || r.Helo != "" {
		t.Fatalf("parsed %+v", r)
	}
}

func TestTemporaryFailureHasNoRecipientLetters(t *testing.T) {
	s := New(t, Config{Handler: Fixed(Reply{Overall: 'T'})})
	if got := exchange(t, s, "header\n\n\n<>\nx@example.org\n\n"); got != "T\n\n\n" {
		t.Fatalf("reply %q", got)
	}
}

func TestProtocolViolationsHangUp(t *testing.T) {
	cases := map[string]string{
		"unknown option":       "header bogus\n\n\n<>\nx@example.org\n\nbody",
		"bad IP":               "header\n192.0.2.300\n\n<>\nx@example.org\n\n",
		"tab instead of CR":    "header\n192.0.2.1\tmail.example\n\n<>\nx@example.org\n\n",
		"name without IP":      "header\n\rmail.example\n\n<>\nx@example.org\n\n",
		"null recipient":       "header\n\n\n<>\n<>\n\n",
		"truncated envelope":   "header\n\n\n<>\nx@example.org\n",
		"CR in the HELO":       "header\n\nhelo\rx\n<>\nx@example.org\n\n",
		"two CRs in recipient": "header\n\n\n<>\nx@example.org\ru\rv\n\n",
	}
	for name, req := range cases {
		t.Run(name, func(t *testing.T) {
			s := New(t, Config{AllowProtocolErrors: true})
			if got := exchange(t, s, req); got != "" {
				t.Fatalf("replied %q", got)
			}
			r := s.WaitRequests(1, time.Second)
			if len(r) != 1 || !errors.Is(r[0].Err, ErrProtocol) {
				t.Fatalf("requests %+v", r)
			}
		})
	}
}

func TestOptionsCaseAndSeparators(t *testing.T) {
	s := New(t, Config{})
	got := exchange(t, s, " HEADER\tGrey-Off  no-reject \n\n\n<>\nx@example.org\n\n")
	if got != "A\nA\n"+Fold(DefaultHeader)+"\n" {
		t.Fatalf("reply %q", got)
	}
	r := s.WaitRequests(1, time.Second)[0]
	if strings.Join(r.Options, ",") != "header,grey-off,no-reject" {
		t.Fatalf("options %q", r.Options)
	}
}

func TestOlderDccifd(t *testing.T) {
	s := New(t, Config{UnknownOptions: []string{"grey-query"}, AllowProtocolErrors: true})
	if got := exchange(t, s, "header grey-query\n\n\n<>\nx@example.org\n\n"); got != "" {
		t.Fatalf("replied %q", got)
	}
}

func TestMisbehaviours(t *testing.T) {
	t.Run("raw", func(t *testing.T) {
		s := New(t, Config{Handler: Fixed(Reply{Raw: []byte("garbage")})})
		if got := exchange(t, s, "header\n\n\n<>\nx@example.org\n\n"); got != "garbage" {
			t.Fatalf("reply %q", got)
		}
	})
	t.Run("close", func(t *testing.T) {
		s := New(t, Config{Handler: Fixed(Reply{Close: true})})
		if got := exchange(t, s, "header\n\n\n<>\nx@example.org\n\n"); got != "" {
			t.Fatalf("reply %q", got)
		}
	})
	t.Run("delay", func(t *testing.T) {
		s := New(t, Config{Handler: Fixed(Reply{Delay: 100 * time.Millisecond})})
		start := time.Now()
		exchange(t, s, "header\n\n\n<>\nx@example.org\n\n")
		if d := time.Since(start); d < 100*time.Millisecond {
			t.Fatalf("replied after %v", d)
		}
	})
	t.Run("hang ends at close", func(t *testing.T) {
		s, err := Start(Config{Handler: Fixed(Reply{Hang: true})})
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("unix", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "header\n\n\n<>\nx@example.org\n\n")
		c.(*net.UnixConn).CloseWrite()
		s.WaitRequests(1, time.Second)
		start := time.Now()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("close took %v", d)
		}
	})
}

func TestRecordLimit(t *testing.T) {
	s := New(t, Config{RecordLimit: 10})
	exchange(t, s, "header\n\n\n<>\nx@example.org\n\n0123456789")
	r := s.WaitRequests(1, time.Second)[0]
	if len(r.Raw) != 10 || !r.Truncated || r.MessageLen != 10 || r.Total != 37 {
		t.Fatalf("raw %q truncated %v len %d total %d", r.Raw, r.Truncated, r.MessageLen, r.Total)
	}
}

// Fold against folds worked out by hand from xhdr_add_str: "host id;" never
// leaves the name's line, "bulk rep" is one piece, a line after a fold
// counts one column more than it shows, and a whitelist header is one piece.
func TestFoldPieces(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"X-DCC-b-Metrics: " + strings.Repeat("h", 70) + " 1085; Body=1",
			"X-DCC-b-Metrics: " + strings.Repeat("h", 70) + " 1085;\n\tBody=1\n"},
		{"X-DCC-b-Metrics: h 1; " + strings.Repeat("x", 50) + " bulk rep Body=many",
			"X-DCC-b-Metrics: h 1; " + strings.Repeat("x", 50) + "\n\tbulk rep Body=many\n"},
		{"X: h 1; " + strings.Repeat("a", 75) + " " + strings.Repeat("b", 61) + " " + strings.Repeat("c", 8),
			"X: h 1;\n\t" + strings.Repeat("a", 75) + "\n\t" + strings.Repeat("b", 61) + "\n\t" + strings.Repeat("c", 8) + "\n"},
		{WhitelistHeader(strings.Repeat("h", 70)), WhitelistHeader(strings.Repeat("h", 70)) + "\n"},
	} {
		if got := Fold(c.in); got != c.want {
			t.Errorf("Fold(%q)\n = %q\nwant %q", c.in, got, c.want)
		}
	}
}

// Replies dccifd never writes are refused, so that no test leans on them.
func TestRefusesRepliesDccifdNeverWrites(t *testing.T) {
	req := "header\n\n\n<>\nb@example.org\nc@example.org\n\nbody"
	for _, rep := range []Reply{{Overall: 'A', Rcpts: "AG"}, {Overall: 'G', Rcpts: "GA"}, {Overall: 'A', Rcpts: "A"}, {Overall: 'A', Rcpts: "AX"}, {Overall: 'X'}} {
		s := New(t, Config{Handler: Fixed(rep), AllowProtocolErrors: true})
		if got := exchange(t, s, req); got != "" {
			t.Errorf("%+v answered %q", rep, got)
		}
		if r := s.WaitRequests(1, time.Second); len(r) != 1 || !errors.Is(r[0].Err, ErrBadReply) {
			t.Errorf("%+v: %+v", rep, r)
		}
	}
}

// Users answers as dccifd does with per-recipient whitelists.
func TestUsers(t *testing.T) {
	req := "header\n\n\n<>\nbob@example.org\rbob\ncarol@example.org\rcarol\n\nbody"
	for _, c := range []struct {
		u    Users
		want string
	}{
		{Users{Many: []string{"Carol@example.org"}}, "A\nAR\n" + Fold("X-DCC-tollgate-Metrics: dcctest 1085; Body=1 Fuz1=1 Fuz2=1") + "\n"},
		{Users{Bulk: true, OK: []string{"bob@example.org"}}, "R\nAR\n" + Fold("X-DCC-tollgate-Metrics: dcctest 1085; bulk Body=many Fuz1=many Fuz2=many") + "\n"},
		{Users{Bulk: true}, "R\nRR\n" + Fold("X-DCC-tollgate-Metrics: dcctest 1085; bulk Body=many Fuz1=many Fuz2=many") + "\n"},
		{Users{OK: []string{"bob@example.org", "carol@example.org"}, Host: "mx"}, "A\nAA\nX-DCC--Metrics: mx; whitelist\n\n"},
	} {
		s := New(t, Config{Handler: c.u.Handler()})
		if got := exchange(t, s, req); got != c.want {
			t.Errorf("%+v: %q, want %q", c.u, got, c.want)
		}
	}
}
