package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// What "run" refuses at start, "check" refuses too, with the same
// file:line message: the unit runs "check" before "run", and a check that
// passes must not be followed by a start that fails (issue 14, point 5).
func TestCheckRefusesWhatRunRefuses(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, config, want string
	}{
		{"unknown group", "listen: unix:" + dir + "/t.sock\nsocket: {group: no-such-group-tg}\n", ":2: socket.group: group: unknown group no-such-group-tg"},
		{"unknown owner", "listen: unix:" + dir + "/t.sock\nsocket:\n  mode: \"0660\"\n  user: no-such-user-tg\n", ":4: socket.user: user: unknown user no-such-user-tg"},
		{"socket directory missing", "listen: unix:" + dir + "/missing/t.sock\n", ":1: listen: the socket's directory " + dir + "/missing does not exist"},
		{"socket path is a file", "listen: unix:" + notDir + "\n", ":1: listen: " + notDir + " exists and is not a socket"},
		{"listen address of another host", "listen: inet:192.0.2.1:8891\n", ":1: listen: 192.0.2.1 is not an address of this host"},
		{"metrics address of another host", "log: {level: info}\nmetrics_listen: 192.0.2.1:9795\n", ":2: metrics_listen: 192.0.2.1 is not an address of this host"},
		{"SRS database directory missing", "srs:\n  domain: fwd.example.org\n  secrets: [s3cr3t]\n  database: {bolt: " + dir + "/missing/srs.db}\n", ":4: srs.database.bolt: stat " + dir + "/missing: no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			config := filepath.Join(t.TempDir(), "tollgate.yaml")
			if err := os.WriteFile(config, []byte(tc.config+"acl:\n  rcpt:\n    - accept: {}\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, cmd := range []string{"check", "run"} {
				out, err := exec.Command(binary, cmd, "--config", config).CombinedOutput()
				if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), config+tc.want) {
					t.Errorf("tollgate %s: %v, want exit 1 and %q in:\n%s", cmd, err, config+tc.want, out)
				}
			}
		})
	}

	// The same configuration with what the host has passes both; run then
	// serves (listen and metrics on this host's addresses).
	config := filepath.Join(dir, "good.yaml")
	good := "listen: unix:" + dir + "/t.sock\nsocket: {group: \"0\", user: \"0\"}\nmetrics_listen: 127.0.0.1:0\nacl:\n  rcpt:\n    - accept: {}\n"
	if err := os.WriteFile(config, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(binary, "check", "--config", config).Output(); err != nil || strings.TrimSpace(string(out)) != config+": OK" {
		t.Errorf("check: %v\n%s", err, out)
	}
	cmd := exec.Command(binary, "run", "--config", config)
	log := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemonProc{cmd: cmd, log: log, exited: make(chan error, 1)}
	go func() { d.exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill(); <-d.exited })
	d.waitLog(t, "tollgate started")
}
