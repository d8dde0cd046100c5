package deploy_test

import (
	"bufio"
	"os"
	"path/filepath"
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
