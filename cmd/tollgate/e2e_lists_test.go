//go:build e2e

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/tollgate/tollgate/internal/mta"
)

// tinycdbMake writes a cdb database from "key value" lines with Debian's
// tinycdb, which builds it in a temporary file and renames it into place.
func tinycdbMake(t *testing.T, db, lines string) {
	t.Helper()
	src := db + ".txt"
	if err := os.WriteFile(src, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cdb", "-c", "-m", db, src).CombinedOutput(); err != nil {
		t.Fatalf("cdb -c (tinycdb, scripts/install-test-deps.sh): %v\n%s", err, out)
	}
}

// mdbLoadReplace writes an LMDB file from mdb_load's plain-text input (key
// and value on alternate lines) with Debian's mdb_load, beside db, and
// renames it over db: the documented way to update a database in use.
func mdbLoadReplace(t *testing.T, db, pairs string) {
	t.Helper()
	tmp := db + ".new"
	os.Remove(tmp)
	cmd := exec.Command("mdb_load", "-n", "-T", tmp)
	cmd.Stdin = strings.NewReader(pairs)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mdb_load (lmdb-utils, scripts/install-test-deps.sh): %v\n%s", err, out)
	}
	os.Remove(tmp + "-lock")
	if err := os.Rename(tmp, db); err != nil {
		t.Fatal(err)
	}
}

// replaceWith renames a file with content over path.
func replaceWith(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+".new", []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

func rcptFrom(t *testing.T, sock, sender, addr string) *gomilter.Action {
	t.Helper()
	s, err := mta.NewClient("unix", sock).Session(gomilter.NewMacroBag())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Conn("h", gomilter.FamilyInet, 1, "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Helo("h"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Mail(sender, ""); err != nil {
		t.Fatal(err)
	}
	act, err := s.Rcpt(addr, "")
	if err != nil {
		t.Fatal(err)
	}
	return act
}

// A cdb database made by tinycdb and an LMDB database made by mdb_load,
// read by the real daemon as list items and in an expansion, and replaced
// while it runs: new databases are used within lists_check_interval, a
// broken one keeps the old contents (logged once, counted).
func TestListDatabasesReplacedWhileRunning(t *testing.T) {
	dir := t.TempDir()
	blocked, senders := filepath.Join(dir, "blocked.cdb"), filepath.Join(dir, "senders.mdb")
	tinycdbMake(t, blocked, "blocked@example.org 1\n")
	mdbLoadReplace(t, senders, "example.net\nclass-a\n")
	d := startDaemon(t, fmt.Sprintf(`lists_check_interval: 50ms
acl:
  rcpt:
    - deny: {recipients: ["cdb:%s"], message: "550 5.7.1 blocked (${lookup{$sender_address_domain}lmdb{%s}})"}
    - deny: {sender_domains: ["!lmdb:%s"], message: "550 5.7.1 unknown sender domain"}
    - accept: {}
`, blocked, senders, senders))
	answer := func(sender, rcpt string) string {
		act := rcptFrom(t, d.sock, sender, rcpt)
		if !act.StopProcessing() {
			return "accepted"
		}
		return act.SMTPReply
	}
	check := func(when, sender, rcpt, want string) {
		t.Helper()
		if got := answer(sender, rcpt); !strings.Contains(got, want) {
			t.Errorf("%s: <%s> to <%s>: %q, want %q", when, sender, rcpt, got, want)
		}
	}
	// eventually waits for a change to be taken: the files may be seen in
	// one check or in two.
	eventually := func(when, sender, rcpt, want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for got := answer(sender, rcpt); !strings.Contains(got, want); got = answer(sender, rcpt) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: <%s> to <%s>: %q, want %q", when, sender, rcpt, got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	check("start", "a@example.net", "blocked@example.org", "blocked (class-a)")
	check("start", "a@example.net", "other@example.org", "accepted")
	check("start", "a@example.com", "other@example.org", "unknown sender domain")

	tinycdbMake(t, blocked, "other@example.org 1\n")
	mdbLoadReplace(t, senders, "example.net\nclass-b\nexample.com\nclass-c\n")
	eventually("after the change", "a@example.com", "other@example.org", "blocked (class-c)")
	check("after the change", "a@example.net", "blocked@example.org", "accepted")
	d.waitLog(t, "list files changed; policy rebuilt")

	replaceWith(t, senders, strings.Repeat("not an LMDB file\n", 1000))
	if !d.waitMetric(t, `tollgate_list_reloads_total{result="error"} 1`) {
		t.Fatal("the broken database was not refused")
	}
	if want := "lmdb:" + senders + ": not an LMDB database"; !strings.Contains(d.log.String(), want) {
		t.Errorf("the log does not say %q", want)
	}
	check("after a broken database", "a@example.com", "other@example.org", "blocked (class-c)")
	replaceWith(t, blocked, "not cdb")
	if !d.waitMetric(t, `tollgate_list_reloads_total{result="error"} 2`) {
		t.Fatal("the broken cdb file was not refused")
	}
	check("after a broken cdb file", "a@example.net", "other@example.org", "blocked (class-b)")

	tinycdbMake(t, blocked, "third@example.org 1\n")
	mdbLoadReplace(t, senders, "example.org\nclass-d\n")
	eventually("repaired", "a@example.org", "third@example.org", "blocked (class-d)")
	check("repaired", "a@example.net", "other@example.org", "unknown sender domain")
	if v := d.metricValue(t, `tollgate_lookup_errors_total{type="lmdb"}`); v != "0" {
		t.Errorf("lookup errors: %s", v)
	}
}
