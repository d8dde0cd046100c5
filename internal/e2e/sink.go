package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/message"
)

// Sink is a running smtp-sink that keeps every message it receives.
type Sink struct {
	Addr string // 127.0.0.1:port
	Dir  string // one file per message, written by smtp-sink

	cmd    *exec.Cmd
	exited chan struct{}
	log    string
}

// StartSink starts /usr/sbin/smtp-sink on a free loopback port, writing one
// file per message into a private directory. t.Cleanup stops it.
func StartSink(t testing.TB) *Sink {
	t.Helper()
	RequireProgram(t, SinkProgram, postfixPackage)
	base := privateDir(t, "tollgate-e2e-sink-")
	s := &Sink{Dir: filepath.Join(base, "messages"), log: filepath.Join(base, "smtp-sink.log")}
	if err := os.Mkdir(s.Dir, 0o755); err != nil {
		t.Fatalf("e2e: %v", err)
	}
	var dropPrivileges []string
	if os.Geteuid() == 0 {
		// smtp-sink refuses to run as root; as nobody it must own the
		// directory it writes to.
		uid, gid := lookupNobody(t)
		if err := os.Chown(s.Dir, uid, gid); err != nil {
			t.Fatalf("e2e: %v", err)
		}
		dropPrivileges = []string{"-u", "nobody"}
	}
	// A port that was free a moment ago may be taken by another test
	// process by the time smtp-sink binds it: try again on a new one.
	var lastErr error
	for range 3 {
		port := FreePort(t)
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		lastErr = s.start(t, port, dropPrivileges)
		if lastErr == nil {
			return s
		}
		if !strings.Contains(s.Log(), "in use") {
			break
		}
	}
	t.Fatalf("e2e: starting smtp-sink: %v\nsmtp-sink output:\n%s", lastErr, s.Log())
	return nil
}

func (s *Sink) start(t testing.TB, port int, dropPrivileges []string) error {
	t.Helper()
	logFile, err := os.Create(s.log)
	if err != nil {
		return err
	}
	defer logFile.Close()
	args := slices.Concat(dropPrivileges, []string{
		"-h", "sink.tollgate.test",
		"-d", filepath.Join(s.Dir, "%Y%m%d%H%M%S."),
		s.Addr, "128"})
	cmd := exec.Command(SinkProgram, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Dir = "/"
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	// smtp-sink's privilege drop clears any parent-death signal, so only a
	// watchdog can stop it when the test binary dies without cleaning up.
	wd := startWatchdog(t, `kill -KILL "$1" 2>/dev/null; rm -rf "$2"`,
		strconv.Itoa(cmd.Process.Pid), filepath.Dir(s.Dir))
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		wd.disarm()
	}
	if err := waitListening(net.IPv4(127, 0, 0, 1), port, exited); err != nil {
		stop()
		return err
	}
	s.cmd, s.exited = cmd, exited
	t.Cleanup(stop)
	return nil
}

func lookupNobody(t testing.TB) (uid, gid int) {
	t.Helper()
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("e2e: smtp-sink must not run as root and there is no user nobody: %v", err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// Log returns what smtp-sink printed (errors only, unless it crashed).
func (s *Sink) Log() string {
	b, _ := os.ReadFile(s.log)
	return string(b)
}

// Messages returns the complete messages received so far, oldest first.
// Transactions still in progress are left out.
func (s *Sink) Messages(t testing.TB) []Message {
	t.Helper()
	msgs, err := s.messages()
	if err != nil {
		t.Fatalf("e2e: reading sink messages: %v", err)
	}
	return msgs
}

// WaitMessages polls until at least n messages arrived and fails the test
// when timeout passes first.
func (s *Sink) WaitMessages(t testing.TB, n int, timeout time.Duration) []Message {
	t.Helper()
	msgs, err := s.waitMessages(n, timeout)
	if err != nil {
		t.Fatalf("e2e: %v", err)
	}
	return msgs
}

func (s *Sink) waitMessages(n int, timeout time.Duration) ([]Message, error) {
	deadline := time.Now().Add(timeout)
	for {
		msgs, err := s.messages()
		if err != nil {
			return nil, err
		}
		if len(msgs) >= n {
			return msgs, nil
		}
		if time.Now().After(deadline) {
			return msgs, fmt.Errorf("sink %s: %d messages after %v, want at least %d", s.Addr, len(msgs), timeout, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Sink) messages() ([]Message, error) {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil, err
	}
	// smtp-sink creates the file at MAIL FROM and closes it after the final
	// dot, before it answers 250. A file listed before the open descriptors
	// are read and not among them is therefore complete: a file is never
	// reopened, and an aborted transaction unlinks its file.
	open := s.openFiles()
	type dated struct {
		m   Message
		mod time.Time
	}
	var found []dated
	for _, e := range entries {
		path := filepath.Join(s.Dir, e.Name())
		if open[path] || !e.Type().IsRegular() {
			continue
		}
		raw, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		m, err := parseSinkFile(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		m.File = path
		found = append(found, dated{m, fi.ModTime()})
	}
	sort.SliceStable(found, func(i, j int) bool {
		if !found[i].mod.Equal(found[j].mod) {
			return found[i].mod.Before(found[j].mod)
		}
		return found[i].m.File < found[j].m.File
	})
	msgs := make([]Message, len(found))
	for i, d := range found {
		msgs[i] = d.m
	}
	return msgs, nil
}

func (s *Sink) openFiles() map[string]bool {
	open := map[string]bool{}
	select {
	case <-s.exited:
		return open
	default:
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", s.cmd.Process.Pid)
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return open
	}
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil {
			open[target] = true
		}
	}
	return open
}

// Message is one message as smtp-sink stored it: line ends are LF (smtp-sink
// drops every CR) and dot-stuffing is undone.
type Message struct {
	File     string
	Envelope Envelope
	Raw      []byte // header and body, without smtp-sink's own records
	Headers  []HeaderField
	Body     []byte // after the empty line that ends the header
}

// Envelope is the SMTP transaction that delivered a message to the sink.
type Envelope struct {
	ClientAddr string   // the peer's address; IPv6 is prefixed "ipv6:"
	Proto      string   // SMTP, ESMTP or LMTP
	Helo       string   // HELO/EHLO argument, empty if none was given
	MailArgs   string   // everything after "MAIL FROM:"
	RcptArgs   []string // everything after "RCPT TO:", one per recipient
}

// From returns the envelope sender without angle brackets.
func (e Envelope) From() string { return smtpPath(e.MailArgs) }

// To returns the envelope recipients without angle brackets, in order.
func (e Envelope) To() []string {
	to := make([]string, len(e.RcptArgs))
	for i, a := range e.RcptArgs {
		to[i] = smtpPath(a)
	}
	return to
}

func smtpPath(args string) string {
	path, _, _ := strings.Cut(strings.TrimSpace(args), " ")
	return strings.TrimSuffix(strings.TrimPrefix(path, "<"), ">")
}

// HeaderField is one header field. Value is the raw text after the colon,
// leading space and folding line breaks included, without the final newline.
type HeaderField struct {
	Name, Value string
}

// Unfolded returns the value with folding undone and leading space trimmed.
func (h HeaderField) Unfolded() string {
	return strings.TrimLeft(unfold(h.Value), " \t")
}

func unfold(v string) string {
	return strings.NewReplacer("\r\n", "", "\n", "").Replace(v)
}

// Header returns all values of the named header field (case-insensitive),
// unfolded, with leading space trimmed, in message order.
func (m Message) Header(name string) []string {
	var vals []string
	for _, h := range m.Headers {
		if strings.EqualFold(h.Name, name) {
			vals = append(vals, h.Unfolded())
		}
	}
	return vals
}

// parseSinkFile splits smtp-sink's dump format: its X-Client-Addr,
// X-Client-Proto, X-Helo-Args, X-Mail-Args and X-Rcpt-Args records, then a
// three-line Received header of its own, then the message, then the newline
// of the final ".\r\n".
func parseSinkFile(raw []byte) (Message, error) {
	var m Message
	rest := raw
	for {
		line, after, ok := bytes.Cut(rest, []byte("\n"))
		if !ok {
			return m, errors.New("no Received header from smtp-sink: incomplete file")
		}
		name, val, _ := strings.Cut(string(line), ": ")
		switch name {
		case "X-Client-Addr":
			m.Envelope.ClientAddr = val
		case "X-Client-Proto":
			m.Envelope.Proto = val
		case "X-Helo-Args":
			m.Envelope.Helo = val
		case "X-Mail-Args":
			m.Envelope.MailArgs = val
		case "X-Rcpt-Args":
			m.Envelope.RcptArgs = append(m.Envelope.RcptArgs, val)
		case "Received":
			// Its two continuation lines: "\tby HOST (smtp-sink) ..." and the date.
			for range 2 {
				cont, next, ok := bytes.Cut(after, []byte("\n"))
				if !ok || len(cont) == 0 || cont[0] != '\t' {
					return m, errors.New("smtp-sink's Received header is not three lines")
				}
				after = next
			}
			m.Raw = bytes.TrimSuffix(after, []byte("\n"))
			m.Headers, m.Body = parseMessage(m.Raw)
			return m, nil
		default:
			return m, fmt.Errorf("unexpected smtp-sink record %q", line)
		}
		rest = after
	}
}

// parseMessage splits a delivered message; values keep their folding, with
// LF line breaks as smtp-sink writes them.
func parseMessage(raw []byte) ([]HeaderField, []byte) {
	fields, body, _ := message.Split(raw)
	var headers []HeaderField
	for _, f := range fields {
		headers = append(headers, HeaderField{Name: f.Name, Value: strings.ReplaceAll(f.Value, "\r\n", "\n")})
	}
	return headers, body
}
