//go:build e2e

package deploy_test

import (
	"debug/elf"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/e2e"
)

const debVersion = "0.0.0~deploytest1"

// The Debian package from scripts/build-deb.sh, on this machine: installed
// (twice: the second is an upgrade), its files, user and permissions
// checked, the daemon started as the unit starts it, the guide's quick start
// followed up to a sealed message, and the package purged — also when the
// test fails.
func TestDebianPackage(t *testing.T) {
	requireRoot(t)
	for _, p := range [][2]string{{"dpkg-deb", "dpkg"}, {"dpkg", "dpkg"}, {"adduser", "adduser"},
		{"setpriv", "util-linux"}, {"systemd-analyze", "systemd"}, {"perl", "perl-base"}, {"postconf", "postfix"}} {
		e2e.RequireProgram(t, p[0], p[1])
	}
	if _, err := user.LookupGroup("postfix"); err != nil {
		t.Fatal("the package test needs Postfix's user and group: install postfix (scripts/install-test-deps.sh does)")
	}
	// Never replace a real installation.
	if out, err := runErr("dpkg-query", "-W", "-f=${Status} ${Version}", "tollgate"); err == nil &&
		strings.Contains(out, " installed") && !strings.Contains(out, "~deploytest") {
		t.Fatalf("a tollgate package is installed on this machine (%s); the test would replace it", out)
	}

	// The package keeps its user on purge (Debian's rule); the test starts
	// and ends without it, so that the postinst's work is seen each time.
	removeUser(t)
	t.Cleanup(func() { removeUser(t) })

	dir := t.TempDir()
	build := exec.Command(filepath.Join(repo, "scripts/build-deb.sh"), "-o", dir)
	build.Env = append(os.Environ(), "VERSION="+debVersion)
	out, err := build.Output()
	if err != nil {
		t.Fatalf("scripts/build-deb.sh: %v\n%s", err, stderrOf(err))
	}
	deb := strings.TrimSpace(string(out))
	arch := strings.TrimSpace(run(t, "dpkg", "--print-architecture"))
	if want := filepath.Join(dir, "tollgate_"+debVersion+"_"+arch+".deb"); deb != want {
		t.Fatalf("build-deb.sh printed %q, want %q", deb, want)
	}
	checkDebContents(t, deb)
	checkLintian(t, deb)

	t.Cleanup(func() { purge(t) })
	run(t, "dpkg", "-i", deb)
	run(t, "dpkg", "-i", deb) // an upgrade: the maintainer scripts run again
	checkInstalled(t)
	sa := e2e.RequireProgram(t, "systemd-analyze", "systemd")
	if out, err := runErr(sa, "verify", "/lib/systemd/system/tollgate.service"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify of the installed unit: %v\n%s", err, out)
	}

	// The daemon as the unit runs it, on a private socket and metrics port.
	sockDir, err := os.MkdirTemp("", "tollgate-pkg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	tg := lookupUser(t, "tollgate")
	if err := os.Chown(sockDir, tg.uid, tg.gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sockDir, 0o750); err != nil { // as RuntimeDirectory=, RuntimeDirectoryMode=0750
		t.Fatal(err)
	}
	sock := filepath.Join(sockDir, "t.sock")
	d := startAsUnit(t, "--listen", "unix:"+sock)
	d.checkCredentials(t)
	checkSocket(t, sock, 0o660, "tollgate", "postfix")
	if err := connectAs("postfix", sock); err != nil {
		t.Errorf("Postfix's user cannot connect to the socket: %v", err)
	}
	if err := connectAs("nobody", sock); err == nil {
		t.Error("the user nobody can connect to the socket")
	}
	d.checkHealth(t)
	// The installed binary signs through the system's OpenSSL (libssl3).
	if !regexp.MustCompile(`msg="signature crypto" crypto=openssl library="OpenSSL 3`).MatchString(d.log.String()) {
		t.Errorf("the packaged daemon does not use OpenSSL:\n%s", d.log.String())
	}
	d.signal(t, syscall.SIGHUP)
	if !waitFor(10*time.Second, func() bool { return strings.Contains(d.log.String(), "configuration reloaded") }) {
		t.Errorf("no reload after SIGHUP:\n%s", d.log.String())
	}
	d.stop(t)
	if _, err := os.Lstat(sock); err == nil {
		t.Error("the socket is still there after the daemon stopped")
	}

	followQuickStart(t)
}

// stderrOf is the standard error of a failed exec.Cmd.Output.
func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// checkDebContents checks the package's fields and files as dpkg-deb lists them.
func checkDebContents(t *testing.T, deb string) {
	fields := run(t, "dpkg-deb", "--field", deb, "Package", "Version", "Depends", "Section")
	for _, want := range []string{"Package: tollgate", "Version: " + debVersion, "Depends: adduser, libc6 (>= 2.", "libssl3 | libssl3t64", "Section: mail"} {
		if !strings.Contains(fields, want) {
			t.Errorf("control fields lack %q:\n%s", want, fields)
		}
	}
	if conffiles := run(t, "sh", "-c", "dpkg-deb --ctrl-tarfile \"$1\" | tar -xOf - ./conffiles", "sh", deb); strings.TrimSpace(conffiles) != "/etc/tollgate/tollgate.yaml" {
		t.Errorf("conffiles = %q", conffiles)
	}
	listing := run(t, "dpkg-deb", "--contents", deb)
	files := map[string]string{} // path -> "mode owner"
	for _, l := range strings.Split(listing, "\n") {
		f := strings.Fields(l)
		if len(f) >= 6 {
			files[strings.TrimPrefix(f[len(f)-1], ".")] = f[0] + " " + f[1]
		}
	}
	for path, want := range map[string]string{
		"/usr/bin/tollgate":                                                "-rwxr-xr-x root/root",
		"/lib/systemd/system/tollgate.service":                             "-rw-r--r-- root/root",
		"/etc/tollgate/tollgate.yaml":                                      "-rw-r--r-- root/root",
		"/usr/share/doc/tollgate/guide.md":                                 "-rw-r--r-- root/root",
		"/usr/share/doc/tollgate/copyright":                                "-rw-r--r-- root/root",
		"/usr/share/doc/tollgate/examples/message.eml":                     "-rw-r--r-- root/root",
		"/usr/share/doc/tollgate/examples/postfix/main.cf":                 "-rw-r--r-- root/root",
		"/usr/share/doc/tollgate/examples/sendmail/sendmail.mc":            "-rw-r--r-- root/root",
		"/usr/share/doc/tollgate/examples/prometheus/tollgate.rules.yml":   "-rw-r--r-- root/root",
		"/usr/share/doc/tollgate/examples/grafana/tollgate-dashboard.json": "-rw-r--r-- root/root",
		"/usr/share/doc/tollgate/changelog.gz":                             "-rw-r--r-- root/root",
		"/usr/share/man/man8/tollgate.8.gz":                                "-rw-r--r-- root/root",
		"/usr/share/man/man5/tollgate.yaml.5.gz":                           "-rw-r--r-- root/root",
	} {
		if got := files[path]; got != want {
			t.Errorf("package file %s: %q, want %q", path, got, want)
		}
	}
	// What the guide tells the reader to use from the package is in it.
	guide, err := os.ReadFile(filepath.Join(repo, "docs/guide.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`/usr/share/(?:doc|man)/tollgate/[A-Za-z0-9_./-]*[A-Za-z0-9_]`).FindAllString(string(guide), -1) {
		found := false
		for path := range files {
			if path == m || strings.HasPrefix(path, m+"/") {
				found = true
			}
		}
		if !found {
			t.Errorf("docs/guide.md names %s, which the package does not install", m)
		}
	}
	// The guide installs the file build-deb.sh writes without -o.
	for _, m := range regexp.MustCompile(`dpkg -i (\S+)`).FindAllStringSubmatch(string(guide), -1) {
		if !regexp.MustCompile(`^dist/tollgate_[0-9][^_]*_[a-z0-9]+\.deb$`).MatchString(m[1]) {
			t.Errorf("docs/guide.md: dpkg -i %s: build-deb.sh writes dist/tollgate_VERSION_ARCH.deb", m[1])
		}
	}
	x := filepath.Join(t.TempDir(), "x")
	run(t, "dpkg-deb", "-x", deb, x)
	checkCgoBinary(t, filepath.Join(x, "usr/bin/tollgate"))
}

// checkCgoBinary: the package's binary is built with cgo to sign through
// OpenSSL, hardened as Debian wants (PIE, BIND_NOW), and links libc only:
// libcrypto.so.3 is loaded at run time, so it starts without it too.
func checkCgoBinary(t *testing.T, path string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) != 1 || libs[0] != "libc.so.6" {
		t.Errorf("%s needs %v (%v), want libc.so.6 only", path, libs, err)
	}
	if f.Type != elf.ET_DYN {
		t.Errorf("%s is %v, not a position-independent executable", path, f.Type)
	}
	if flags := run(t, "readelf", "-d", path); !strings.Contains(flags, "BIND_NOW") {
		t.Errorf("%s is not linked with -z now:\n%s", path, flags)
	}
}

func checkInstalled(t *testing.T) {
	if got := run(t, "dpkg-query", "-W", "-f=${Status} ${Version}", "tollgate"); got != "install ok installed "+debVersion {
		t.Fatalf("dpkg-query: %q", got)
	}
	if got := run(t, "/usr/bin/tollgate", "version"); !strings.Contains(got, debVersion) {
		t.Errorf("tollgate version = %q, want %s", got, debVersion)
	}
	for installed, source := range map[string]string{
		"/lib/systemd/system/tollgate.service": filepath.Join(repo, "deploy", unitFile),
		"/etc/tollgate/tollgate.yaml":          filepath.Join(repo, "deploy/examples/tollgate.yaml"),
	} {
		a, err1 := os.ReadFile(installed)
		b, err2 := os.ReadFile(source)
		if err1 != nil || err2 != nil || string(a) != string(b) {
			t.Errorf("%s is not %s (%v, %v)", installed, source, err1, err2)
		}
	}
	tg := lookupUser(t, "tollgate")
	if tg.uid >= 1000 || tg.uid == 0 {
		t.Errorf("tollgate's uid %d is not a system uid", tg.uid)
	}
	if g, err := user.LookupGroupId(strconv.Itoa(tg.gid)); err != nil || g.Name != "tollgate" {
		t.Errorf("tollgate's group is %v (%v), want tollgate", g, err)
	}
	if !slices.Contains(tg.groups, "postfix") {
		t.Errorf("tollgate is not in the group postfix: %v", tg.groups)
	}
	if pf := lookupUser(t, "postfix"); !slices.Contains(pf.groups, "tollgate") {
		t.Errorf("postfix is not in the group tollgate: %v", pf.groups)
	}
	pw := run(t, "getent", "passwd", "tollgate")
	if f := strings.Split(strings.TrimSpace(pw), ":"); len(f) != 7 || f[5] != "/var/lib/tollgate" || !strings.HasSuffix(f[6], "nologin") {
		t.Errorf("getent passwd tollgate: %q: want home /var/lib/tollgate, no login shell", pw)
	}
	checkDir(t, "/var/lib/tollgate", 0o700, "tollgate", "tollgate")
	checkDir(t, "/var/spool/postfix/tollgate", 0o750, "tollgate", "postfix")
	if _, err := exec.LookPath("deb-systemd-helper"); err == nil {
		if _, err := os.Lstat("/etc/systemd/system/multi-user.target.wants/tollgate.service"); err != nil {
			t.Errorf("the unit is not enabled: %v", err)
		}
	}
}

type account struct {
	uid, gid int
	groups   []string
}

func lookupUser(t *testing.T, name string) account {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("user %s: %v", name, err)
	}
	a := account{}
	a.uid, _ = strconv.Atoi(u.Uid)
	a.gid, _ = strconv.Atoi(u.Gid)
	a.groups = strings.Fields(run(t, "id", "-nG", name))
	return a
}

func ownerOf(t *testing.T, path string) (os.FileInfo, string, string) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	u, err1 := user.LookupId(strconv.Itoa(int(st.Uid)))
	g, err2 := user.LookupGroupId(strconv.Itoa(int(st.Gid)))
	if err1 != nil || err2 != nil {
		t.Fatalf("%s: owner %d:%d: %v %v", path, st.Uid, st.Gid, err1, err2)
	}
	return fi, u.Username, g.Name
}

func checkDir(t *testing.T, path string, mode os.FileMode, owner, group string) {
	t.Helper()
	fi, u, g := ownerOf(t, path)
	if !fi.IsDir() || fi.Mode().Perm() != mode || u != owner || g != group {
		t.Errorf("%s: %v %s:%s, want a directory %v %s:%s", path, fi.Mode(), u, g, mode, owner, group)
	}
}

func checkSocket(t *testing.T, path string, mode os.FileMode, owner, group string) {
	t.Helper()
	fi, u, g := ownerOf(t, path)
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != mode || u != owner || g != group {
		t.Errorf("%s: %v %s:%s, want a socket %v %s:%s", path, fi.Mode(), u, g, mode, owner, group)
	}
}

// connectAs connects to a unix socket as another user (with that user's groups).
func connectAs(name, sock string) error {
	out, err := runErr("setpriv", "--reuid="+name, "--regid="+name, "--init-groups", "--",
		"/usr/bin/perl", "-MIO::Socket::UNIX", "-e", `IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "$!\n"`, sock)
	if err != nil {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(out))
	}
	return nil
}

// unitDaemon is /usr/bin/tollgate started as the installed unit starts it.
type unitDaemon struct {
	cmd     *exec.Cmd
	log     *lockedBuffer
	metrics string
	exited  chan error
	stopped bool
}

// startAsUnit runs the installed unit's ExecStartPre, then its ExecStart
// (with extra arguments), as its User and Group with their groups, no new
// privileges, no capabilities and its UMask: what systemd does, short of
// the sandbox.
func startAsUnit(t *testing.T, extra ...string) *unitDaemon {
	t.Helper()
	u := parseUnit(t, "/lib/systemd/system/tollgate.service")
	get := func(k string) string {
		v, ok := u.get("Service", k)
		if !ok {
			t.Fatalf("the installed unit has no %s=", k)
		}
		return v
	}
	as := func(argv ...string) *exec.Cmd {
		args := []string{"--reuid=" + get("User"), "--regid=" + get("Group"), "--init-groups", "--no-new-privs",
			"--inh-caps=-all", "--bounding-set=-all", "--", "sh", "-c", `umask "$0" && exec "$@"`, get("UMask")}
		return exec.Command("setpriv", append(args, argv...)...)
	}
	if out, err := as(strings.Fields(get("ExecStartPre"))...).CombinedOutput(); err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), ": OK") {
		t.Fatalf("ExecStartPre (%s): %v\n%s", get("ExecStartPre"), err, out)
	}
	d := &unitDaemon{log: &lockedBuffer{}, exited: make(chan error, 1)}
	d.cmd = as(append(strings.Fields(get("ExecStart")), append(extra, "--metrics-listen", "127.0.0.1:0")...)...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if !d.stopped {
			d.cmd.Process.Kill()
			<-d.exited
		}
	})
	started := regexp.MustCompile(`msg="tollgate started".* metrics=(\S+)`)
	var m []string
	if !waitFor(20*time.Second, func() bool { m = started.FindStringSubmatch(d.log.String()); return m != nil }) {
		t.Fatalf("the daemon did not start:\n%s", d.log.String())
	}
	d.metrics = m[1]
	return d
}

// checkCredentials reads the daemon's credentials from /proc.
func (d *unitDaemon) checkCredentials(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			status[k] = strings.TrimSpace(v)
		}
	}
	if !strings.HasPrefix(status["Name"], "tollgate") {
		t.Fatalf("pid %d is %q, not the daemon", d.cmd.Process.Pid, status["Name"])
	}
	tg := lookupUser(t, "tollgate")
	pf, err := user.LookupGroup("postfix")
	if err != nil {
		t.Fatal(err)
	}
	uid, gid := strconv.Itoa(tg.uid), strconv.Itoa(tg.gid)
	if f := strings.Fields(status["Uid"]); len(f) != 4 || f[0] != uid || f[1] != uid || f[2] != uid {
		t.Errorf("Uid: %s, want %s", status["Uid"], uid)
	}
	if f := strings.Fields(status["Gid"]); len(f) != 4 || f[0] != gid || f[1] != gid {
		t.Errorf("Gid: %s, want %s", status["Gid"], gid)
	}
	if !slices.Contains(strings.Fields(status["Groups"]), pf.Gid) {
		t.Errorf("Groups: %s, want postfix (%s) among them", status["Groups"], pf.Gid)
	}
	if status["NoNewPrivs"] != "1" || strings.Trim(status["CapBnd"], "0") != "" || strings.Trim(status["CapEff"], "0") != "" {
		t.Errorf("NoNewPrivs %s, CapBnd %s, CapEff %s: want 1 and no capabilities", status["NoNewPrivs"], status["CapBnd"], status["CapEff"])
	}
}

func (d *unitDaemon) checkHealth(t *testing.T) {
	t.Helper()
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := http.Get("http://" + d.metrics + path)
		if err != nil {
			t.Errorf("GET %s: %v", path, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %s", path, resp.Status)
		}
	}
}

func (d *unitDaemon) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// stop sends SIGTERM and waits, within the unit's TimeoutStopSec, for a clean exit.
func (d *unitDaemon) stop(t *testing.T) {
	t.Helper()
	d.signal(t, syscall.SIGTERM)
	select {
	case err := <-d.exited:
		d.stopped = true
		if err != nil {
			t.Errorf("the daemon exited with %v after SIGTERM:\n%s", err, d.log.String())
		}
	case <-time.After(45 * time.Second):
		t.Fatalf("the daemon did not stop within TimeoutStopSec:\n%s", d.log.String())
	}
}

// followQuickStart does what docs/guide.md's quick start says after
// "dpkg -i": an ARC key in /etc/tollgate owned by tollgate, the guide's
// configuration, "tollgate check", the daemon on the socket inside Postfix's
// chroot; then plays Postfix handing it a message from this host and expects
// an ARC seal.
func followQuickStart(t *testing.T) {
	guide, err := os.ReadFile(filepath.Join(repo, "docs/guide.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(guide), quickStartMarker+"\n```yaml\n")
	config, _, ok2 := strings.Cut(after, "```")
	if !ok || !ok2 {
		t.Fatalf("docs/guide.md has no yaml block after %q", quickStartMarker)
	}
	key := "/etc/tollgate/arc2026.key"
	t.Cleanup(func() { os.Remove(key) }) // before the purge, which keeps keys
	out := run(t, "/usr/bin/tollgate", "arc", "keygen", "--domain", "example.org", "--selector", "arc2026", "--out", key)
	if !strings.Contains(out, "arc2026._domainkey.example.org.") || !strings.Contains(out, "v=DKIM1") {
		t.Errorf("arc keygen printed no TXT record:\n%s", out)
	}
	run(t, "chown", "tollgate:tollgate", key)
	if err := os.WriteFile("/etc/tollgate/tollgate.yaml", []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(config, "listen: unix:/var/spool/postfix/tollgate/tollgate.sock") {
		t.Fatalf("the quick start configuration does not listen in Postfix's chroot:\n%s", config)
	}
	// "runuser -u tollgate -- tollgate check": OK, and before Postfix is
	// attached (this host's Postfix has no smtpd_milters), the warning the
	// guide prints, word for word.
	warning := regexp.MustCompile("Until step 4 it also warns[^`]*```text\n([^\n]*)\n```").FindSubmatch(guide)
	if warning == nil {
		t.Fatal("docs/guide.md: the quick start shows no check warning")
	}
	out, err = runErr("setpriv", "--reuid=tollgate", "--regid=tollgate", "--init-groups", "--", "/usr/bin/tollgate", "check", "--config", "/etc/tollgate/tollgate.yaml")
	if err != nil || strings.TrimSpace(out) != string(warning[1])+"\n/etc/tollgate/tollgate.yaml: OK" {
		t.Errorf("tollgate check as tollgate: %v\n%s\nwant the guide's:\n%s", err, out, warning[1])
	}
	sock := "/var/spool/postfix/tollgate/tollgate.sock"
	d := startAsUnit(t)
	checkSocket(t, sock, 0o660, "tollgate", "postfix")
	if err := connectAs("postfix", sock); err != nil {
		t.Errorf("Postfix's user cannot connect to %s: %v", sock, err)
	}
	// Postfix hands over mail submitted on this host as from localhost [127.0.0.1].
	r, err := deliver(sock, liveMsg{from: "root@example.org", rcpts: []string{"someone@example.net"}, body: "Hello.\r\n", client: "127.0.0.1"})
	if err != nil || !r.accepted() || !r.hasHeader("ARC-Seal") || !r.hasHeader("ARC-Message-Signature") {
		t.Errorf("the quick start configuration did not seal a message from this host: %v %s\n%s", err, r, d.log.String())
	}
	if !waitFor(5*time.Second, func() bool { return strings.Contains(d.log.String(), "ARC=none/sealed") }) {
		t.Errorf("no ARC=none/sealed in the log line:\n%s", d.log.String())
	}
	d.stop(t)
}

// checkLintian runs Debian's lintian on the package: no error, no warning
// (the overrides the package ships say why for the one deliberate finding,
// the static binary).
func checkLintian(t *testing.T, deb string) {
	lintian := e2e.RequireProgram(t, "lintian", "lintian")
	out, err := runErr(lintian, "--fail-on", "error,warning", deb)
	var findings []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "E: ") || strings.HasPrefix(l, "W: ") {
			findings = append(findings, l)
		}
	}
	if err != nil || len(findings) > 0 {
		t.Errorf("lintian %s: %v\n%s", deb, err, out)
	}
	// The copyright file has a notice, the changelog and the manual pages
	// are there: what lintian reported before.
	x := filepath.Join(t.TempDir(), "x")
	run(t, "dpkg-deb", "-x", deb, x)
	copyright, err := os.ReadFile(filepath.Join(x, "usr/share/doc/tollgate/copyright"))
	if err != nil || !regexp.MustCompile(`(?m)^Copyright: \d{4}(-\d{4})? The tollgate authors$`).Match(copyright) {
		t.Errorf("copyright: %v\n%s", err, copyright)
	}
	if out := run(t, "sh", "-c", `zcat "$1"`, "sh", filepath.Join(x, "usr/share/doc/tollgate/changelog.gz")); !strings.HasPrefix(out, "tollgate ("+debVersion+") ") {
		t.Errorf("changelog.gz:\n%s", out)
	}
}

// removeUser deletes the user and group tollgate, if there.
func removeUser(t *testing.T) {
	if _, err := user.Lookup("tollgate"); err == nil {
		if out, err := runErr("deluser", "--system", "tollgate"); err != nil {
			t.Errorf("deluser tollgate: %v\n%s", err, out)
		}
	}
	if _, err := user.LookupGroup("tollgate"); err == nil {
		if out, err := runErr("delgroup", "--system", "tollgate"); err != nil {
			t.Errorf("delgroup tollgate: %v\n%s", err, out)
		}
	}
}

// purge removes the package and checks that it took its files with it, and
// left the user (its files may remain).
func purge(t *testing.T) {
	if out, err := runErr("dpkg", "--purge", "tollgate"); err != nil {
		t.Errorf("dpkg --purge tollgate: %v\n%s", err, out)
		return
	}
	for _, p := range []string{"/usr/bin/tollgate", "/lib/systemd/system/tollgate.service", "/etc/tollgate",
		"/var/lib/tollgate", "/var/spool/postfix/tollgate", "/etc/systemd/system/multi-user.target.wants/tollgate.service",
		"/etc/systemd/system/tollgate.service"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s is still there after dpkg --purge", p)
		}
	}
	if out, _ := runErr("dpkg-query", "-W", "-f=${Status}", "tollgate"); strings.Contains(out, " installed") {
		t.Errorf("dpkg-query after the purge: %s", out)
	}
	if _, err := user.Lookup("tollgate"); err != nil {
		t.Errorf("the purge removed the user tollgate: %v", err)
	}
	// The memberships the postinst added are gone with the package.
	for _, g := range [][2]string{{"postfix", "tollgate"}, {"tollgate", "postfix"}} {
		out, _ := runErr("getent", "group", g[1])
		f := strings.Split(strings.TrimSpace(out), ":")
		if len(f) == 4 && slices.Contains(strings.Split(f[3], ","), g[0]) {
			t.Errorf("after dpkg --purge, %s is still in the group %s: getent group %s = %s", g[0], g[1], g[1], strings.TrimSpace(out))
		}
	}
}
