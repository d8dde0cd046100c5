package e2e

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// PostfixOptions configures a private Postfix instance.
type PostfixOptions struct {
	// Milter is the value for smtpd_milters, e.g. "inet:127.0.0.1:9999" or
	// "unix:/path"; empty means no milter.
	Milter string
	// MilterDefaultAction is what Postfix does when the milter is unavailable
	// or fails; default "tempfail".
	MilterDefaultAction string
	// MilterMacros sets milter_*_macros parameters. Keys are full parameter
	// names ("milter_connect_macros") or the stage alone ("connect"). A value
	// replaces Postfix's default list (see `postconf -d milter_connect_macros`);
	// macros a milter requests during negotiation are sent in any case.
	MilterMacros map[string]string
	// MainCF adds or overrides main.cf parameters; applied last.
	MainCF map[string]string
	// Listen is the smtpd address: a loopback host ("127.0.0.1", "[::1]")
	// that gets a free port, or host:port. Default 127.0.0.1 on a free port.
	Listen string
	// Services are extra smtpd listeners in master.cf, e.g. the XCLIENT
	// path behind a proxy. Each has its own address; Postfix.ServiceAddr
	// says where it listens.
	Services []PostfixService
	// Chroot runs smtpd, cleanup and pickup chrooted in the queue
	// directory, as Debian's master.cf does: a unix milter socket is then
	// named relative to Postfix.QueueDir, and the chroot gets the copies of
	// /etc files Debian's start script makes.
	Chroot bool
	// MainCFText is appended to main.cf byte for byte, as a postmaster
	// adds a documented snippet to the end of the file; the instance's own
	// value of every parameter it sets is left out, so that the snippet's
	// lines are the ones Postfix reads. Snippets that name a map under
	// /etc/postfix write $config_directory instead (Postfix.ConfDir).
	MainCFText string
	// MasterCFText is appended to master.cf byte for byte.
	MasterCFText string
}

// PostfixService is an extra smtpd listener of a private Postfix instance.
// Its log lines are tagged postfix/NAME/smtpd unless Options sets
// syslog_name.
type PostfixService struct {
	// Name labels the service for the test, e.g. "proxy"; letters,
	// digits, '.', '_' and '-', unique within the instance.
	Name string
	// Listen is like PostfixOptions.Listen: "" means 127.0.0.1 on a free
	// port. Any loopback address works ("127.0.0.2", "[::1]:2525").
	Listen string
	// Options are master.cf -o overrides of main.cf for this service only,
	// e.g. smtpd_authorized_xclient_hosts=127.0.0.1 or
	// milter_macro_daemon_name=proxy-in. Values may contain spaces and
	// balanced braces, as in smtpd_milters={ inet:127.0.0.1:9999,
	// default_action=accept }; an empty value clears the parameter.
	Options map[string]string
}

// Postfix is a running private Postfix instance. Its files live under Dir:
// etc/ (main.cf, master.cf), queue/, data/ and maillog.
type Postfix struct {
	Addr string // host:port of its smtpd, "[::1]:port" style for IPv6
	// ServiceAddr maps each PostfixService.Name to the host:port it
	// listens on.
	ServiceAddr map[string]string
	Dir         string
	Sink        *Sink // where it relays every accepted message

	confDir string
}

const (
	hostname       = "mx.tollgate.test"
	mailOwner      = "postfix"  // main.cf mail_owner, default
	setgidGroup    = "postdrop" // main.cf setgid_group, default
	startTimeLimit = 60 * time.Second
	stopTimeLimit  = 10 * time.Second
)

// StartPostfix starts a private Postfix instance whose smtpd listens on
// loopback and relays every accepted message to its own smtp-sink. Nothing
// of the system's Postfix (/etc/postfix/main.cf, /var/spool/postfix) is
// written. t.Cleanup stops it and removes its directory; failing to start
// fails the test with the instance's log.
func StartPostfix(t testing.TB, opts PostfixOptions) *Postfix {
	t.Helper()
	RequireProgram(t, PostfixProgram, postfixPackage)
	RequireProgram(t, MasterProgram, postfixPackage)
	if os.Geteuid() != 0 {
		t.Fatalf("e2e: StartPostfix must run as root: the Postfix master daemon refuses to start otherwise")
	}
	listeners := parseListeners(t, opts)
	sink := StartSink(t)
	dir := privateDir(t, "tollgate-e2e-postfix-")
	p := &Postfix{Dir: dir, Sink: sink, confDir: filepath.Join(dir, "etc"), ServiceAddr: map[string]string{}}
	p.makeDirs(t)
	// "postfix stop" waits for the master to release its lock, so it is
	// safe against a reused PID; it is the right tool when nobody watches.
	wd := startWatchdog(t, `"$2" -c "$1/etc" stop >/dev/null 2>&1; rm -rf "$1"`, dir, PostfixProgram)
	t.Cleanup(func() {
		p.stop(t)
		wd.disarm()
	})

	begin := time.Now()
	for attempt := 1; ; attempt++ {
		anyFree := false
		for i := range listeners {
			l := &listeners[i]
			l.port = l.fixedPort
			if l.port == 0 {
				l.port = freePort(t, l.ip.String())
				anyFree = true
			}
			addr := net.JoinHostPort(l.ip.String(), strconv.Itoa(l.port))
			if i == 0 {
				p.Addr = addr
			} else {
				p.ServiceAddr[l.name] = addr
			}
		}
		p.writeConfig(t, opts, listeners)
		logBefore := len(p.Log())
		out, err := p.startMaster()
		if err == nil {
			for _, l := range listeners {
				if err := waitListening(l.ip, l.port, nil); err != nil {
					t.Fatalf("e2e: postfix in %s started but %v\nlog:\n%s", dir, err, p.Log())
				}
			}
			break
		}
		// Another test process may have taken a port since we probed it.
		if anyFree && attempt < 3 && strings.Contains(p.Log()[logBefore:], "Address already in use") {
			continue
		}
		t.Fatalf("e2e: starting postfix in %s: %v\n%slog:\n%s", dir, err, out, p.Log())
	}
	var services strings.Builder
	for _, name := range slices.Sorted(maps.Keys(p.ServiceAddr)) {
		fmt.Fprintf(&services, ", %s %s", name, p.ServiceAddr[name])
	}
	t.Logf("postfix %s%s started in %v (sink %s, dir %s)", p.Addr, services.String(),
		time.Since(begin).Round(time.Millisecond), sink.Addr, dir)
	return p
}

// listener is one smtpd line of master.cf: the main one (first, no name)
// or a PostfixService.
type listener struct {
	name      string
	ip        net.IP
	fixedPort int // 0: a free port, chosen anew on each attempt
	port      int
	options   map[string]string
}

func parseListeners(t testing.TB, opts PostfixOptions) []listener {
	t.Helper()
	ip, port := parseListen(t, "PostfixOptions.Listen", opts.Listen)
	ls := []listener{{ip: ip, fixedPort: port}}
	fixed := map[string]bool{}
	if port != 0 {
		fixed[net.JoinHostPort(ip.String(), strconv.Itoa(port))] = true
	}
	for _, s := range opts.Services {
		what := fmt.Sprintf("PostfixService %q", s.Name)
		if s.Name == "" || strings.Trim(s.Name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" {
			t.Fatalf("e2e: %s: want a name of letters, digits, '.', '_' and '-'", what)
		}
		for _, l := range ls[1:] {
			if l.name == s.Name {
				t.Fatalf("e2e: two services named %q", s.Name)
			}
		}
		ip, port := parseListen(t, what+" Listen", s.Listen)
		if port != 0 {
			addr := net.JoinHostPort(ip.String(), strconv.Itoa(port))
			if fixed[addr] {
				t.Fatalf("e2e: %s: %s is taken by another listener", what, addr)
			}
			fixed[addr] = true
		}
		for k, v := range s.Options {
			if k == "" || strings.Trim(k, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
				t.Fatalf("e2e: %s: option name %q is not a main.cf parameter name", what, k)
			}
			if strings.ContainsAny(v, "\r\n") || strings.Count(v, "{") != strings.Count(v, "}") {
				t.Fatalf("e2e: %s: option %s: line breaks and unbalanced braces are not allowed", what, k)
			}
		}
		ls = append(ls, listener{name: s.Name, ip: ip, fixedPort: port, options: s.Options})
	}
	return ls
}

func parseListen(t testing.TB, what, listen string) (net.IP, int) {
	t.Helper()
	host, port := listen, 0
	if listen == "" {
		host = "127.0.0.1"
	} else if h, ps, err := net.SplitHostPort(listen); err == nil {
		p, err := strconv.Atoi(ps)
		if err != nil || p <= 0 || p > 65535 {
			t.Fatalf("e2e: %s %q: bad port", what, listen)
		}
		host, port = h, p
	}
	ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	if ip == nil || !ip.IsLoopback() {
		t.Fatalf("e2e: %s %q: want a loopback IP address, optionally with a port", what, listen)
	}
	return ip, port
}

// masterLine is the master.cf line of an smtpd listener. A -o value with
// spaces needs the { name = value } form (Postfix 3.0 and later).
func (l listener) masterLine(chroot string) string {
	var b strings.Builder
	b.WriteString(net.JoinHostPort(l.ip.String(), strconv.Itoa(l.port)) + " inet n - " + chroot + " - - smtpd")
	opts := maps.Clone(l.options)
	if _, ok := opts["syslog_name"]; !ok && l.name != "" {
		if opts == nil {
			opts = map[string]string{}
		}
		opts["syslog_name"] = "postfix/" + l.name
	}
	for _, k := range slices.Sorted(maps.Keys(opts)) {
		if v := opts[k]; v == "" || strings.ContainsAny(v, " \t") {
			fmt.Fprintf(&b, "\n  -o { %s = %s }", k, v)
		} else {
			fmt.Fprintf(&b, "\n  -o %s=%s", k, v)
		}
	}
	return b.String() + "\n"
}

// ConfDir is the instance's config_directory (what /etc/postfix is to the
// system's Postfix).
func (p *Postfix) ConfDir() string { return p.confDir }

// QueueDir is the instance's queue_directory, the chroot of its chrooted
// services (what /var/spool/postfix is to the system's Postfix).
func (p *Postfix) QueueDir() string { return filepath.Join(p.Dir, "queue") }

// SocketDir makes the directory the Debian package makes for tollgate's
// sockets inside the chroot (queue/tollgate, root:postfix 0750) and returns
// its path.
func (p *Postfix) SocketDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(p.QueueDir(), "tollgate")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroup("postfix")
	if err != nil {
		t.Fatal(err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 0, gid); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Sendmail submits a message with the instance's sendmail command, as a
// program on the host does: through the maildrop queue, pickup and cleanup,
// so non_smtpd_milters see it.
func (p *Postfix) Sendmail(t testing.TB, msg string, args ...string) {
	t.Helper()
	cmd := exec.Command("/usr/sbin/sendmail", append([]string{"-C", p.confDir}, args...)...)
	cmd.Stdin = strings.NewReader(msg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("e2e: sendmail %v: %v\n%s\npostfix log:\n%s", args, err, out, p.Log())
	}
}

// chrootFiles are the files Debian's configure-instance.sh copies into the
// chroot before Postfix starts.
var chrootFiles = []string{"etc/localtime", "etc/services", "etc/resolv.conf", "etc/hosts", "etc/host.conf", "etc/nsswitch.conf"}

func (p *Postfix) populateChroot(t testing.TB) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(p.QueueDir(), "etc"), 0o755); err != nil {
		t.Fatalf("e2e: %v", err)
	}
	for _, f := range chrootFiles {
		b, err := os.ReadFile("/" + f)
		if err != nil {
			continue // Debian's script skips what the host lacks too
		}
		if err := os.WriteFile(filepath.Join(p.QueueDir(), f), b, 0o644); err != nil {
			t.Fatalf("e2e: %v", err)
		}
	}
}

func (p *Postfix) writeConfig(t testing.TB, opts PostfixOptions, listeners []listener) {
	t.Helper()
	_, sinkPort, _ := net.SplitHostPort(p.Sink.Addr)
	protocols := "ipv4"
	for _, l := range listeners {
		if l.ip.To4() == nil {
			// IPv4 stays on: the sink listens on 127.0.0.1.
			protocols = "ipv4, ipv6"
		}
	}
	conf := map[string]string{
		// Without it Postfix logs backwards-compatibility warnings and
		// applies pre-3.0 defaults.
		"compatibility_level": "3.6",
		"queue_directory":     filepath.Join(p.Dir, "queue"),
		"data_directory":      filepath.Join(p.Dir, "data"),
		// postlogd writes here; its default prefixes allow only /var and
		// /dev/stdout.
		"maillog_file":          filepath.Join(p.Dir, "maillog"),
		"maillog_file_prefixes": p.Dir,
		"myhostname":            hostname,
		"mydomain":              "tollgate.test",
		"mydestination":         "",
		"local_recipient_maps":  "",
		"alias_maps":            "",
		"alias_database":        "",
		// An explicit host in a master.cf service name overrides it:
		// services on 127.0.0.3 or [::1] listen there all the same.
		"inet_interfaces": "loopback-only",
		"inet_protocols":  protocols,
		"mynetworks":      "127.0.0.0/8 [::1]/128",
		"relayhost":       "[127.0.0.1]:" + sinkPort,
		// disable_dns_lookups is deprecated since Postfix 2.11 in favour
		// of this; with it the client uses getaddrinfo (no DNS for an IP).
		"smtp_dns_support_level": "disabled",
		"lmtp_dns_support_level": "disabled",
		// A rejected command would otherwise cost a second of sleep.
		"smtpd_error_sleep_time": "0",
		// A deferred message comes back within a test's lifetime.
		"queue_run_delay":      "1s",
		"minimal_backoff_time": "1s",
		"maximal_backoff_time": "2s",
		// Notices to postmaster would be relayed into the sink too.
		"notify_classes": "",
		"biff":           "no",

		"smtpd_milters":          opts.Milter,
		"milter_default_action":  cmp.Or(opts.MilterDefaultAction, "tempfail"),
		"milter_protocol":        "6",
		"milter_connect_timeout": "10s",
		"milter_command_timeout": "30s",
		"milter_content_timeout": "60s",
	}
	for k, v := range opts.MilterMacros {
		if !strings.HasPrefix(k, "milter_") {
			k = "milter_" + k + "_macros"
		}
		conf[k] = v
	}
	maps.Copy(conf, opts.MainCF)
	for _, k := range mainCFNames(opts.MainCFText) {
		delete(conf, k)
	}

	var mainCF strings.Builder
	for _, k := range slices.Sorted(maps.Keys(conf)) {
		if strings.ContainsAny(k+conf[k], "\r\n") {
			t.Fatalf("e2e: main.cf parameter %q: line breaks are not allowed", k)
		}
		fmt.Fprintf(&mainCF, "%s = %s\n", k, conf[k])
	}
	mainCF.WriteString(opts.MainCFText)
	// Without Chroot everything runs unchrooted: a chroot needs copies of
	// /etc/hosts, /etc/services and the resolver files in the queue dir.
	chroot := "n"
	if opts.Chroot {
		chroot = "y"
		p.populateChroot(t)
	}
	var masterCF strings.Builder
	for _, l := range listeners {
		masterCF.WriteString(l.masterLine(chroot))
	}
	masterCF.WriteString(`pickup unix n - ` + chroot + ` 60 1 pickup
cleanup unix n - ` + chroot + ` - 0 cleanup
qmgr unix n - n 300 1 qmgr
tlsmgr unix - - n 1000? 1 tlsmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
local unix - n n - - local
virtual unix - n n - - virtual
lmtp unix - - n - - lmtp
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
`)
	masterCF.WriteString(opts.MasterCFText)
	// Every Postfix program rereads main.cf every 300 ms until its mtime is
	// more than a second older than the first read began, in case someone
	// is still writing it (dict_load_file_xt). A fresh file would cost each
	// program started in its first seconds (the master, the first smtpd)
	// up to two seconds.
	past := time.Now().Add(-time.Minute)
	for name, content := range map[string]string{"main.cf": mainCF.String(), "master.cf": masterCF.String()} {
		path := filepath.Join(p.confDir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatalf("e2e: %v", err)
		}
		if err := os.Chtimes(path, past, past); err != nil {
			t.Fatalf("e2e: %v", err)
		}
	}
}

// queueDirs is the queue layout of /etc/postfix/postfix-files (Postfix 3.7),
// which "postfix start" would create through post-install.
var queueDirs = []struct {
	name     string
	mode     os.FileMode
	owner    bool // owned by mail_owner, else root
	setgidGr bool // group setgid_group, else root
}{
	{"active", 0o700, true, false},
	{"bounce", 0o700, true, false},
	{"corrupt", 0o700, true, false},
	{"defer", 0o700, true, false},
	{"deferred", 0o700, true, false},
	{"flush", 0o700, true, false},
	{"hold", 0o700, true, false},
	{"incoming", 0o700, true, false},
	{"private", 0o700, true, false},
	{"maildrop", 0o730, true, true},
	{"public", 0o710, true, true},
	{"pid", 0o755, false, false},
	{"saved", 0o700, true, false},
	{"trace", 0o700, true, false},
}

// makeDirs lays out etc/, queue/ and data/ with the owners and modes Postfix
// checks for. "postfix start" would do it, but through postfix-script and
// post-install: about forty short-lived processes (postconf runs, find over
// the system's Postfix files) that cost 0.2 s on an idle machine and several
// seconds on a loaded one.
func (p *Postfix) makeDirs(t testing.TB) {
	t.Helper()
	owner, err := user.Lookup(mailOwner)
	if err != nil {
		t.Fatalf("e2e: no user %q (install the Debian package %q): %v", mailOwner, postfixPackage, err)
	}
	group, err := user.LookupGroup(setgidGroup)
	if err != nil {
		t.Fatalf("e2e: no group %q (install the Debian package %q): %v", setgidGroup, postfixPackage, err)
	}
	ownerUID, _ := strconv.Atoi(owner.Uid)
	setgidGID, _ := strconv.Atoi(group.Gid)

	mk := func(path string, mode os.FileMode, uid, gid int) {
		// Chmod after Mkdir: the umask must not change the modes.
		if err := os.Mkdir(path, mode); err != nil {
			t.Fatalf("e2e: %v", err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatalf("e2e: %v", err)
		}
		if err := os.Chown(path, uid, gid); err != nil {
			t.Fatalf("e2e: %v", err)
		}
	}
	mk(p.confDir, 0o755, 0, 0)
	mk(filepath.Join(p.Dir, "data"), 0o700, ownerUID, 0)
	queue := filepath.Join(p.Dir, "queue")
	mk(queue, 0o755, 0, 0)
	for _, d := range queueDirs {
		uid, gid := 0, 0
		if d.owner {
			uid = ownerUID
		}
		if d.setgidGr {
			gid = setgidGID
		}
		mk(filepath.Join(queue, d.name), d.mode, uid, gid)
	}
}

// startMaster runs the master daemon the way postfix-script does, minus the
// integrity checks makeDirs makes unnecessary: "master -w" returns once the
// daemon has initialized (listening sockets included) or has failed.
// Output goes to a file, not a pipe: the daemon outlives the command, and a
// pipe it inherited would keep exec.Cmd.Wait waiting.
func (p *Postfix) startMaster() (string, error) {
	outPath := filepath.Join(p.Dir, "master.out")
	out, err := os.Create(outPath)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeLimit)
	defer cancel()
	// postfix-script sets this umask too; the test binary's may differ.
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", `umask 022 && exec "$0" "$@"`,
		MasterProgram, "-c", p.confDir, "-w")
	// The postfix command would start the master with a clean environment
	// too; no variable of the test (MAIL_CONFIG, say) should reach it. The
	// POSTLOG_* hints are what the postfix command exports: without them the
	// master logs to syslog until postlogd runs, and a failure to start
	// (a port in use) would be logged nowhere a test can read.
	cmd.Env = []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"MAIL_LOGTAG=postfix",
		"POSTLOG_SERVICE=" + filepath.Join(p.Dir, "queue", "public", "postlog"),
		"POSTLOG_HOSTNAME=" + hostname,
	}
	if tz, ok := os.LookupEnv("TZ"); ok {
		cmd.Env = append(cmd.Env, "TZ="+tz)
	}
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.Dir = "/"
	err = cmd.Run()
	out.Close()
	b, _ := os.ReadFile(outPath)
	return string(b), err
}

// Log returns the instance's maillog. postlogd writes it asynchronously:
// use WaitLog for a line that must be there.
func (p *Postfix) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.Dir, "maillog"))
	return string(b)
}

// WaitLog polls until the maillog contains substr and returns the log;
// it fails the test when timeout passes first.
func (p *Postfix) WaitLog(t testing.TB, substr string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		log := p.Log()
		if strings.Contains(log, substr) {
			return log
		}
		if time.Now().After(deadline) {
			t.Fatalf("e2e: postfix log has no %q after %v:\n%s", substr, timeout, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitMessages waits for n messages in the instance's sink, like
// Sink.WaitMessages, and adds the Postfix log to the failure.
func (p *Postfix) WaitMessages(t testing.TB, n int, timeout time.Duration) []Message {
	t.Helper()
	msgs, err := p.Sink.waitMessages(n, timeout)
	if err != nil {
		t.Fatalf("e2e: %v\npostfix log:\n%s", err, p.Log())
	}
	return msgs
}

// Swaks runs swaks against this instance's smtpd.
func (p *Postfix) Swaks(t testing.TB, args ...string) SwaksResult {
	t.Helper()
	if strings.HasPrefix(p.Addr, "[") {
		requireFile(t, swaksIPv6Module, swaksIPv6Package)
	}
	return Swaks(t, append([]string{"--server", p.Addr}, args...)...)
}

// stop does what "postfix stop" does, a TERM to the master, which passes it
// to its process group; but "postfix stop" then polls in whole seconds, and
// this polls every few milliseconds. Processes are found by their working
// directory, the queue directory every Postfix daemon changes into: that
// cannot hit an unrelated process that reused a PID.
func (p *Postfix) stop(t testing.TB) {
	t.Helper()
	pids := p.processes()
	if len(pids) == 0 {
		return
	}
	b, err := os.ReadFile(filepath.Join(p.Dir, "queue", "pid", "master.pid"))
	if err == nil {
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err == nil && slices.Contains(pids, pid) {
			syscall.Kill(pid, syscall.SIGTERM)
			if p.waitGone(stopTimeLimit) {
				return
			}
		}
	}
	// No master (it crashed) or it did not stop its children in time.
	for _, pid := range p.processes() {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if !p.waitGone(2 * time.Second) {
		t.Errorf("e2e: postfix processes %v of %s survived SIGKILL", p.processes(), p.Dir)
	}
}

func (p *Postfix) waitGone(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for len(p.processes()) > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// processes lists live processes working inside the instance directory.
// Zombies have no working directory, so an exited master whose parent (PID 1
// after daemonizing) has not reaped it yet does not count.
func (p *Postfix) processes() []int { return processesIn(p.Dir) }

// processesIn lists live processes whose working directory is dir or below.
func processesIn(dir string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err == nil && (cwd == dir || strings.HasPrefix(cwd, dir+"/")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// mainCFNames are the parameter names a main.cf text sets.
func mainCFNames(text string) []string {
	var names []string
	for _, l := range strings.Split(text, "\n") {
		if l == "" || l[0] == '#' || l[0] == ' ' || l[0] == '\t' {
			continue
		}
		if name, _, ok := strings.Cut(l, "="); ok {
			names = append(names, strings.TrimSpace(name))
		}
	}
	return names
}
