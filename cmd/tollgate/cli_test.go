package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func runBinary(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), 0
}

// Every subcommand answers --help on standard output with exit 0: its
// synopsis and one line per option, in the GNU form --name VALUE.
func TestHelpOnEverySubcommand(t *testing.T) {
	option := regexp.MustCompile(`(?m)^  --[a-z][a-z-]*( [A-Z_|]+)?  +\S`)
	for _, tc := range []struct {
		args    []string
		options []string
	}{
		{[]string{"run", "--help"}, []string{"--config FILE", "--listen ADDR", "--metrics-listen ADDR"}},
		{[]string{"check", "--help"}, []string{"--config FILE", "--print"}},
		{[]string{"test", "--help"}, []string{"--config", "--client", "--from", "--rcpt", "--json", "--emit"}},
		{[]string{"srs", "forward", "--help"}, []string{"--config FILE"}},
		{[]string{"srs", "reverse", "-h"}, []string{"--config FILE"}},
		{[]string{"arc", "keygen", "--help"}, []string{"--domain DOMAIN", "--selector SELECTOR", "--type TYPE", "--bits BITS", "--out FILE"}},
		{[]string{"dkim", "keygen", "--help"}, []string{"--domain DOMAIN", "--selector SELECTOR", "--type TYPE", "--bits BITS", "--out FILE"}},
		{[]string{"srs", "--help"}, nil},
		{[]string{"arc", "--help"}, nil},
		{[]string{"--help"}, nil},
	} {
		out, errOut, code := runBinary(t, tc.args...)
		name := strings.Join(tc.args, " ")
		if code != 0 || errOut != "" || !strings.Contains(out, "usage:") || !strings.Contains(out, "tollgate") {
			t.Errorf("tollgate %s: exit %d, stderr %q, stdout:\n%s", name, code, errOut, out)
			continue
		}
		if strings.Contains(out, "Usage of") || regexp.MustCompile(`(?m)^\s+-[a-z]`).MatchString(out) {
			t.Errorf("tollgate %s: Go's single-dash help:\n%s", name, out)
		}
		lines := option.FindAllString(out, -1)
		for _, o := range tc.options {
			found := false
			for _, l := range lines {
				if strings.HasPrefix(strings.TrimSpace(l), o+" ") || strings.TrimSpace(l) == o {
					found = true
				}
			}
			if !found {
				t.Errorf("tollgate %s: no line for %s in:\n%s", name, o, out)
			}
		}
	}
	// A mistake still exits 2, on standard error, with the GNU spelling.
	out, errOut, code := runBinary(t, "check", "--colour")
	if code != 2 || out != "" || !strings.Contains(errOut, "--colour") || !strings.Contains(errOut, `"tollgate check --help"`) {
		t.Errorf("check --colour: exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}
}

func TestVersionFlags(t *testing.T) {
	for _, arg := range []string{"version", "--version", "-v"} {
		out, _, code := runBinary(t, arg)
		if code != 0 || !strings.HasPrefix(out, "tollgate ") {
			t.Errorf("tollgate %s: exit %d: %q", arg, code, out)
		}
	}
}

// --json keeps angle brackets as they are.
func TestTestCommandJSONIsNotHTMLEscaped(t *testing.T) {
	out, _, code := runBinary(t, append(append([]string{}, exampleArgs...), "--json", "../../deploy/examples/message.eml")...)
	if code != 0 || !strings.Contains(out, `"<alice@example.net>"`) || strings.Contains(out, `\u003c`) {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

// "tollgate srs forward" leaves alone what the daemon leaves alone.
func TestSRSForwardFollowsTheDaemon(t *testing.T) {
	config := filepath.Join(t.TempDir(), "tollgate.yaml")
	if err := os.WriteFile(config, []byte(`
srs:
  domain: fwd.example.org
  secrets: [s3cr3t]
  local_domains: [example.org]
  exclude_domains: ["*.lists.example"]
acl:
  rcpt:
    - accept: {}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"bob@example.org", "news@x.lists.example"} {
		out, errOut, code := runBinary(t, "srs", "forward", "--config", config, addr)
		if code != 0 || strings.TrimSpace(out) != addr || !strings.Contains(errOut, "left unchanged") {
			t.Errorf("srs forward %s: exit %d, %q, %q", addr, code, out, errOut)
		}
	}
	out, _, code := runBinary(t, "srs", "forward", "--config", config, "alice@example.net")
	if code != 0 || !strings.HasPrefix(out, "SRS0=") || !strings.HasSuffix(strings.TrimSpace(out), "=example.net=alice@fwd.example.org") {
		t.Errorf("srs forward alice@example.net: exit %d, %q", code, out)
	}
	srs0 := strings.TrimSpace(out)
	out, errOut, code := runBinary(t, "srs", "forward", "--config", config, srs0)
	if code != 0 || strings.TrimSpace(out) != srs0 || !strings.Contains(errOut, "SRS domain") {
		t.Errorf("srs forward of our own SRS address: exit %d, %q, %q", code, out, errOut)
	}
}

// check --print writes the effective configuration; it loads, and printed
// again it is the same.
func TestCheckPrintRoundTrip(t *testing.T) {
	dir := t.TempDir()
	monitored := writeFile(t, dir, "monitored.yaml", "mode: monitor\nmonitor_header: X-Tollgate-Would\nlog: {level: warn, syslog: mail}\nacl:\n  rcpt:\n    - accept: {}\n")
	for _, src := range []string{"../../deploy/examples/tollgate.yaml", writeFile(t, dir, "minimal.yaml", "acl:\n  rcpt:\n    - accept: {}\n"), monitored} {
		first, errOut, code := runBinary(t, "check", "--print", "--config", src)
		if code != 0 {
			t.Fatalf("check --print %s: exit %d\n%s", src, code, errOut)
		}
		for _, want := range []string{"\nlisten: unix:", "\nmetrics_listen: ", "\nlog: {format: ", "\non_error: ", "\ndrain_timeout: ", "\nacl:\n"} {
			if !strings.Contains(first, want) {
				t.Errorf("%s: no %q in the effective configuration:\n%s", src, want, first)
			}
		}
		printed := writeFile(t, dir, "printed.yaml", first)
		if out, errOut, code := runBinary(t, "check", "--config", printed); code != 0 || strings.TrimSpace(out) != printed+": OK" {
			t.Errorf("the printed configuration of %s does not load: exit %d\n%s%s", src, code, out, errOut)
		}
		second, _, _ := runBinary(t, "check", "--print", "--config", printed)
		if body(first) != body(second) {
			t.Errorf("printed twice, %s differs:\n%s\n---\n%s", src, first, second)
		}
	}
	out, _, _ := runBinary(t, "check", "--print", "--config", monitored)
	for _, want := range []string{"log: {format: text, level: warn, syslog: mail, syslog_address: /dev/log}\n", "\nmode: monitor\nmonitor_header: X-Tollgate-Would\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("monitor mode and syslog: no %q in\n%s", want, out)
		}
	}
	out, _, _ = runBinary(t, "check", "--print", "--config", filepath.Join(dir, "minimal.yaml"))
	for _, want := range []string{"listen: unix:/run/tollgate/tollgate.sock\n", "socket: {mode: \"0660\"}\n", "metrics_listen: 127.0.0.1:9795\n", "log: {format: text, level: info}\n", "on_error: tempfail\n", "mode: enforce\n", "drain_timeout: 30s\n",
		"limits:\n  max_connections: 1000\n  idle_timeout: 10m\n  max_packet: 256K\n  max_headers: 1000\n  max_header_bytes: 1M\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("the defaults lack %q:\n%s", want, out)
		}
	}
}

// body is printed YAML without its first comment line, which names the file.
func body(s string) string {
	_, rest, _ := strings.Cut(s, "\n")
	return rest
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// tollgate(8) names every option every subcommand has.
func TestManPageHasEveryOption(t *testing.T) {
	page, err := os.ReadFile("../../deploy/man/tollgate.8")
	if err != nil {
		t.Fatal(err)
	}
	optionName := regexp.MustCompile(`(?m)^  --([a-z][a-z-]*)`)
	n := 0
	for _, args := range [][]string{{"run"}, {"check"}, {"test"}, {"srs", "forward"}, {"srs", "reverse"}, {"arc", "keygen"}, {"dkim", "keygen"}} {
		out, _, _ := runBinary(t, append(args, "--help")...)
		for _, m := range optionName.FindAllStringSubmatch(out, -1) {
			n++
			if m[1] != "help" && !strings.Contains(string(page), `\-\-`+strings.ReplaceAll(m[1], "-", `\-`)) {
				t.Errorf("tollgate(8) does not describe tollgate %s --%s (docs/man/tollgate.8.md)", strings.Join(args, " "), m[1])
			}
		}
	}
	if n < 25 {
		t.Errorf("only %d options found in the help texts", n)
	}
}
