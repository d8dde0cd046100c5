package e2e

import (
	"bufio"
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
)

// Spamd is a private SpamAssassin spamd on loopback.
type Spamd struct {
	Addr string // host:port
	Dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// StartSpamd starts spamd with local tests only (-L, no network), one
// virtual user per profile whose user_prefs are the given text (e.g.
// "required_score -5"), so a profile is chosen with the User: header.
// Stopped by t.Cleanup; Stop stops it earlier (a scanner that went away).
func StartSpamd(t testing.TB, profiles map[string]string) *Spamd {
	t.Helper()
	RequireProgram(t, "/usr/sbin/spamd", "spamd")
	dir := privateDir(t, "tollgate-e2e-spamd-")
	for name, prefs := range profiles {
		d := filepath.Join(dir, "vc", name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "user_prefs"), []byte(prefs+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	port := FreePort(t)
	s := &Spamd{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Dir: dir, done: make(chan struct{})}
	args := []string{"-L", "-x", "--virtual-config-dir=" + filepath.Join(dir, "vc", "%u"), "-i", s.Addr, "-A", "127.0.0.1",
		"--max-children", "2", "--min-children", "1", "--min-spare", "1", "--max-spare", "1",
		"-r", filepath.Join(dir, "spamd.pid"), "-s", "stderr", "--cf", "use_bayes 0", "--cf", "bayes_auto_learn 0"}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "nobody")
	}
	log, err := os.Create(filepath.Join(dir, "spamd.log"))
	if err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command("/usr/sbin/spamd", args...)
	s.cmd.Stdout, s.cmd.Stderr = log, log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); log.Close(); close(s.done) }()
	t.Cleanup(s.Stop)
	deadline := time.Now().Add(90 * time.Second)
	for !s.ping() {
		select {
		case <-s.done:
			b, _ := os.ReadFile(filepath.Join(dir, "spamd.log"))
			t.Fatalf("spamd exited:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("spamd did not answer PING at %s", s.Addr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return s
}

func (s *Spamd) ping() bool {
	c, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(c, "PING SPAMC/1.5\r\n\r\n")
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.Contains(line, "PONG")
}

// Stop ends spamd and its children (its process group).
func (s *Spamd) Stop() {
	select {
	case <-s.done:
		return
	default:
	}
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}
