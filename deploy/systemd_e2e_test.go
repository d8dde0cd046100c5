//go:build e2e

package deploy_test

// The unit's checks that run systemd-analyze, and for the system-call
// filter the daemon under strace.

import (
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/e2e"
)

// systemd's own check of the unit: every key known, every value valid,
// every program there. It warns on standard error and still exits 0, so
// any output fails.
func TestSystemdUnitVerify(t *testing.T) {
	sa := e2e.RequireProgram(t, "systemd-analyze", "systemd")
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

// syscallFilter is the set of system calls a unit's SystemCallFilter=
// lines allow, with systemd's own group definitions and semantics: the first
// line decides between an allow and a deny list; later lines add (or, with
// ~, remove) to it.
func syscallFilter(t *testing.T, lines []string) (allowed map[string]bool, allowList bool) {
	sa := e2e.RequireProgram(t, "systemd-analyze", "systemd")
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
