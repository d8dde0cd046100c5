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
