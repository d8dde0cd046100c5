package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var exampleArgs = []string{"test", "--config", "../../deploy/examples/tollgate.yaml", "--client", "203.0.113.5",
	"--client-name", "mail.example.net", "--helo", "mail.example.net", "--from", "alice@example.net",
	"--rcpt", "bob@example.org", "--rcpt", "carol@elsewhere.test"}

// The README shows this run; the output must stay what it documents.
func TestExampleOutputIsDocumented(t *testing.T) {
	out, err := exec.Command(binary, append(exampleArgs, "../../deploy/examples/message.eml")...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	golden, err := os.ReadFile("testdata/example-test.txt")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, golden) {
		t.Errorf("output differs from testdata/example-test.txt:\n%s", out)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(readme, golden) {
		t.Error("README.md does not show the output of the documented tollgate test run (testdata/example-test.txt)")
	}
}

func TestTestCommandJSONAndEmit(t *testing.T) {
	emitted := filepath.Join(t.TempDir(), "out.eml")
	args := append(append([]string{}, exampleArgs...), "--json", "--emit", emitted, "../../deploy/examples/message.eml")
	out, err := exec.Command(binary, args...).Output()
	if err != nil {
		t.Fatal(err)
	}
	var r testReport
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if r.Decision != "accept" || len(r.Recipients) != 2 || r.Recipients[1].Result != "reject" ||
		!strings.HasPrefix(r.Recipients[1].Reply, "550 5.7.1") || len(r.Stages) != 6 || len(r.Changes) != 2 {
		t.Errorf("%+v", r)
	}
	msg, err := os.ReadFile(emitted)
	if err != nil {
		t.Fatal(err)
	}
	want := "X-Tollgate-Checked: tollgate-test.invalid for [203.0.113.5]\nFrom: Alice <alice@example.net>\n"
	if !strings.HasPrefix(string(msg), want) || strings.Contains(string(msg), "forged") || !strings.HasSuffix(string(msg), "\n\nHi Bob, lunch on friday?\n") {
		t.Errorf("emitted message:\n%s", msg)
	}
}

func TestTestCommandStopsWhereTheMTAWould(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte("acl:\n  mail:\n    - defer: {senders: [\"<>\"], message: \"451 4.7.1 no bounces now\"}\n    - accept: {}\n"), 0o644)
	msg := filepath.Join(dir, "m.eml")
	os.WriteFile(msg, []byte("Subject: x\n\nbody\n"), 0o644)
	out, err := exec.Command(binary, "test", "--config", cfg, "--client", "2001:db8::1", "--from", "", "--rcpt", "a@example.org", "--json", msg).Output()
	if err != nil {
		t.Fatal(err)
	}
	var r testReport
	json.Unmarshal(out, &r)
	if r.Decision != "tempfail" || !strings.Contains(r.Reply, "451 4.7.1 no bounces now") || len(r.Stages) != 3 {
		t.Errorf("%s", out)
	}
	if out, err := exec.Command(binary, "test", "--config", cfg, msg).CombinedOutput(); err == nil || !strings.Contains(string(out), "--client") {
		t.Errorf("missing arguments accepted: %s", out)
	}
}

func TestTestCommandProxySession(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(`identity:
  xclient_hosts: [127.0.0.1]
  xclient_daemons: [proxy-in]
acl:
  connect:
    - deny: {name: no-direct-from-proxy, hosts: [127.0.0.1]}
    - accept: {}
  data:
    - accept: {add_header: "X-Seen: $sender_host_address $authenticated_id $proxy_session"}
`), 0o644)
	args := []string{"test", "--config", cfg, "--from", "a@example.net", "--rcpt", "b@example.org", "--json"}
	var r testReport
	out, err := exec.Command(binary, append(args, "--proxy", "127.0.0.1:51000", "--client", "203.0.113.8", "--login", "carol", "../../deploy/examples/message.eml")...).Output()
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(out, &r)
	if len(r.Stages) != 7 || r.Stages[0].Stage != "proxy-connect" || r.Stages[0].Result != "continue" || len(r.Stages[0].Rules) != 0 ||
		r.Decision != "accept" || len(r.Changes) != 1 || r.Changes[0].Value != "203.0.113.8 carol yes" {
		t.Errorf("proxied: %s", out)
	}
	out, _ = exec.Command(binary, append(args, "--client", "127.0.0.1", "../../deploy/examples/message.eml")...).Output()
	r = testReport{}
	json.Unmarshal(out, &r)
	if r.Decision != "reject" || len(r.Stages) != 1 {
		t.Errorf("direct from the proxy: %s", out)
	}
}

// tollgate test with a monitoring configuration shows what the MTA is told
// (accept, only the monitor header) and what would have happened.
func TestTestCommandInMonitorMode(t *testing.T) {
	example, err := os.ReadFile("../../deploy/examples/tollgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(t.TempDir(), "monitor.yaml")
	if err := os.WriteFile(config, append([]byte("mode: monitor\nmonitor_header: X-Tollgate-Would\n"), example...), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{}, exampleArgs...)
	args[2] = config
	out, err := exec.Command(binary, append(args, "../../deploy/examples/message.eml")...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{
		"\n  <carol@elsewhere.test> accept\n",
		"changes:\n  insert_header [2147483647] X-Tollgate-Would: reject at rcpt <carol@elsewhere.test>: 550 5.7.1 relay not permitted (rule relay)\nlog:",
		`recipient=<carol@elsewhere.test> decision=would_reject reply="550 5.7.1 relay not permitted" rule=relay`,
		"mode=monitor decision=accept rule=stamp suppressed=add_header:1,remove_header:1",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
}
