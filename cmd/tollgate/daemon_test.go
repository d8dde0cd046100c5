package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/tollgate/tollgate/internal/mta"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tollgate-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "tollgate")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building tollgate: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemonProc is the real tollgate binary running as a child process.
type daemonProc struct {
	cmd     *exec.Cmd
	sock    string
	metrics string
	config  string
	log     *lockedBuffer
	exited  chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startDaemon(t *testing.T, config string) *daemonProc {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "tollgate.sock")
	d := launchDaemon(t, config, "unix:"+sock)
	d.sock = sock
	return d
}

// launchDaemon runs the tollgate binary with config on the given milter
// socket and a free metrics port, and waits until it serves.
func launchDaemon(t *testing.T, config, listen string) *daemonProc {
	t.Helper()
	d := &daemonProc{metrics: freePort(t), config: filepath.Join(t.TempDir(), "tollgate.yaml"),
		log: &lockedBuffer{}, exited: make(chan error, 1)}
	if err := os.WriteFile(d.config, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(binary, "run", "--config", d.config, "--listen", listen, "--metrics-listen", d.metrics)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		<-d.exited
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.log.String())
		}
	})
	d.waitLog(t, "tollgate started")
	return d
}

func (d *daemonProc) waitLog(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(d.log.String(), s) {
		select {
		case err := <-d.exited:
			d.exited <- err // the cleanup waits for it too
			t.Fatalf("daemon exited (%v) before logging %q:\n%s", err, s, d.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log:\n%s", s, d.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *daemonProc) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + d.metrics + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (d *daemonProc) metric(t *testing.T, line string) bool {
	_, body := d.get(t, "/metrics")
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if sc.Text() == line {
			return true
		}
	}
	return false
}

// waitMetric polls /metrics for an exposition line: messages are counted when
// the MTA ends the milter session, which is not synchronous with the SMTP reply.
func (d *daemonProc) waitMetric(t *testing.T, line string) bool {
	deadline := time.Now().Add(10 * time.Second)
	for !d.metric(t, line) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// rcpt runs one SMTP envelope through the daemon and returns the rcpt action.
func rcpt(t *testing.T, sock, addr string) *gomilter.Action {
	t.Helper()
	c := mta.NewClient("unix", sock)
	s, err := c.Session(gomilter.NewMacroBag())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, step := range []func() (*gomilter.Action, error){
		func() (*gomilter.Action, error) { return s.Conn("h", gomilter.FamilyInet, 1, "192.0.2.1") },
		func() (*gomilter.Action, error) { return s.Helo("h") },
		func() (*gomilter.Action, error) { return s.Mail("a@example.net", "") },
	} {
		if _, err := step(); err != nil {
			t.Fatal(err)
		}
	}
	act, err := s.Rcpt(addr, "")
	if err != nil {
		t.Fatal(err)
	}
	return act
}

const denyConfig = `
acl:
  rcpt:
    - deny: {name: blocked, recipients: [blocked@example.org]}
    - accept: {}
`

func TestReload(t *testing.T) {
	d := startDaemon(t, denyConfig)
	if !rcpt(t, d.sock, "blocked@example.org").StopProcessing() {
		t.Fatal("not rejected before reload")
	}
	// A session open across the reload keeps its configuration.
	c := mta.NewClient("unix", d.sock)
	open, err := c.Session(gomilter.NewMacroBag())
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	open.Conn("h", gomilter.FamilyInet, 1, "192.0.2.1")
	open.Helo("h")
	open.Mail("a@example.net", "")

	os.WriteFile(d.config, []byte("acl:\n  rcpt:\n    - accept: {}\n"), 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitLog(t, "configuration reloaded")
	if rcpt(t, d.sock, "blocked@example.org").StopProcessing() {
		t.Error("valid reload did not change behaviour for new sessions")
	}
	if act, err := open.Rcpt("blocked@example.org", ""); err != nil || !act.StopProcessing() {
		t.Errorf("open session changed configuration: %v %v", act, err)
	}
	if !d.metric(t, `tollgate_config_reloads_total{result="success"} 1`) {
		t.Error("success not counted")
	}
	loaded := d.metricValue(t, "tollgate_config_last_reload_timestamp_seconds")
	if loaded == "" || loaded == "0" {
		t.Errorf("reload timestamp not set after a successful reload: %q", loaded)
	}
	// The timestamp has a resolution finer than a second: make a refused
	// reload that moved it visible.
	time.Sleep(20 * time.Millisecond)

	os.WriteFile(d.config, []byte("acl:\n  rcpt:\n    - deny: {recipients: [+missing]}\n    - bogus: {}\n"), 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitLog(t, "configuration reload refused")
	if !strings.Contains(d.log.String(), "tollgate.yaml:3: unknown list") && !strings.Contains(d.log.String(), "tollgate.yaml:3:") {
		t.Errorf("reload errors lack file:line:\n%s", d.log.String())
	}
	if rcpt(t, d.sock, "blocked@example.org").StopProcessing() {
		t.Error("invalid reload replaced the configuration")
	}
	if !d.metric(t, `tollgate_config_reloads_total{result="failure"} 1`) || !d.metric(t, "tollgate_config_last_reload_successful 0") {
		t.Error("failure not counted")
	}
	if got := d.metricValue(t, "tollgate_config_last_reload_timestamp_seconds"); got != loaded {
		t.Errorf("a refused reload moved the reload timestamp: %s, was %s", got, loaded)
	}
}

// metricValue is the value of an unlabelled metric on /metrics, "" if absent.
func (d *daemonProc) metricValue(t *testing.T, name string) string {
	t.Helper()
	_, body := d.get(t, "/metrics")
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			return v
		}
	}
	return ""
}

func TestGracefulShutdown(t *testing.T) {
	d := startDaemon(t, "drain_timeout: 20s\n"+denyConfig)
	if code, body := d.get(t, "/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("healthz %d %q", code, body)
	}
	if code, _ := d.get(t, "/readyz"); code != 200 {
		t.Errorf("readyz %d", code)
	}
	c := mta.NewClient("unix", d.sock)
	s, err := c.Session(gomilter.NewMacroBag())
	if err != nil {
		t.Fatal(err)
	}
	s.Conn("h", gomilter.FamilyInet, 1, "192.0.2.1")
	s.Helo("h")
	s.Mail("a@example.net", "")
	s.Rcpt("b@example.org", "")
	s.DataStart()

	d.cmd.Process.Signal(syscall.SIGTERM)
	d.waitLog(t, "shutting down")
	if code, _ := d.get(t, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("readyz while draining: %d", code)
	}
	// New MTA connections are refused while the one in flight finishes.
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := net.Dial("unix", d.sock)
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections while draining")
		}
		time.Sleep(20 * time.Millisecond)
	}
	finishInFlight(t, d, s, "message in flight")
	if !strings.Contains(d.log.String(), "decision=accept") {
		t.Errorf("message in flight not logged:\n%s", d.log.String())
	}
	if _, err := os.Stat(d.sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
}

func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte(denyConfig), 0o644)
	os.WriteFile(bad, []byte("acl:\n  rcpt:\n    - deny: {hosts: [not-an-ip]}\n    - accept: {colour: red}\n"), 0o644)
	out, err := exec.Command(binary, "check", "--config", good).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "good.yaml: OK") {
		t.Errorf("good: %v %s", err, out)
	}
	out, err = exec.Command(binary, "check", "--config", bad).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("bad config exit: %v", err)
	}
	for _, want := range []string{bad + ":3: ", bad + ":4: unknown key \"colour\""} {
		if !strings.Contains(string(out), want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}

// finishInFlight ends the message s has in flight, which the draining
// daemon must accept, and waits for the daemon to exit cleanly after it.
func finishInFlight(t *testing.T, d *daemonProc, s *gomilter.ClientSession, what string) {
	t.Helper()
	s.HeaderEnd()
	_, act, err := s.BodyReadFrom(strings.NewReader("in flight\r\n"))
	if err != nil || act.Type != gomilter.ActionAccept {
		t.Fatalf("%s: %v %v", what, act, err)
	}
	s.Close()
	select {
	case err := <-d.exited:
		d.exited <- err
		if err != nil {
			t.Errorf("exit: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("daemon did not exit after the last session ended")
	}
}

// A SIGHUP re-reads the files that lists name; a file broken by an edit
// makes the reload fail like any invalid configuration, so the lists in use
// stay as they were.
func TestReloadRereadsListFiles(t *testing.T) {
	blocked := filepath.Join(t.TempDir(), "blocked_recipients")
	if err := os.WriteFile(blocked, []byte("# blocked\nblocked@example.org\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, fmt.Sprintf("acl:\n  rcpt:\n    - deny: {recipients: [\"file:%s\"]}\n    - accept: {}\n", blocked))
	if !rcpt(t, d.sock, "blocked@example.org").StopProcessing() || rcpt(t, d.sock, "other@example.org").StopProcessing() {
		t.Fatal("file list not applied at start")
	}
	if err := os.WriteFile(blocked, []byte("other@example.org\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitLog(t, "configuration reloaded")
	if rcpt(t, d.sock, "blocked@example.org").StopProcessing() || !rcpt(t, d.sock, "other@example.org").StopProcessing() {
		t.Error("the reload did not use the edited file")
	}
	if err := os.WriteFile(blocked, []byte("other@example.org\nbad@exa*mple.org\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitLog(t, "configuration reload refused")
	if want := "tollgate.yaml:3: " + blocked + ":2: "; !strings.Contains(d.log.String(), want) {
		t.Errorf("the refusal does not name %q:\n%s", want, d.log.String())
	}
	if rcpt(t, d.sock, "blocked@example.org").StopProcessing() || !rcpt(t, d.sock, "other@example.org").StopProcessing() {
		t.Error("a broken file changed the lists in use")
	}
	if !d.metric(t, `tollgate_config_reloads_total{result="failure"} 1`) {
		t.Error("the refused reload was not counted")
	}
}

// Without a SIGHUP, a changed list file is re-read within
// lists_check_interval; a broken edit keeps the contents in use, says so
// once and is counted, and the next good edit is taken again.
func TestListFilesReloadedOnChange(t *testing.T) {
	blocked := filepath.Join(t.TempDir(), "blocked_recipients")
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(blocked, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("blocked@example.org\n")
	d := startDaemon(t, fmt.Sprintf("lists_check_interval: 50ms\nacl:\n  rcpt:\n    - deny: {recipients: [\"file:%s\"]}\n    - accept: {}\n", blocked))
	if !rcpt(t, d.sock, "blocked@example.org").StopProcessing() || rcpt(t, d.sock, "other@example.org").StopProcessing() {
		t.Fatal("file list not applied at start")
	}
	// The configuration file itself is only read on SIGHUP: an edit of it
	// must not ride along with a list change.
	if err := os.WriteFile(d.config, []byte("acl: {rcpt: [{deny: {}}]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	write("# now\nother@example.org\n")
	d.waitLog(t, "list files changed; policy rebuilt")
	if !d.waitMetric(t, `tollgate_list_reloads_total{result="ok"} 1`) {
		t.Error("the rebuild was not counted")
	}
	if rcpt(t, d.sock, "blocked@example.org").StopProcessing() || !rcpt(t, d.sock, "other@example.org").StopProcessing() {
		t.Error("the edited file is not in use")
	}
	write("other@example.org\nbad@exa*mple.org\n")
	d.waitLog(t, "the previous contents stay in use")
	if !d.waitMetric(t, `tollgate_list_reloads_total{result="error"} 1`) {
		t.Error("the refused rebuild was not counted")
	}
	if want := blocked + ":2: "; !strings.Contains(d.log.String(), want) {
		t.Errorf("the refusal does not name %q", want)
	}
	if rcpt(t, d.sock, "blocked@example.org").StopProcessing() || !rcpt(t, d.sock, "other@example.org").StopProcessing() {
		t.Error("a broken file changed the lists in use")
	}
	// A broken file is tried once per change, not at every check.
	time.Sleep(300 * time.Millisecond)
	if n := strings.Count(d.log.String(), "the previous contents stay in use"); n != 1 {
		t.Errorf("%d error lines for one broken edit", n)
	}
	write("blocked@example.org\nother@example.org\n")
	if !d.waitMetric(t, `tollgate_list_reloads_total{result="ok"} 2`) {
		t.Fatal("the repaired file was not taken")
	}
	if !rcpt(t, d.sock, "blocked@example.org").StopProcessing() || !rcpt(t, d.sock, "other@example.org").StopProcessing() {
		t.Error("the repaired file is not in use")
	}
	if !d.metric(t, `tollgate_config_reloads_total{result="success"} 0`) {
		t.Error("a list rebuild counted as a configuration reload")
	}
}
