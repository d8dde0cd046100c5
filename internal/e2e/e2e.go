// Package e2e runs real mail software next to the code under test: a private
// Postfix instance per test (with extra smtpd services if asked), a private
// Sendmail, an nginx mail proxy that speaks XCLIENT to Postfix, the
// smtp-sink they relay to, and swaks as the SMTP client. Everything listens
// on loopback, on ports and in directories of its own, so parallel tests and
// test binaries do not meet.
//
//	p := e2e.StartPostfix(t, e2e.PostfixOptions{Milter: "inet:" + milterAddr})
//	res := p.Swaks(t, "--from", "a@example.org", "--to", "b@example.com")
//	msgs := p.WaitMessages(t, 1, 30*time.Second)
//	_ = msgs[0].Header("X-Added-By-Milter")
//
// Behind a proxy, from a client address that is not the proxy's:
//
//	p := e2e.StartPostfix(t, e2e.PostfixOptions{Milter: m, Services: []e2e.PostfixService{{
//		Name:    "proxy",
//		Options: map[string]string{"smtpd_authorized_xclient_hosts": "127.0.0.1"},
//	}}})
//	n := e2e.StartNginxMailProxy(t, e2e.NginxOptions{Upstream: p.ServiceAddr["proxy"]})
//	res := n.Swaks(t, "--from", "a@example.org", "--to", "b@example.com") // from 127.0.0.2
//
// And with Sendmail: e2e.StartSendmail(t, e2e.SendmailOptions{Milter: "inet:9901@127.0.0.1"}).
//
// Requirements (scripts/install-test-deps.sh installs them on Debian 12):
// the Debian packages postfix (postfix, smtp-sink), swaks and, for IPv6,
// libio-socket-inet6-perl; nginx and libnginx-mod-mail; m4, gcc and
// Sendmail's packages downloaded (not installed) into SendmailDebCache.
// StartPostfix must run as root because the Postfix master refuses to start
// otherwise. Missing programs fail the test: an end-to-end test that skips
// silently is a test that never runs.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Programs the harness runs, all from Debian packages.
const (
	PostfixProgram = "/usr/sbin/postfix"
	MasterProgram  = "/usr/lib/postfix/sbin/master" // daemon_directory on Debian
	SinkProgram    = "/usr/sbin/smtp-sink"
	SwaksProgram   = "/usr/bin/swaks"
)

const (
	postfixPackage = "postfix" // postfix, master, smtp-sink
	swaksPackage   = "swaks"
	// swaks needs it for IPv6 but only recommends it.
	swaksIPv6Module  = "/usr/share/perl5/IO/Socket/INET6.pm"
	swaksIPv6Package = "libio-socket-inet6-perl"

	swaksTimeLimit  = 60 * time.Second
	listenTimeLimit = 10 * time.Second
)

var (
	portsMu sync.Mutex
	// The kernel may hand the same ephemeral port to two FreePort calls once
	// the first probe socket is closed; parallel tests in one process must
	// never get the same port twice.
	portsGiven = map[string]bool{}
)

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort(t testing.TB) int {
	t.Helper()
	return freePort(t, "127.0.0.1")
}

func freePort(t testing.TB, host string) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatalf("e2e: looking for a free port on %s: %v", host, err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		key := net.JoinHostPort(host, strconv.Itoa(port))
		if !portsGiven[key] {
			portsGiven[key] = true
			return port
		}
	}
	t.Fatalf("e2e: no unused free port on %s after 100 tries", host)
	return 0
}

// RequireProgram returns the path of program, a path or a name looked up on
// PATH and then in /usr/sbin and /usr/bin (sbin is not on every PATH). A
// missing program fails the test (t.Fatalf, never Skip) with a clear
// message naming the Debian package. It is the one such check of every
// test that runs a real program.
func RequireProgram(t testing.TB, program, debianPackage string) string {
	t.Helper()
	var err error
	if strings.Contains(program, "/") {
		if err = checkExecutable(program); err == nil {
			return program
		}
	} else {
		var p string
		if p, err = exec.LookPath(program); err == nil {
			return p
		}
		for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
			if p := filepath.Join(dir, program); checkExecutable(p) == nil {
				return p
			}
		}
	}
	t.Fatalf("e2e: required program %s is missing or not executable (%v): install the Debian package %q, "+
		"e.g. by running scripts/install-test-deps.sh as root", program, err, debianPackage)
	return ""
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s: not an executable file", path)
	}
	return nil
}

func requireFile(t testing.TB, path, debianPackage string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("e2e: %v: install the Debian package %q, e.g. by running scripts/install-test-deps.sh as root",
			err, debianPackage)
	}
}

// SwaksResult is what one swaks run produced.
type SwaksResult struct {
	Output   string // stdout and stderr interleaved, as swaks printed them
	ExitCode int
}

// Swaks runs /usr/bin/swaks with the given args, with a time limit, and returns
// its transcript and exit code. A non-zero exit is not a test failure by
// itself: callers assert on it. Only a hung or unstartable swaks fails the test.
func Swaks(t testing.TB, args ...string) SwaksResult {
	t.Helper()
	RequireProgram(t, SwaksProgram, swaksPackage)
	ctx, cancel := context.WithTimeout(context.Background(), swaksTimeLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, SwaksProgram, args...)
	var out bytes.Buffer
	// One writer for both streams keeps errors next to the SMTP line that
	// caused them.
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	res := SwaksResult{Output: out.String()}
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("e2e: swaks %q did not finish within %v; transcript so far:\n%s", args, swaksTimeLimit, res.Output)
	case errors.As(err, &exitErr):
		res.ExitCode = exitErr.ExitCode()
	case err != nil:
		t.Fatalf("e2e: running swaks %q: %v\n%s", args, err, res.Output)
	}
	t.Logf("swaks %s: exit %d\n%s", strings.Join(args, " "), res.ExitCode, res.Output)
	return res
}

// privateDir creates a directory removed by t.Cleanup. Unlike t.TempDir it is
// reachable by unprivileged users: Postfix daemons and smtp-sink drop root
// privileges and still open absolute paths inside it, which a 0700 parent
// (what t.TempDir and os.MkdirTemp create) would forbid.
func privateDir(t testing.TB, prefix string) string {
	t.Helper()
	base := os.TempDir()
	if !worldTraversable(base) {
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, prefix)
	if err != nil {
		t.Fatalf("e2e: %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("e2e: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("e2e: removing %s: %v", dir, err)
		}
	})
	return dir
}

func worldTraversable(dir string) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for {
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}

// isListening reads the kernel's socket tables instead of connecting: a probe
// connection would be a real SMTP session, and for Postfix a real milter
// session too, which tests that count sessions must not see.
func isListening(ip net.IP, port int) bool {
	file := "/proc/net/tcp"
	if ip.To4() == nil {
		file = "/proc/net/tcp6"
	}
	f, err := os.Open(file)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // column titles
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != "0A" { // 0A: TCP_LISTEN
			continue
		}
		addr, portHex, ok := strings.Cut(fields[1], ":")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(portHex, 16, 16)
		if err != nil || int(p) != port {
			continue
		}
		if a := procNetIP(addr); a != nil && (a.Equal(ip) || a.IsUnspecified()) {
			return true
		}
	}
	return false
}

// procNetIP decodes an address from /proc/net/tcp*, which the kernel prints
// as 32-bit words in host (little-endian on amd64 and arm64) byte order.
func procNetIP(s string) net.IP {
	b, err := hex.DecodeString(s)
	if err != nil || len(b)%4 != 0 {
		return nil
	}
	for i := 0; i < len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	return net.IP(b)
}

// waitListening polls until something listens on ip:port. exited, when it
// becomes readable, means the process that should listen is gone.
func waitListening(ip net.IP, port int, exited <-chan struct{}) error {
	deadline := time.Now().Add(listenTimeLimit)
	for {
		if isListening(ip, port) {
			return nil
		}
		select {
		case <-exited:
			return errors.New("the process exited")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %v", net.JoinHostPort(ip.String(), strconv.Itoa(port)), listenTimeLimit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// watchdog cleans up after a test binary that dies without running its
// t.Cleanup functions (a -timeout panic, a SIGKILL, ^C). The shell reads a
// pipe whose only writer is this process: a line means "cleaned up normally,
// do nothing"; end of file without a line means the test binary is gone.
type watchdog struct {
	cmd *exec.Cmd
	w   *os.File
}

func startWatchdog(t testing.TB, onCrash string, args ...string) *watchdog {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatalf("e2e: watchdog pipe: %v", err)
	}
	// ^C reaches the whole foreground process group, the watchdog included:
	// ignore it so the watchdog lives to see the end of file.
	script := "trap '' INT TERM HUP; if read -r _; then exit 0; fi; " + onCrash
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, "e2e-watchdog"}, args...)...)
	cmd.Stdin = r
	cmd.Dir = "/"
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		t.Fatalf("e2e: starting watchdog: %v", err)
	}
	r.Close()
	return &watchdog{cmd: cmd, w: w}
}

func (d *watchdog) disarm() {
	_, _ = d.w.WriteString("done\n") // a watchdog already gone needs no disarming
	d.w.Close()
	d.cmd.Wait()
}
