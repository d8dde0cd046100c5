package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The reproducer of issue 13: tollgate check said OK to a data rule using
// $recipient, which then deferred every message. Now check refuses it at
// its line, through the command as an operator runs it.
func TestCheckRefusesVariableOutsideItsStages(t *testing.T) {
	config := filepath.Join(t.TempDir(), "tollgate.yaml")
	src := "acl: {rcpt: [{accept: {}}], data: [{accept: {add_header: \"X-For: $recipient\"}}]}\n"
	if err := os.WriteFile(config, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := cmdCheck([]string{"--config", config}, &stdout, &stderr); code != 1 {
		t.Fatalf("exit %d, stdout %q", code, stdout.String())
	}
	want := config + ":1: add_header: $recipient has no value at data (only at rcpt)\n"
	if stderr.String() != want {
		t.Errorf("stderr %q, want %q", stderr.String(), want)
	}
	if strings.Contains(stdout.String(), "OK") {
		t.Errorf("stdout %q", stdout.String())
	}
}

// A dnslists item that is not Exim's syntax is refused by check at its own
// line, through the command as an operator runs it, every bad item at once.
func TestCheckRefusesBadDNSListItems(t *testing.T) {
	config := filepath.Join(t.TempDir(), "tollgate.yaml")
	src := `acl:
  connect:
    - deny:
        dnslists:
          - zen.example.org
          - "bl.example.net=127.0.0.2,localhost"
          - "!allow.example.org"
    - accept: {}
`
	if err := os.WriteFile(config, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := cmdCheck([]string{"--config", config}, &stdout, &stderr); code != 1 {
		t.Fatalf("exit %d, stdout %q", code, stdout.String())
	}
	for _, want := range []string{
		config + `:6: dnslists: "bl.example.net=127.0.0.2,localhost": "localhost" is not an IPv4 address`,
		config + `:7: dnslists: "!allow.example.org": an item cannot be negated as a whole`,
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr %q lacks %q", stderr.String(), want)
		}
	}
	if strings.Count(stderr.String(), "\n") != 2 {
		t.Errorf("want two errors:\n%s", stderr.String())
	}
}
