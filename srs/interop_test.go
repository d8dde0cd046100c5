//go:build e2e

package srs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/e2e"
)

// Live interoperability with the two reference implementations, today, on
// this machine's clock: Debian's postsrsd 1.10 (libsrs2 inside, spoken to over
// Postfix's tcp_table protocol on loopback) and Mail::SRS 0.31 through its
// command line client (Debian package srs). A missing program fails the test:
// CI must install them (scripts/install-test-deps.sh).

const (
	peerNew = "n3w-s3cr3t-for-interop"
	peerOld = "0ld-s3cr3t-still-verifying"
)

// interopSenders: plain, mixed case, + and = in the local part, non-ASCII,
// and SRS0 and SRS1 senders (any tag case, other separators).
var interopSenders = []string{
	"user@orig.example",
	"User.Name@Orig.EXAMPLE",
	"x+tag@sub.orig.example",
	"a=b@orig.example",
	"J\u00d6rg@Orig.example",
	"SRS0=Ak0K=JK=orig.example=alice@hop1.example",
	"srs0+Ak0K=JK=Orig.example=Bob@Hop1.example",
	"SRS1=UuHG=hop1.example==Ak0K=JK=orig.example=alice@hop2.example",
	"SRS1-zzzz=Hop1.example=-Ak0K=JK=orig.example=Carol@hop2.example",
}

func TestInteropPostsrsdAndMailSRS(t *testing.T) {
	postsrsdPath := e2e.RequireProgram(t, "postsrsd", "postsrsd")
	srsPath := e2e.RequireProgram(t, "srs", "srs (the Mail::SRS command line; libmail-srs-perl alone does not ship it)")
	avoidMidnight(t)

	// Ours and theirs, configured alike: hash length 4 and max age 21 days
	// are postsrsd's and Mail::SRS's defaults (postsrsd 1.10 cannot change
	// its max age).
	ours := func(sep byte, now time.Time, secrets ...string) *SRS {
		return mustNew(t, Options{Domain: vecDomain, Secrets: secrets, HashLength: 4, MaxAge: 21 * Day, Separator: sep, Now: at(now)})
	}
	now := time.Now()
	both := ours('=', now, peerNew, peerOld) // signs with the new secret
	oldOnly := ours('+', now, peerOld)       // a peer still signing with the old one
	newOnly := ours('=', now, peerNew)       // after the old one was dropped
	pBoth := startPostsrsd(t, postsrsdPath, '=', peerNew, peerOld)
	pOld := startPostsrsd(t, postsrsdPath, '+', peerOld)
	mBoth := mailSRS{path: srsPath, sep: '=', secrets: []string{peerNew, peerOld}}
	mOld := mailSRS{path: srsPath, sep: '+', secrets: []string{peerOld}}

	ourFwd := forwardAll(t, both, interopSenders)
	t.Run("forward is byte-identical", func(t *testing.T) {
		theirs := mBoth.forward(t, interopSenders)
		for i, x := range interopSenders {
			if p := pBoth.forward(t, x); p != ourFwd[i] || theirs[i] != ourFwd[i] {
				t.Errorf("Forward(%q):\n  ours      %s\n  postsrsd  %s\n  Mail::SRS %s", x, ourFwd[i], p, theirs[i])
			}
		}
		oldFwd := forwardAll(t, oldOnly, interopSenders)
		theirsOld := mOld.forward(t, interopSenders)
		for i, x := range interopSenders {
			if p := pOld.forward(t, x); p != oldFwd[i] || theirsOld[i] != oldFwd[i] {
				t.Errorf("old secret, separator +: Forward(%q):\n  ours      %s\n  postsrsd  %s\n  Mail::SRS %s", x, oldFwd[i], p, theirsOld[i])
			}
			if oldFwd[i] == ourFwd[i] {
				t.Errorf("%q: the second secret signed", x)
			}
		}
		minus := ours('-', now, peerNew, peerOld)
		mMinus := mailSRS{path: srsPath, sep: '-', secrets: []string{peerNew, peerOld}}
		if a, b := forwardAll(t, minus, interopSenders[:1]), mMinus.forward(t, interopSenders[:1]); a[0] != b[0] {
			t.Errorf("separator -: ours %s, Mail::SRS %s", a[0], b[0])
		}
		// Our own domain is left alone by all three.
		if a, p := forwardAll(t, both, []string{"user@fwd.example"})[0], pBoth.forward(t, "user@fwd.example"); a != "user@fwd.example" || p != a {
			t.Errorf("own domain: ours %s, postsrsd %s", a, p)
		}
	})

	t.Run("ours reversed by theirs", func(t *testing.T) {
		want := expectedAll(interopSenders)
		// Signed with the new secret: both verify with their first.
		got := mBoth.reverse(t, ourFwd)
		for i, a := range ourFwd {
			if p := pBoth.reverse(t, a); p != "200 "+want[i] || got[i] != want[i] {
				t.Errorf("reverse %s: postsrsd %q, Mail::SRS %q; want %q", a, p, got[i], want[i])
			}
		}
		// Signed with the old secret only: both verify with their second.
		oldFwd := forwardAll(t, oldOnly, interopSenders)
		got = mBoth.reverse(t, oldFwd)
		for i, a := range oldFwd {
			if p := pBoth.reverse(t, a); p != "200 "+want[i] || got[i] != want[i] {
				t.Errorf("reverse %s: postsrsd %q, Mail::SRS %q; want %q", a, p, got[i], want[i])
			}
		}
		// And a peer that never had our new secret refuses ours.
		if p := pOld.reverse(t, ourFwd[0]); !strings.HasPrefix(p, "500 ") {
			t.Errorf("postsrsd without our secret reversed %s: %q", ourFwd[0], p)
		}
	})

	t.Run("theirs reversed by ours", func(t *testing.T) {
		want := expectedAll(interopSenders)
		check := func(who string, addrs []string) {
			t.Helper()
			for i, a := range addrs {
				if got, err := both.Reverse(a); err != nil || got != want[i] {
					t.Errorf("%s wrote %s: we reverse it to %q, %v; want %q", who, a, got, err, want[i])
				}
			}
		}
		var pb, po []string
		for _, x := range interopSenders {
			pb = append(pb, pBoth.forward(t, x))
			po = append(po, pOld.forward(t, x))
		}
		check("postsrsd (new secret)", pb)
		check("postsrsd (old secret, +)", po)
		check("Mail::SRS (new secret)", mBoth.forward(t, interopSenders))
		mo := mOld.forward(t, interopSenders)
		check("Mail::SRS (old secret, +)", mo)
		// Once the old secret is gone, what it signed is refused.
		if _, err := newOnly.Reverse(po[0]); !errors.Is(err, ErrBadHash) {
			t.Errorf("without the old secret: %s gave %v, want ErrBadHash", po[0], err)
		}
		if _, err := newOnly.Reverse(mo[0]); !errors.Is(err, ErrBadHash) {
			t.Errorf("without the old secret: %s gave %v, want ErrBadHash", mo[0], err)
		}
	})

	// A bounce travelling back along a real two-forwarder chain: Mail::SRS at
	// hop1.example (its own secret), then us; each hop undoes its own layer.
	t.Run("chain through two forwarders", func(t *testing.T) {
		hop1 := mailSRS{path: srsPath, sep: '=', secrets: []string{"hop1-secret"}, alias: "hop1.example"}
		orig := "Dave+list@Orig.example"
		atHop1 := hop1.forward(t, []string{orig})[0]
		atUs := forwardAll(t, both, []string{atHop1})[0]
		if p := pBoth.forward(t, atHop1); p != atUs || !strings.HasPrefix(atUs, "SRS1=") {
			t.Fatalf("second hop: ours %s, postsrsd %s", atUs, p)
		}
		back, err := both.Reverse(atUs)
		if err != nil || back != atHop1 {
			t.Fatalf("we reverse %s to %q, %v; want %s", atUs, back, err, atHop1)
		}
		if first := hop1.reverse(t, []string{back})[0]; first != orig {
			t.Fatalf("hop1 reverses %s to %q; want %s", back, first, orig)
		}
		// A third forwarder compacts to SRS1 with the same first hop.
		third := mustNew(t, Options{Domain: "third.example", Secrets: []string{"third"}, HashLength: 4, Now: at(now)})
		atThird, err := third.Forward(atUs)
		if err != nil || !strings.Contains(atThird, "=hop1.example==") {
			t.Fatalf("third hop: %q, %v", atThird, err)
		}
		if back, err := third.Reverse(atThird); err != nil || back != atHop1 {
			t.Fatalf("third hop reverses %s to %q, %v; want %s", atThird, back, err, atHop1)
		}
	})

	// The edge cases, against the real programs: who accepts what.
	t.Run("edge cases agree", func(t *testing.T) {
		signed := ourFwd[1] // User.Name@Orig.EXAMPLE
		want := interopSenders[1]
		hash := signed[5:9]
		day := now.Unix() / 86400
		aged := func(days int64) string {
			a, err := ours('=', time.Unix((day-days)*86400+3600, 0), peerNew).Forward(interopSenders[0])
			if err != nil {
				t.Fatal(err)
			}
			return a
		}
		tests := []struct {
			name    string
			addr    string
			want    string // "" = refused
			mailSRS bool   // Mail::SRS differs from postsrsd: accepts when this is !(want != "")
		}{
			{"as written", signed, want, false},
			{"lower-cased", strings.ToLower(signed), strings.ToLower(want), false},
			{"upper-cased", strings.ToUpper(signed), strings.ToUpper(want), false},
			{"tag separator +", "SRS0+" + signed[5:], want, false},
			{"stamp exactly max_age old", aged(21), interopSenders[0], false},
			{"stamp one day more", aged(22), "", false},
			{"stamp from tomorrow", aged(-1), "", false},
			{"hash too short", "SRS0=" + hash[:3] + signed[9:], "", false},
			{"wrong hash", "SRS0=" + hash[:3] + flip(hash[3]) + signed[9:], "", false},
			// postsrsd cuts a long hash to hash_length; Mail::SRS checks the
			// extra characters against the longer HMAC. We follow postsrsd.
			{"junk after a valid hash", "SRS0=" + hash + "JUNK" + signed[9:], want, true},
			{"bad stamp letter", signed[:10] + "1" + signed[11:], "", false},
			{"unknown separator", "SRS0_" + signed[5:], "", false},
		}
		for _, tc := range tests {
			got, err := both.Reverse(tc.addr)
			if tc.want != "" && (err != nil || got != tc.want) {
				t.Errorf("%s: we reverse %s to %q, %v; want %q", tc.name, tc.addr, got, err, tc.want)
			}
			if tc.want == "" && err == nil {
				t.Errorf("%s: we accept %s as %q", tc.name, tc.addr, got)
			}
			p := pBoth.reverse(t, tc.addr)
			if (tc.want != "") != strings.HasPrefix(p, "200 ") || (tc.want != "" && p != "200 "+tc.want) {
				t.Errorf("%s: postsrsd says %q to %s; we say %q, %v", tc.name, p, tc.addr, got, err)
			}
			m, merr := mBoth.reverseOne(tc.addr)
			accepts := tc.want != ""
			if tc.mailSRS {
				accepts = !accepts
			}
			if accepts != (merr == nil) || (merr == nil && tc.want != "" && m != tc.want) {
				t.Errorf("%s: Mail::SRS says %q, %v to %s", tc.name, m, merr, tc.addr)
			}
		}
	})
}

// avoidMidnight waits out the last seconds of a UTC day, so that every
// implementation stamps with the same day.
func avoidMidnight(t *testing.T) {
	left := time.Duration(86400-time.Now().Unix()%86400) * time.Second
	if left < 10*time.Second {
		t.Logf("waiting %v for the UTC day to change", left)
		time.Sleep(left + time.Second)
	}
}

func forwardAll(t *testing.T, s *SRS, senders []string) []string {
	t.Helper()
	out := make([]string, len(senders))
	for i, x := range senders {
		a, err := s.Forward(x)
		if err != nil {
			t.Fatalf("Forward(%q): %v", x, err)
		}
		out[i] = a
	}
	return out
}

func expectedAll(senders []string) []string {
	out := make([]string, len(senders))
	for i, x := range senders {
		out[i] = expectedReverse(x)
	}
	return out
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

// postsrsd is a running postsrsd 1.10 with its forward and reverse tables.
type postsrsd struct {
	fwd, rev *tcpTable
}

// startPostsrsd runs postsrsd in the foreground (1.10 forks only with -D and
// needs no -u when the ports are unprivileged) on two free loopback ports,
// and stops it when the test ends.
func startPostsrsd(t *testing.T, path string, sep byte, secrets ...string) *postsrsd {
	t.Helper()
	dir := t.TempDir()
	secretsFile := filepath.Join(dir, "secrets")
	// postsrsd takes every line as a secret, comments included: none here.
	if err := os.WriteFile(secretsFile, []byte(strings.Join(secrets, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var lastLog []byte
	for attempt := 0; attempt < 3; attempt++ { // a free port can be taken before postsrsd binds it
		fport, rport := freePort(t), freePort(t)
		logPath := filepath.Join(dir, fmt.Sprintf("postsrsd-%d.log", attempt))
		logFile, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		// A file, not a pipe, for its output: the per-connection children
		// inherit it and Wait would otherwise wait for them too.
		cmd := exec.Command(path, "-s", secretsFile, "-d", vecDomain, "-a", string(sep), "-n", "4", "-N", "4",
			"-l", "127.0.0.1", "-f", strconv.Itoa(fport), "-r", strconv.Itoa(rport), "-t", "30")
		cmd.Stdout, cmd.Stderr = logFile, logFile
		if err := cmd.Start(); err != nil {
			logFile.Close()
			t.Fatalf("starting postsrsd: %v", err)
		}
		logFile.Close()
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		fwd, rev, err := dialBoth(fport, rport, exited)
		if err != nil {
			stopProcess(cmd, exited)
			lastLog, _ = os.ReadFile(logPath)
			continue
		}
		t.Cleanup(func() {
			fwd.close()
			rev.close()
			stopProcess(cmd, exited)
		})
		return &postsrsd{fwd: fwd, rev: rev}
	}
	t.Fatalf("postsrsd did not start: %s", lastLog)
	return nil
}

func dialBoth(fport, rport int, exited <-chan error) (*tcpTable, *tcpTable, error) {
	deadline := time.Now().Add(5 * time.Second)
	dial := func(port int) (*tcpTable, error) {
		for {
			select {
			case err := <-exited:
				return nil, fmt.Errorf("postsrsd exited: %v", err)
			default:
			}
			c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
			if err == nil {
				return &tcpTable{conn: c, r: bufio.NewReader(c)}, nil
			}
			if time.Now().After(deadline) {
				return nil, err
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	fwd, err := dial(fport)
	if err != nil {
		return nil, nil, err
	}
	rev, err := dial(rport)
	if err != nil {
		fwd.close()
		return nil, nil, err
	}
	return fwd, rev, nil
}

func stopProcess(cmd *exec.Cmd, exited <-chan error) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// forward returns postsrsd's rewrite of x, failing the test on a 500.
func (p *postsrsd) forward(t *testing.T, x string) string {
	t.Helper()
	r := p.fwd.get(t, x)
	v, ok := strings.CutPrefix(r, "200 ")
	if !ok {
		t.Fatalf("postsrsd forward %q: %q", x, r)
	}
	return v
}

// reverse returns postsrsd's whole reply ("200 value" or "500 reason").
func (p *postsrsd) reverse(t *testing.T, x string) string {
	t.Helper()
	return p.rev.get(t, x)
}

// tcpTable is a client of Postfix's tcp_table protocol: "get KEY\n" answered
// by "200 VALUE\n" or "500 REASON\n", keys and values %XX-encoded outside
// printable ASCII, and % itself.
type tcpTable struct {
	conn net.Conn
	r    *bufio.Reader
}

func (c *tcpTable) get(t *testing.T, key string) string {
	t.Helper()
	_ = c.conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c.conn, "get %s\n", tcpTableEncode(key)); err != nil {
		t.Fatalf("tcp_table get %q: %v", key, err)
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		t.Fatalf("tcp_table get %q: %v", key, err)
	}
	line = strings.TrimRight(line, "\r\n")
	if len(line) < 4 || line[3] != ' ' {
		t.Fatalf("tcp_table get %q: reply %q", key, line)
	}
	return line[:4] + tcpTableDecode(line[4:])
}

func (c *tcpTable) close() { c.conn.Close() }

func tcpTableEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func tcpTableDecode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mailSRS runs Mail::SRS's srs command. Secrets go in --secret= (its
// --secretfile keeps each line's newline in the secret).
type mailSRS struct {
	path    string
	sep     byte
	secrets []string
	alias   string // forward domain; default vecDomain
}

func (m mailSRS) run(mode string, addrs []string) (string, error) {
	alias := m.alias
	if alias == "" {
		alias = vecDomain
	}
	args := []string{"--" + mode, "--separator=" + string(m.sep), "--hashlength=4", "--alias=" + alias}
	for _, s := range m.secrets {
		args = append(args, "--secret="+s)
	}
	for _, a := range addrs {
		args = append(args, "--address="+a)
	}
	cmd := exec.Command(m.path, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("srs %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func (m mailSRS) lines(t *testing.T, mode string, addrs []string) []string {
	t.Helper()
	out, err := m.run(mode, addrs)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(addrs) {
		t.Fatalf("srs --%s: %d lines for %d addresses: %q", mode, len(lines), len(addrs), out)
	}
	return lines
}

func (m mailSRS) forward(t *testing.T, addrs []string) []string {
	t.Helper()
	return m.lines(t, "forward", addrs)
}

func (m mailSRS) reverse(t *testing.T, addrs []string) []string {
	t.Helper()
	return m.lines(t, "reverse", addrs)
}

func (m mailSRS) reverseOne(addr string) (string, error) {
	out, err := m.run("reverse", []string{addr})
	return strings.TrimSuffix(out, "\n"), err
}
