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
