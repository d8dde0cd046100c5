package deploy_test

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policy"
)

const unitFile = "systemd/tollgate.service"

// unit is a parsed systemd unit: section -> key -> values in order. An
// empty assignment resets the list, as systemd does.
type unit map[string]map[string][]string

func parseUnit(t testing.TB, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", path, n, line)
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			if v == "" {
				u[section][k] = []string{}
			} else {
				u[section][k] = append(u[section][k], v)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

func (u unit) get(section, key string) (string, bool) {
	v, ok := u[section][key]
	return strings.Join(v, " "), ok
}

// unitRoot is a file system root in which systemd-analyze finds the unit,
// the programs it runs and the units it depends on.
func unitRoot(t *testing.T) string {
	root := t.TempDir()
	for _, d := range []string{"usr/bin", "bin", "lib/systemd", "etc/systemd/system"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := tollgateBinary(t)
	if err := os.Link(bin, filepath.Join(root, "usr/bin/tollgate")); err != nil {
		run(t, "cp", bin, filepath.Join(root, "usr/bin/tollgate"))
	}
	run(t, "cp", "/bin/kill", filepath.Join(root, "bin/kill"))
	run(t, "cp", "-a", "/lib/systemd/system", filepath.Join(root, "lib/systemd/"))
	run(t, "cp", unitFile, filepath.Join(root, "etc/systemd/system/tollgate.service"))
	return root
}

// systemd's own check of the unit: every key known, every value valid,
// every program there. It warns on standard error and still exits 0, so
// any output fails.
func TestSystemdUnitVerify(t *testing.T) {
	sa := requireProgram(t, "systemd-analyze", "systemd")
	root := unitRoot(t)
	out, err := runErr(sa, "verify", "--root="+root, "tollgate.service")
	if err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The sandbox, scored by systemd (0 is the best, 10 the worst; 2 is "OK").
	out, err = runErr(sa, "security", "--offline=true", "--threshold=20", "--root="+root, "tollgate.service")
	score := regexp.MustCompile(`Overall exposure level for tollgate.service: (\S+ \S+)`).FindStringSubmatch(out)
	if err != nil || score == nil {
		t.Fatalf("systemd-analyze security: exposure above 2.0 or no score (%v):\n%s", err, out)
	}
	t.Logf("systemd-analyze security: exposure %s", score[1])
}

// The settings the unit must have, beyond what systemd can judge.
func TestSystemdUnitSettings(t *testing.T) {
	u := parseUnit(t, unitFile)
	want := map[string]string{
		"User": "tollgate", "Group": "tollgate", "Type": "simple",
		"ExecStartPre":     "/usr/bin/tollgate check --config /etc/tollgate/tollgate.yaml",
		"ExecStart":        "/usr/bin/tollgate run --config /etc/tollgate/tollgate.yaml",
		"Restart":          "on-failure",
		"KillSignal":       "SIGTERM",
		"RuntimeDirectory": "tollgate", "RuntimeDirectoryMode": "0750",
		"StateDirectory": "tollgate", "StateDirectoryMode": "0700",
		"ConfigurationDirectory": "tollgate",
		"NoNewPrivileges":        "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"PrivateDevices": "yes", "CapabilityBoundingSet": "", "AmbientCapabilities": "",
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
		"SystemCallArchitectures": "native",
		// Only the socket directory inside Postfix's chroot; /run/tollgate and
		// /var/lib/tollgate are writable as RuntimeDirectory and StateDirectory.
		"ReadWritePaths": "-/var/spool/postfix/tollgate",
	}
	for k, v := range want {
		got, ok := u.get("Service", k)
		if !ok || got != v {
			t.Errorf("[Service] %s = %q, want %q", k, got, v)
		}
	}
	reload := u["Service"]["ExecReload"]
	if len(reload) == 0 || reload[len(reload)-1] != "/bin/kill -HUP $MAINPID" {
		t.Errorf("ExecReload = %q: the last must be /bin/kill -HUP $MAINPID", reload)
	}
	if filter := u["Service"]["SystemCallFilter"]; len(filter) == 0 || filter[0] != "@system-service" {
		t.Errorf("SystemCallFilter = %q: want an allow list starting with @system-service", filter)
	}
	// A group that may not exist (no Postfix) would stop the unit from
	// starting: memberships come from the postinst instead.
	if _, ok := u["Service"]["SupplementaryGroups"]; ok {
		t.Error("SupplementaryGroups= fails the unit (216/GROUP) on hosts without that group: the postinst adds the memberships")
	}
	if _, ok := u["Service"]["PrivateUsers"]; ok {
		t.Error("PrivateUsers= would leave the group postfix unmapped: the socket could not be given to it")
	}
	if got, _ := u.get("Install", "WantedBy"); got != "multi-user.target" {
		t.Errorf("[Install] WantedBy = %q", got)
	}
	// The stop timeout must leave the drain its time, with the packaged configuration.
	p, err := policy.LoadFile(filepath.Join(repo, "deploy/examples/tollgate.yaml"), features...)
	if err != nil {
		t.Fatal(err)
	}
	stop, _ := u.get("Service", "TimeoutStopSec")
	d, err := time.ParseDuration(stop)
	if err != nil || d <= p.DrainTimeout {
		t.Errorf("TimeoutStopSec = %q, want a duration above drain_timeout %v", stop, p.DrainTimeout)
	}
}

// syscallFilter is the set of system calls a unit's SystemCallFilter=
// lines allow, with systemd's own group definitions and semantics: the first
// line decides between an allow and a deny list; later lines add (or, with
// ~, remove) to it.
func syscallFilter(t *testing.T, lines []string) (allowed map[string]bool, allowList bool) {
	sa := requireProgram(t, "systemd-analyze", "systemd")
	groups := map[string][]string{}
	var cur string
	for _, l := range strings.Split(run(t, sa, "syscall-filter"), "\n") {
		f := strings.TrimSpace(l)
		switch {
		case f == "" || strings.HasPrefix(f, "#"):
		case strings.HasPrefix(l, "@"):
			cur = f
		case cur != "":
			groups[cur] = append(groups[cur], f)
		}
	}
	var expand func(name string, into map[string]bool)
	expand = func(name string, into map[string]bool) {
		if !strings.HasPrefix(name, "@") {
			into[name] = true
			return
		}
		members, ok := groups[name]
		if !ok {
			t.Fatalf("systemd knows no system call group %s", name)
		}
		for _, m := range members {
			expand(m, into)
		}
	}
	allowed = map[string]bool{}
	for i, l := range lines {
		deny := strings.HasPrefix(l, "~")
		if i == 0 {
			allowList = !deny
		}
		set := map[string]bool{}
		for _, name := range strings.Fields(strings.TrimPrefix(l, "~")) {
			expand(name, set)
		}
		for name := range set {
			allowed[name] = deny != allowList
		}
	}
	return allowed, allowList
}

// Every system call the shipped binary makes — checking a configuration
// with every feature, then serving it: the socket's group set, messages
// through ARC, SRS, DCC and BMI, a reload, a drain — is one the unit's
// SystemCallFilter allows (otherwise systemd would answer it with EPERM).
func TestSystemdUnitSyscallFilter(t *testing.T) {
	u := parseUnit(t, unitFile)
	allowed, allowList := syscallFilter(t, u["Service"]["SystemCallFilter"])
	if !allowList {
		t.Fatal("SystemCallFilter must be an allow list")
	}
	live := liveDaemon(t)
	var used, refused []string
	for name := range live.syscalls {
		used = append(used, name)
		if !allowed[name] {
			refused = append(refused, name)
		}
	}
	sort.Strings(used)
	sort.Strings(refused)
	if len(used) < 20 || !slices.Contains(used, "accept4") && !slices.Contains(used, "accept") {
		t.Fatalf("strace saw too little (%d system calls): %v", len(used), used)
	}
	if len(refused) > 0 {
		t.Errorf("the unit's SystemCallFilter refuses system calls the daemon makes: %v\n(all it made: %v)", refused, used)
	}
	// And every socket it opens is of a family RestrictAddressFamilies allows.
	families := strings.Fields(strings.Join(u["Service"]["RestrictAddressFamilies"], " "))
	if len(live.sockets) == 0 {
		t.Fatal("strace saw no socket opened")
	}
	for f := range live.sockets {
		if !slices.Contains(families, f) {
			t.Errorf("the daemon opens %s sockets; RestrictAddressFamilies=%s refuses them", f, strings.Join(families, " "))
		}
	}
}
