package bmi

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The real scanners are started once per test binary (sync.Once) and
// stopped by TestMain; a test that needs to stop one starts its own.

var (
	cleanupMu sync.Mutex
	cleanups  []func()
)

func atExit(f func()) {
	cleanupMu.Lock()
	cleanups = append(cleanups, f)
	cleanupMu.Unlock()
}

func TestMain(m *testing.M) {
	code := m.Run()
	cleanupMu.Lock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	cleanupMu.Unlock()
	os.Exit(code)
}

func requireProgram(t testing.TB, name, debianPackages string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p
		}
	}
	t.Fatalf("%s not found: install the Debian package(s) %s (scripts/install-test-deps.sh)", name, debianPackages)
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// process is a daemon started in its own process group, so that stopping it
// also stops its children (spamd's and rspamd's workers) and nothing else.
type process struct {
	name   string
	cmd    *exec.Cmd
	exited chan error
	log    string
	once   sync.Once
}

func startProcess(name, logPath, path string, args ...string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(path, args...)
	// A file, not a pipe: the daemon's children inherit it, and Wait
	// would otherwise wait for them too.
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, exited: make(chan error, 1), log: logPath}
	go func() { p.exited <- cmd.Wait() }()
	return p, nil
}

// stop sends SIGTERM to the process group, then SIGKILL after a grace period.
func (p *process) stop() {
	p.once.Do(func() {
		pgid := p.cmd.Process.Pid
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.exited
		}
		// Workers that outlived their parent.
		syscall.Kill(-pgid, syscall.SIGKILL)
	})
}

func (p *process) logTail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// waitReady polls ping until it succeeds, the process exits or the time is up.
func (p *process) waitReady(limit time.Duration, ping func(context.Context) error) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		select {
		case err := <-p.exited:
			p.exited <- err
			return fmt.Errorf("%s exited: %v\n%s", p.name, err, p.logTail())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		last = ping(ctx)
		cancel()
		if last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %v: %v\n%s", p.name, limit, last, p.logTail())
}

// daemonUser is who the daemons' workers run as when the tests run as root.
func daemonUser(candidates ...string) (*user.User, *user.Group) {
	for _, name := range candidates {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		g, err := user.LookupGroupId(u.Gid)
		if err != nil {
			continue
		}
		return u, g
	}
	return nil, nil
}

func chownTo(u *user.User, paths ...string) error {
	if u == nil {
		return nil
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for _, p := range paths {
		if err := os.Chown(p, uid, gid); err != nil {
			return err
		}
	}
	return nil
}

// Test messages. GTUBE lines of rspamd's test patterns: X = reject,
// Y = add header, Z = rewrite subject, A = no action (rspamd 3.4, the
// last three with enable_test_patterns).
const gtubeBody = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

func message(subject, body string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Received: from mail.example.org (mail.example.org [192.0.2.10])\r\n\tby mx.example.net with ESMTP id 4AbCdE; %s\r\n", time.Now().Format(time.RFC1123Z))
	b.WriteString("From: Alice Example <alice@example.org>\r\n")
	b.WriteString("To: Bob Example <bob@example.net>\r\n")
	fmt.Fprintf(&b, "Subject: %s\r\n", subject)
	fmt.Fprintf(&b, "Date: %s\r\n", time.Now().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%d.tollgate-test@example.org>\r\n", time.Now().UnixNano())
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
	b.WriteString(strings.ReplaceAll(body, "\n", "\r\n"))
	b.WriteString("\r\n")
	return b.Bytes()
}

func cleanMessage() []byte {
	return message("Lunch on Thursday", "Hi Bob,\n\nare we still on for lunch on Thursday at noon? The usual place\nnear the station is fine with me.\n\nAlice\n")
}

func gtubeMessage(letter byte) []byte {
	line := string(letter) + gtubeBody[1:]
	return message("Test pattern", "This is a test message.\n\n"+line+"\n")
}

func env(rcpts ...string) Envelope {
	return Envelope{Sender: "alice@example.org", Helo: "mail.example.org", Hostname: "mail.example.org",
		QueueID: "4AbCdE", Rcpts: rcpts}
}

func scan(t *testing.T, b Backend, msg []byte, e Envelope, profile string) *ScanResult {
	t.Helper()
	res, err := b.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg)), e, profile)
	if err != nil {
		t.Fatalf("%s scan (profile %q): %v", b.Name(), profile, err)
	}
	return res
}

func ptr[T any](v T) *T { return &v }
