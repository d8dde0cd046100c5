//go:build e2e

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/e2e"
)

// check compares tollgate's socket with where the host's Postfix (here a
// private configuration, selected with MAIL_CONFIG as postconf reads it)
// looks for milters through smtpd's chroot: a configuration Postfix cannot
// reach gets a warning that says what to write (issue 14, point 3).
func TestCheckWarnsWhenPostfixCannotReachTheSocket(t *testing.T) {
	e2e.RequireProgram(t, postconfProgram, "postfix")
	dir := t.TempDir()
	queue := filepath.Join(dir, "queue")
	if err := os.MkdirAll(filepath.Join(queue, "tollgate"), 0o755); err != nil {
		t.Fatal(err)
	}
	master := "smtp inet n - y - - smtpd\n"
	for _, tc := range []struct {
		name, milters, listen, want string
	}{
		{"reached through the chroot", "unix:/tollgate/tollgate.sock", queue + "/tollgate/tollgate.sock", ""},
		{"the default socket, outside the chroot", "unix:/tollgate/tollgate.sock", dir + "/tollgate.sock",
			"runs smtpd chrooted in " + queue + " and cannot reach " + dir + "/tollgate.sock"},
		{"another socket inside", "unix:/other/milter.sock", queue + "/tollgate/tollgate.sock",
			"looks for milters at unix:/other/milter.sock (smtpd runs chrooted in " + queue + "), not at unix:" + queue + "/tollgate/tollgate.sock: it would name this socket smtpd_milters = unix:/tollgate/tollgate.sock"},
		{"no milter yet", "", queue + "/tollgate/tollgate.sock", "has no smtpd_milters, so mail does not pass through tollgate; add to main.cf: smtpd_milters = unix:/tollgate/tollgate.sock"},
		{"TCP", "inet:127.0.0.1:8891", "inet:127.0.0.1:8891", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			main := "compatibility_level = 3.6\nqueue_directory = " + queue + "\nsmtpd_milters = " + tc.milters + "\n"
			if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(main), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "master.cf"), []byte(master), 0o644); err != nil {
				t.Fatal(err)
			}
			listen := tc.listen
			if !strings.HasPrefix(listen, "inet:") {
				listen = "unix:" + listen
			}
			config := writeFile(t, t.TempDir(), "tollgate.yaml", "listen: "+listen+"\nacl:\n  rcpt:\n    - accept: {}\n")
			cmd := exec.Command(binary, "check", "--config", config)
			cmd.Env = append(os.Environ(), "MAIL_CONFIG="+dir)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("check: %v\n%s", err, out)
			}
			if tc.want == "" && strings.Contains(string(out), "warning") {
				t.Errorf("unexpected warning:\n%s", out)
			}
			if want := config + ":1: warning: listen: this host's Postfix " + tc.want; tc.want != "" && !strings.Contains(string(out), want) {
				t.Errorf("want %q in:\n%s", want, out)
			}
		})
	}
}

// A user that is not in the socket's group cannot hand the socket to it:
// check says so, as the daemon would fail.
func TestCheckSocketGroupMembership(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test runs check as another user: run it as root")
	}
	setpriv := e2e.RequireProgram(t, "setpriv", "util-linux")
	dir, err := os.MkdirTemp("", "tollgate-check-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "tollgate.yaml")
	if err := os.WriteFile(config, []byte("listen: unix:"+dir+"/t.sock\nsocket: {group: \"0\"}\nacl:\n  rcpt:\n    - accept: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "tollgate")
	if b, err := os.ReadFile(binary); err != nil || os.WriteFile(bin, b, 0o755) != nil {
		t.Fatal("copying the binary where nobody can run it")
	}
	out, err := exec.Command(setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", bin, "check", "--config", config).CombinedOutput()
	if want := config + ":2: socket.group: this user (nobody) is not in the group 0"; err == nil || !strings.Contains(string(out), want) {
		t.Errorf("check as nobody: %v, want %q in:\n%s", err, want, out)
	}
}
