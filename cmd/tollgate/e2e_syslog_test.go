//go:build e2e

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/e2e"
)

// rsyslogConf is a private rsyslog: Debian's, without the system socket,
// listening on the test's own socket and sorting by facility as Debian's
// /etc/rsyslog.conf does (mail.* to mail.log, the rest elsewhere).
const rsyslogConf = `
global(workDirectory="%[1]s")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="%[1]s/log.sock" CreatePath="on")
template(name="sorted" type="string" string="%%syslogfacility-text%%.%%syslogseverity-text%% %%programname%%[%%procid%%]:%%msg%%\n")
mail.*                 action(type="omfile" file="%[1]s/mail.log" template="sorted")
*.*;mail.none          action(type="omfile" file="%[1]s/other.log" template="sorted")
`

// A real rsyslog takes tollgate's lines on its socket and files them under
// the mail facility with their severity, tag and pid.
func TestRsyslogFilesTollgateUnderMail(t *testing.T) {
	e2e.RequireProgram(t, "/usr/sbin/rsyslogd", "rsyslog")
	dir, err := os.MkdirTemp("", "tollgate-rsyslog-") // short: unix socket paths
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	conf := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, rsyslogConf, dir), 0o644); err != nil {
		t.Fatal(err)
	}
	rs := exec.Command("/usr/sbin/rsyslogd", "-n", "-f", conf, "-i", filepath.Join(dir, "rsyslogd.pid"))
	var rsOut lockedBuffer
	rs.Stdout, rs.Stderr = &rsOut, &rsOut
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		rs.Process.Kill()
		rs.Wait()
		if t.Failed() {
			t.Logf("rsyslogd output:\n%s", rsOut.String())
		}
	})
	sock := filepath.Join(dir, "log.sock")
	waitFile(t, sock)

	d := startDaemon(t, fmt.Sprintf("log: {syslog: mail, syslog_address: %s}\n", sock)+denyConfig)
	rcpt(t, d.sock, "blocked@example.org")
	pid := d.cmd.Process.Pid
	mailLog := filepath.Join(dir, "mail.log")
	waitFileLine(t, mailLog, fmt.Sprintf(`mail.info tollgate[%d]: level=INFO msg="recipient refused"`, pid))

	os.WriteFile(d.config, []byte("acl: {rcpt: [bogus: {}]}\n"), 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitFileLine(t, mailLog, fmt.Sprintf(`mail.err tollgate[%d]: level=ERROR msg="configuration reload refused`, pid))

	if other, _ := os.ReadFile(filepath.Join(dir, "other.log")); strings.Contains(string(other), "tollgate[") {
		t.Errorf("tollgate lines outside the mail facility:\n%s", other)
	}
}

func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitFileLine(t *testing.T, path, prefix string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		for line := range strings.Lines(string(b)) {
			if strings.HasPrefix(line, prefix) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line starting %q in %s:\n%s", prefix, path, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
