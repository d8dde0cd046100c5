package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// syslogListener is a local syslog daemon's socket: a unix datagram socket
// that keeps every datagram it receives.
type syslogListener struct {
	conn *net.UnixConn
	path string
	mu   sync.Mutex
	got  []string
}

func listenSyslog(t *testing.T, path string) *syslogListener {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	l := &syslogListener{conn: c, path: path}
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			l.mu.Lock()
			l.got = append(l.got, string(buf[:n]))
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() { l.close() })
	return l
}

func (l *syslogListener) close() {
	l.conn.Close()
	os.Remove(l.path)
}

// wait returns the first datagram containing s.
func (l *syslogListener) wait(t *testing.T, s string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.mu.Lock()
		for _, g := range l.got {
			if strings.Contains(g, s) {
				l.mu.Unlock()
				return g
			}
		}
		got := strings.Join(l.got, "\n")
		l.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no syslog line with %q; got:\n%s", s, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syslogLine is the form syslog(3) writes on the local socket and rsyslog's
// imuxsock parses (RFC 3164 without the host name): <PRI>Mmm dd hh:mm:ss TAG[PID]: MSG
var syslogLine = regexp.MustCompile(`^<(\d{1,3})>([A-Z][a-z]{2} [ 123]\d \d\d:\d\d:\d\d) tollgate\[(\d+)\]: (.*)$`)

func parseSyslog(t *testing.T, line string) (pri int, pid int, msg string) {
	t.Helper()
	m := syslogLine.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("not a local syslog line: %q", line)
	}
	if _, err := time.Parse(time.Stamp, m[2]); err != nil {
		t.Errorf("timestamp %q: %v", m[2], err)
	}
	pri, _ = strconv.Atoi(m[1])
	pid, _ = strconv.Atoi(m[3])
	return pri, pid, m[4]
}

func TestSyslogNextToStderr(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log.sock")
	listener := listenSyslog(t, sock)
	d := startDaemon(t, fmt.Sprintf("log: {syslog: mail, syslog_address: %s}\n", sock)+denyConfig)
	rcpt(t, d.sock, "blocked@example.org")

	line := listener.wait(t, `msg="recipient refused"`)
	pri, pid, msg := parseSyslog(t, line)
	if pri != 2*8+6 { // mail.info
		t.Errorf("priority <%d>, want <22> (mail.info)", pri)
	}
	if pid != d.cmd.Process.Pid {
		t.Errorf("pid %d, want %d", pid, d.cmd.Process.Pid)
	}
	if strings.Contains(msg, "time=") || !strings.HasPrefix(msg, "level=INFO ") || !strings.Contains(msg, "recipient=<blocked@example.org>") {
		t.Errorf("message %q: want the stderr line without its time", msg)
	}
	d.waitLog(t, msg) // and the same line on standard error
	started := listener.wait(t, "tollgate started")
	if !strings.Contains(started, "syslog=mail") {
		t.Errorf("start line does not name the syslog facility: %q", started)
	}

	// A refused reload is an error: mail.err.
	os.WriteFile(d.config, []byte("acl: {rcpt: [bogus: {}]}\n"), 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	if pri, _, _ := parseSyslog(t, listener.wait(t, "configuration reload refused")); pri != 2*8+3 {
		t.Errorf("refused reload at <%d>, want <19> (mail.err)", pri)
	}
}

func TestSyslogJSON(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log.sock")
	listener := listenSyslog(t, sock)
	startDaemon(t, fmt.Sprintf("log: {format: json, syslog: local5, syslog_address: %s}\n", sock)+denyConfig)
	pri, _, msg := parseSyslog(t, listener.wait(t, "tollgate started"))
	if pri != 21*8+6 || !strings.HasPrefix(msg, `{"level":"INFO","msg":"tollgate started"`) {
		t.Errorf("<%d> %s", pri, msg)
	}
}

// A syslog socket that is not there stops the start with a clear error:
// running on with every line lost would hide the log.
func TestSyslogUnreachableFailsStart(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "tollgate.yaml")
	os.WriteFile(config, []byte("log: {syslog: mail, syslog_address: "+dir+"/no-such.sock}\n"), 0o644)
	out, err := exec.Command(binary, "run", "--config", config, "--listen", "unix:"+dir+"/m.sock", "--metrics-listen", "off").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "log.syslog: dial unixgram "+dir+"/no-such.sock") {
		t.Errorf("exit %v:\n%s", err, out)
	}
}

// The syslog daemon restarts (its socket goes away and comes back): the
// lines in between are lost and counted, the next ones arrive again, and no
// write ever waits on it.
func TestSyslogWriterSurvivesRestart(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log.sock")
	first := listenSyslog(t, sock)
	var warnings lockedBuffer
	w, err := dialSyslog(&policy.Syslog{Facility: 2, Address: sock}, slog.New(slog.NewTextHandler(&warnings, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.send(6, []byte("before\n"))
	first.wait(t, "before")
	first.close()
	for i := range 3 {
		w.send(6, fmt.Appendf(nil, "lost %d", i))
	}
	deadline := time.Now().Add(5 * time.Second)
	for w.Dropped() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("dropped %d lines, want 3", w.Dropped())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(warnings.String(), `msg="syslog line dropped; standard error still has it" reason=write_failed address=`+sock) {
		t.Errorf("no warning on standard error for the lost lines:\n%s", warnings.String())
	}
	second := listenSyslog(t, sock)
	w.send(4, []byte("after"))
	if pri, _, msg := parseSyslog(t, second.wait(t, "after")); pri != 20 || msg != "after" {
		t.Errorf("<%d> %q", pri, msg)
	}
}

func TestSyslogLineIsBounded(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log.sock")
	l := listenSyslog(t, sock)
	w, err := dialSyslog(&policy.Syslog{Facility: 2, Address: sock}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.send(6, []byte("long "+strings.Repeat("x", 3*maxSyslogLine)))
	w.Close()
	_, _, msg := parseSyslog(t, l.wait(t, "long "))
	if len(msg) != maxSyslogLine {
		t.Errorf("message of %d bytes, want it cut at %d", len(msg), maxSyslogLine)
	}
	w.send(6, []byte("after close")) // no panic, counted
	if w.Dropped() != 1 {
		t.Errorf("dropped %d after close, want 1", w.Dropped())
	}
}
