package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Sendmail runs from Debian's packages unpacked into a private prefix:
// sendmail-bin conflicts with postfix, so apt cannot install both.
// scripts/install-test-deps.sh downloads the packages into
// SendmailDebCache; tests never call apt.
const (
	SendmailDebCache = "/var/cache/tollgate-tests/sendmail"
	M4Program        = "/usr/bin/m4"
	CCProgram        = "/usr/bin/gcc"
	DpkgDebProgram   = "/usr/bin/dpkg-deb"

	// SendmailHostname is $j of every private Sendmail, and what its
	// gethostname() returns.
	SendmailHostname = "sendmail.test"
	// SendmailDaemonName is {daemon_name} of its listener.
	SendmailDaemonName = "MTA"

	sendmailBinary = "usr/libexec/sendmail/sendmail" // inside the unpacked root
	sendmailStamp  = ".tollgate-e2e-complete"
)

// sendmailDebs are the packages unpacked, in install-test-deps.sh's
// sendmail_debs too. libwrap0 because the binary links libwrap.so.0.
var sendmailDebs = []string{"sendmail-bin", "sendmail-base", "sendmail-cf", "libwrap0"}

// With an unqualified host name Sendmail sleeps 60 s at start, before it
// reads any option; the machine's name is not ours to change.
const fqdnShim = `#include <string.h>
int gethostname(char *n, size_t l) { strncpy(n, "` + SendmailHostname + `", l); if (l) n[l-1] = 0; return 0; }
`

// SendmailOptions configures a private Sendmail.
type SendmailOptions struct {
	// Milter is the S= value of the one milter, e.g.
	// "inet:9901@127.0.0.1" or "unix:/path"; empty means no milter.
	Milter string
	// MilterFlags is the F= value: "T" (the default) tempfails
	// (451 4.3.2 at MAIL FROM) when the milter is unavailable, "R" rejects,
	// "-" means no flag: mail flows without the milter.
	MilterFlags string
	// MilterMacros overrides confMILTER_MACROS_<KEY>, KEY one of CONNECT,
	// HELO, ENVFROM, ENVRCPT, DATA, EOH, EOM; the value is a list of macro
	// names ("j, {daemon_name}"), empty for none. Keys left out keep
	// SendmailDefaultMilterMacros. Macros the milter requests during
	// negotiation are what Sendmail sends in any case.
	MilterMacros map[string]string
	// MCText is added to the instance's sendmail.mc byte for byte, before
	// its MAILER lines (where a postmaster adds a milter), e.g. a documented
	// INPUT_MAIL_FILTER line and its confMILTER_MACROS_* definitions.
	MCText string
}

// SendmailDefaultMilterMacros returns the macro lists a private Sendmail
// sends when SendmailOptions.MilterMacros does not say otherwise:
// Sendmail's own defaults, extended with the client and daemon addresses at
// connect, r at MAIL, {nrcpts} at RCPT and {msg_size} at end-of-message.
func SendmailDefaultMilterMacros() map[string]string {
	return map[string]string{
		"CONNECT": "j, _, {daemon_name}, {if_name}, {if_addr}, v, {daemon_addr}, {daemon_port}, " +
			"{client_addr}, {client_port}, {client_name}, {client_ptr}, {client_resolve}",
		"HELO":    "{tls_version}, {cipher}, {cipher_bits}, {cert_subject}, {cert_issuer}",
		"ENVFROM": "i, {auth_type}, {auth_authen}, {auth_ssf}, {auth_author}, {mail_mailer}, {mail_host}, {mail_addr}, r",
		"ENVRCPT": "{rcpt_mailer}, {rcpt_host}, {rcpt_addr}, {nrcpts}",
		"EOM":     "{msg_id}, {msg_size}",
	}
}

// Sendmail is a running private Sendmail 8.17 daemon on loopback that
// relays every message to its own smtp-sink, in interactive delivery mode:
// a message is in the sink when the client has its 250. Its files live
// under Dir: conf/ (test.mc, sendmail.cf), queue/, traffic.log (-X).
type Sendmail struct {
	Addr string // 127.0.0.1:port
	Dir  string
	Sink *Sink
}

// StartSendmail starts a private Sendmail from the packages in
// SendmailDebCache, unpacked once into a cache directory under the temp
// directory that later runs reuse. Nothing under /etc is read or written.
// t.Cleanup stops the daemon and every SMTP session it forked.
func StartSendmail(t testing.TB, opts SendmailOptions) *Sendmail {
	t.Helper()
	RequireProgram(t, M4Program, "m4")
	root := sendmailRoot(t)
	macros, err := sendmailMacros(opts.MilterMacros)
	if err != nil {
		t.Fatalf("e2e: SendmailOptions.MilterMacros: %v", err)
	}
	if strings.ContainsAny(opts.Milter+opts.MilterFlags, "`',\r\n") {
		t.Fatalf("e2e: SendmailOptions: Milter %q or MilterFlags %q has a quote, comma or line break", opts.Milter, opts.MilterFlags)
	}
	begin := time.Now()
	sink := StartSink(t)
	dir := privateDir(t, "tollgate-e2e-sendmail-")
	s := &Sendmail{Dir: dir, Sink: sink}
	conf := filepath.Join(dir, "conf")
	queue := filepath.Join(dir, "queue")
	for _, d := range []string{conf, queue} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatalf("e2e: %v", err)
		}
	}
	// What a non-root Sendmail needs (SENDMAIL.md); harmless as root.
	if err := os.Chmod(queue, 0o700); err != nil {
		t.Fatalf("e2e: %v", err)
	}
	helpfile, err := os.ReadFile(filepath.Join(root, "etc/mail/helpfile"))
	if err != nil {
		t.Fatalf("e2e: unpacked Sendmail in %s: %v", root, err)
	}
	files := map[string]string{
		"helpfile":       string(helpfile),
		"service.switch": "hosts\tfiles\naliases\tfiles\n",
		"aliases":        "postmaster: root\nMAILER-DAEMON: postmaster\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(conf, name), []byte(content), 0o644); err != nil {
			t.Fatalf("e2e: %v", err)
		}
	}
	me, err := user.Current()
	if err != nil {
		t.Fatalf("e2e: %v", err)
	}
	port := FreePort(t)
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	_, sinkPort, _ := net.SplitHostPort(sink.Addr)
	mc := sendmailMC(root, dir, me.Username, port, sinkPort, opts, macros)
	if err := os.WriteFile(filepath.Join(conf, "test.mc"), []byte(mc), 0o644); err != nil {
		t.Fatalf("e2e: %v", err)
	}
	cf, err := runQuiet(dir, nil, M4Program, filepath.Join(conf, "test.mc"))
	if err != nil {
		t.Fatalf("e2e: m4 %s/test.mc: %v\n%s", conf, err, cf)
	}
	if err := os.WriteFile(filepath.Join(conf, "sendmail.cf"), []byte(cf), 0o644); err != nil {
		t.Fatalf("e2e: %v", err)
	}

	env := []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"LD_LIBRARY_PATH=" + libDir(root),
		"LD_PRELOAD=" + filepath.Join(root, "fqdn.so"),
	}
	bin := filepath.Join(root, sendmailBinary)
	cfArg := "-C" + filepath.Join(conf, "sendmail.cf")
	// aliases.db: without it every local address fails.
	if out, err := runQuiet(dir, env, bin, cfArg, "-bi"); err != nil {
		t.Fatalf("e2e: sendmail -bi: %v\n%s", err, out)
	}

	out, err := os.Create(filepath.Join(dir, "sendmail.out"))
	if err != nil {
		t.Fatalf("e2e: %v", err)
	}
	defer out.Close()
	cmd := exec.Command(bin, cfArg, "-bD", "-X", filepath.Join(dir, "traffic.log"))
	cmd.Env = env
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.Dir = "/"
	// A group of its own: SIGTERM to the daemon alone leaves its SMTP
	// sessions (forked children) running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("e2e: starting sendmail: %v", err)
	}
	pgid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	// dash's kill takes a negative PID (a process group) only after --,
	// and -- only after -s SIGNAL.
	wd := startWatchdog(t, `kill -s KILL -- "-$1" 2>/dev/null; rm -rf "$2"`, strconv.Itoa(pgid), dir)
	t.Cleanup(func() {
		s.stop(t, pgid, exited)
		wd.disarm()
	})
	// The pid file appears before listen(): watch the socket instead.
	if err := waitListening(net.IPv4(127, 0, 0, 1), port, exited); err != nil {
		t.Fatalf("e2e: sendmail in %s: %v\n%s", dir, err, s.Log())
	}
	t.Logf("sendmail %s started in %v (milter %q, sink %s, dir %s)", s.Addr,
		time.Since(begin).Round(time.Millisecond), opts.Milter, sink.Addr, dir)
	return s
}

func sendmailMacros(overrides map[string]string) (map[string]string, error) {
	macros := SendmailDefaultMilterMacros()
	for k, v := range overrides {
		key := strings.ToUpper(k)
		if !slices.Contains([]string{"CONNECT", "HELO", "ENVFROM", "ENVRCPT", "DATA", "EOH", "EOM"}, key) {
			return nil, fmt.Errorf("unknown stage %q", k)
		}
		names := strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
		for _, n := range names {
			inner := strings.TrimSuffix(strings.TrimPrefix(n, "{"), "}")
			if inner == "" || strings.Trim(inner, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != "" ||
				(len(inner) > 1 && len(inner) == len(n)) {
				return nil, fmt.Errorf("%s: %q is not a macro name like i or {client_addr}", k, n)
			}
		}
		macros[key] = strings.Join(names, ", ")
	}
	return macros, nil
}

// sendmailMC is the m4 source of sendmail.cf. Every path points into the
// instance directory or the unpacked root.
func sendmailMC(root, dir, trustedUser string, port int, sinkPort string, opts SendmailOptions, macros map[string]string) string {
	var b strings.Builder
	line := func(format string, args ...any) {
		// ‘ stands for m4's open quote, which Go's raw strings cannot hold.
		fmt.Fprintf(&b, strings.ReplaceAll(format, "‘", "`")+"dnl\n", args...)
	}
	line("include(‘%s/usr/share/sendmail/cf/m4/cf.m4')", root)
	line("VERSIONID(‘tollgate e2e')")
	line("OSTYPE(‘linux')")
	line("define(‘MAIL_SETTINGS_DIR', ‘%s/conf/')", dir)
	line("define(‘ALIAS_FILE', ‘%s/conf/aliases')", dir)
	line("define(‘HELP_FILE', ‘%s/conf/helpfile')", dir)
	line("define(‘QUEUE_DIR', ‘%s/queue')", dir)
	line("define(‘confPID_FILE', ‘%s/sendmail.pid')", dir)
	line("define(‘confSERVICE_SWITCH_FILE', ‘%s/conf/service.switch')", dir)
	line("define(‘confDEAD_LETTER_DROP', ‘%s/dead.letter')", dir)
	line("define(‘confDOMAIN_NAME', ‘%s')", SendmailHostname)
	// The instance lives under the sticky /tmp.
	line("define(‘confDONT_BLAME_SENDMAIL', ‘TrustStickyBit')")
	line("define(‘confTRUSTED_USER', ‘%s')", trustedUser)
	line("define(‘confDELIVERY_MODE', ‘interactive')")
	line("define(‘confTO_IDENT', ‘0s')")
	line("define(‘confDONT_PROBE_INTERFACES', ‘True')")
	line("FEATURE(‘nocanonify')")
	// Else it listens on 587 on every address too.
	line("FEATURE(‘no_default_msa')")
	line("FEATURE(‘accept_unresolvable_domains')")
	line("FEATURE(‘accept_unqualified_senders')")
	// Relay for every loopback client (class R is matched against the
	// client address too), not only 127.0.0.1.
	line("RELAY_DOMAIN(‘127')")
	line("define(‘SMART_HOST', ‘esmtp:[127.0.0.1]')")
	line("define(‘MAIL_HUB', ‘esmtp:[127.0.0.1]')")
	line("define(‘ESMTP_MAILER_ARGS', ‘TCP $h %s')", sinkPort)
	line("define(‘RELAY_MAILER_ARGS', ‘TCP $h %s')", sinkPort)
	line("DAEMON_OPTIONS(‘Port=%d, Addr=127.0.0.1, Name=%s')", port, SendmailDaemonName)
	for _, k := range slices.Sorted(maps.Keys(macros)) {
		// Quoted twice, as cfhead.m4 does: the list has commas.
		line("define(‘confMILTER_MACROS_%s', ‘‘%s'')", k, macros[k])
	}
	if opts.Milter != "" {
		flags := opts.MilterFlags
		switch flags {
		case "":
			flags = ", F=T"
		case "-":
			flags = ""
		default:
			flags = ", F=" + flags
		}
		line("INPUT_MAIL_FILTER(‘testmilter', ‘S=%s%s, T=C:5s;S:10s;R:10s;E:30s')", opts.Milter, flags)
	}
	b.WriteString(opts.MCText)
	line("MAILER(‘local')")
	line("MAILER(‘smtp')")
	return b.String()
}

// stop ends the daemon's process group, then whatever still works in the
// instance directory (a session that ignored SIGTERM).
func (s *Sendmail) stop(t testing.TB, pgid int, exited <-chan struct{}) {
	t.Helper()
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(stopTimeLimit):
		t.Errorf("e2e: sendmail in %s did not stop within %v of SIGTERM", s.Dir, stopTimeLimit)
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-exited
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		pids := processesIn(s.Dir)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("e2e: sendmail processes %v of %s survived SIGKILL", pids, s.Dir)
			return
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Log returns what the daemon printed and its SMTP traffic log (-X), the
// only log there is: the private Sendmail has no syslog.
func (s *Sendmail) Log() string {
	out, _ := os.ReadFile(filepath.Join(s.Dir, "sendmail.out"))
	traffic, _ := os.ReadFile(filepath.Join(s.Dir, "traffic.log"))
	return fmt.Sprintf("sendmail output:\n%s\ntraffic.log:\n%s", out, traffic)
}

// Swaks runs swaks against this instance.
func (s *Sendmail) Swaks(t testing.TB, args ...string) SwaksResult {
	t.Helper()
	return Swaks(t, append([]string{"--server", s.Addr}, args...)...)
}

// WaitMessages waits for n messages in the instance's sink, like
// Sink.WaitMessages, and adds the Sendmail log to the failure.
func (s *Sendmail) WaitMessages(t testing.TB, n int, timeout time.Duration) []Message {
	t.Helper()
	msgs, err := s.Sink.waitMessages(n, timeout)
	if err != nil {
		t.Fatalf("e2e: %v\n%s", err, s.Log())
	}
	return msgs
}

var sendmailUnpacked struct {
	sync.Mutex
	root string
}

// sendmailRoot returns the unpacked Sendmail: the packages of
// SendmailDebCache extracted, the sendmail binary without its setgid bit
// (which makes the loader ignore LD_LIBRARY_PATH and LD_PRELOAD) and
// fqdn.so. It is kept in the temp directory under a name derived from the
// package files, so later test binaries reuse it and new packages get a new
// one.
func sendmailRoot(t testing.TB) string {
	t.Helper()
	sendmailUnpacked.Lock()
	defer sendmailUnpacked.Unlock()
	if sendmailUnpacked.root != "" {
		return sendmailUnpacked.root
	}
	RequireProgram(t, DpkgDebProgram, "dpkg")
	RequireProgram(t, CCProgram, "gcc")
	var debs []string
	sum := sha256.New()
	fmt.Fprintf(sum, "tollgate e2e sendmail 1\n%s", fqdnShim)
	for _, name := range sendmailDebs {
		matches, _ := filepath.Glob(filepath.Join(SendmailDebCache, name+"_*.deb"))
		if len(matches) == 0 {
			t.Fatalf("e2e: no %s package in %s: run scripts/install-test-deps.sh as root, which downloads "+
				"Sendmail's packages there (they are unpacked, never installed: sendmail-bin conflicts with postfix)",
				name, SendmailDebCache)
		}
		deb := slices.Max(matches)
		fi, err := os.Stat(deb)
		if err != nil {
			t.Fatalf("e2e: %v", err)
		}
		fmt.Fprintf(sum, "%s %d\n", filepath.Base(deb), fi.Size())
		debs = append(debs, deb)
	}
	base := os.TempDir()
	if !worldTraversable(base) {
		base = "/tmp"
	}
	root := filepath.Join(base, "tollgate-e2e-sendmail-root-"+hex.EncodeToString(sum.Sum(nil))[:16])
	if !usableCache(root) {
		begin := time.Now()
		if err := unpackSendmail(base, root, debs); err != nil {
			t.Fatalf("e2e: unpacking Sendmail into %s: %v", root, err)
		}
		t.Logf("unpacked Sendmail into %s in %v", root, time.Since(begin).Round(time.Millisecond))
	}
	sendmailUnpacked.root = root
	return root
}

// usableCache accepts only a complete directory of our own that nobody
// else can have changed.
func usableCache(dir string) bool {
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm()&0o022 != 0 {
		return false
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Geteuid() {
		return false
	}
	_, err = os.Stat(filepath.Join(dir, sendmailStamp))
	return err == nil
}

// unpackSendmail builds the root in a fresh directory and renames it into
// place, so that parallel test binaries never see half of one.
func unpackSendmail(base, root string, debs []string) error {
	tmp, err := os.MkdirTemp(base, "tollgate-e2e-sendmail-unpack-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	for _, deb := range debs {
		if out, err := runQuiet("/", nil, DpkgDebProgram, "-x", deb, tmp); err != nil {
			return fmt.Errorf("dpkg-deb -x %s: %v\n%s", deb, err, out)
		}
	}
	bin := filepath.Join(tmp, sendmailBinary)
	fi, err := os.Stat(bin)
	if err != nil {
		return err
	}
	if err := os.Chmod(bin, fi.Mode().Perm()); err != nil { // drops setgid
		return err
	}
	if libDir(tmp) == "" {
		return errors.New("no libwrap.so.0 in the unpacked packages")
	}
	src := filepath.Join(tmp, "fqdn.c")
	if err := os.WriteFile(src, []byte(fqdnShim), 0o644); err != nil {
		return err
	}
	if out, err := runQuiet("/", nil, CCProgram, "-shared", "-fPIC", "-o", filepath.Join(tmp, "fqdn.so"), src); err != nil {
		return fmt.Errorf("compiling the gethostname shim: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(tmp, sendmailStamp), nil, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, root); err != nil {
		if usableCache(root) { // another test binary was faster
			return nil
		}
		return err
	}
	return nil
}

// libDir is the directory of the unpacked libwrap.so.0, e.g.
// root/usr/lib/x86_64-linux-gnu.
func libDir(root string) string {
	var found string
	_ = filepath.WalkDir(filepath.Join(root, "usr/lib"), func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "libwrap.so.0" {
			found = filepath.Dir(path)
			return fs.SkipAll
		}
		return nil
	})
	return found
}

// runQuiet runs a short command and returns its output (stdout, then
// stderr on failure).
func runQuiet(dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out) + stderr.String(), err
	}
	return string(out), nil
}
