package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/milter"
)

// Every list kind takes file: items with the kind's own item syntax, and a
// file's items take the place of the item that names it (order and
// negation as if written inline).
func TestFileItemsInEveryListKind(t *testing.T) {
	dir := t.TempDir()
	hosts := writeFile(t, dir, "hosts", "# our networks\n\n192.0.2.0/24\n!198.51.100.7   # the old relay\n198.51.100.0/24\n::ffff:203.0.113.9\n")
	domains := writeFile(t, dir, "domains", "example.org\r\n*.example.net\n!bad.example.com\n*.example.com\n^mx[0-9]+\\.example\\.test$\n+extra\n")
	addresses := writeFile(t, dir, "addresses", "<>\npostmaster@*\n!spam@example.org\n*@example.org\n")
	patterns := writeFile(t, dir, "patterns", "alice\nrelay-*\n")
	negLast := writeFile(t, dir, "neglast", "!example.org\n")
	named := "lists:\n  extra: [extra.example]\n"

	runMatchCases(t, "hosts", "", []matchCase{{
		list:    fmt.Sprintf("[file:%s]", hosts),
		match:   []string{"192.0.2.1", "198.51.100.8", "203.0.113.9", "::ffff:192.0.2.5"},
		noMatch: []string{"198.51.100.7", "203.0.113.8", "2001:db8::1"},
	}})
	runMatchCases(t, "domains", named, []matchCase{{
		list:    fmt.Sprintf("[file:%s]", domains),
		match:   []string{"example.org", "Example.ORG.", "a.example.net", "ok.example.com", "mx12.example.test", "extra.example"},
		noMatch: []string{"bad.example.com", "example.net", "mx.example.test", "other.test"},
	}, {
		// The last item read is negated: what no item matches is in the list.
		list:    fmt.Sprintf("[file:%s]", negLast),
		match:   []string{"example.net"},
		noMatch: []string{"example.org"},
	}, {
		// Runs of exact items become sets; a negated item between them
		// still decides before the later run.
		list:    "[x.example, x.example, \"!y.example\", \"!w.example\", y.example, \"*.w.example\", w.example, z.example]",
		match:   []string{"x.example", "z.example", "a.w.example"},
		noMatch: []string{"y.example", "w.example", "v.example"},
	}, {
		// Inline items around a file keep their places.
		list:    fmt.Sprintf("[\"!a.example.net\", \"file:%s\", other.test]", domains),
		match:   []string{"b.example.net", "other.test"},
		noMatch: []string{"a.example.net"},
	}})
	runMatchCases(t, "addresses", "", []matchCase{{
		list:    fmt.Sprintf("[file:%s]", addresses),
		match:   []string{"", "postmaster@anywhere.test", "bob@example.org"},
		noMatch: []string{"spam@example.org", "bob@example.net"},
	}})
	runMatchCases(t, "patterns", "", []matchCase{{
		list:    fmt.Sprintf("[file:%s]", patterns),
		match:   []string{"Alice", "relay-eu"},
		noMatch: []string{"bob", ""},
	}})
}

// check names the YAML line of the item and, for a bad item, the file's
// own line.
func TestFileItemErrors(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad", "192.0.2.1\n\n10.0.0.1/8\nmail.example.org\n")
	nested := writeFile(t, dir, "nested", "file:"+bad+"\n")
	runListErrorCases(t, "hosts", []listErrorCase{
		{"bad lines", "list:\n  - 192.0.2.9\n  - file:" + bad + "\n", []string{
			"t.yaml:3: " + bad + ":3: 10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?",
			"t.yaml:3: " + bad + `:4: host names are not supported in host lists: "mail.example.org"`,
		}},
		{"missing", "list: [file:" + dir + "/none]\n", []string{
			"t.yaml:1: file:" + dir + "/none: no such file or directory",
		}},
		{"relative", "list: [file:relay_hosts]\n", []string{
			"t.yaml:1: file:relay_hosts: the path must be absolute (the daemon's working directory is not the configuration's)",
		}},
		{"directory", "list: [file:" + dir + "]\n", []string{
			"t.yaml:1: file:" + dir + ": not a regular file",
		}},
		{"negated", "list: [\"!file:" + bad + "\"]\n", []string{
			`t.yaml:1: "!file:` + bad + `": a file item cannot be negated; write "!" before the items inside the file`,
		}},
		{"nested", "list: [file:" + nested + "]\n", []string{
			"t.yaml:1: " + nested + `:1: "file:` + bad + `": a file cannot name another file`,
		}},
		{"named list inside a file", "list: [file:" + writeFile(t, dir, "named", "+nets\n") + "]\nlists:\n  nets: [\"300.1.2.3\"]\n", []string{
			`t.yaml:3: invalid IP address "300.1.2.3"`,
		}},
	})
	if os.Geteuid() != 0 { // root reads any file
		unreadable := writeFile(t, dir, "unreadable", "192.0.2.1\n")
		if err := os.Chmod(unreadable, 0); err != nil {
			t.Fatal(err)
		}
		runListErrorCases(t, "hosts", []listErrorCase{{"unreadable", "list: [file:" + unreadable + "]\n", []string{
			"t.yaml:1: file:" + unreadable + ": permission denied",
		}}})
	}
}

func TestParseListFile(t *testing.T) {
	got := parseListFile([]byte("# head\n  a.example  \n\nb#c\nd # note\n\t#indented comment\ne\r\n!f\t# tab note"))
	want := []listFileLine{{2, "a.example"}, {4, "b#c"}, {5, "d"}, {7, "e"}, {8, "!f"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// A load reads the file as it is then: a reload (which loads the
// configuration again) sees an edit, and an edit that breaks the file makes
// the load fail, so the daemon refuses the reload and keeps the policy it has.
func TestFileItemsReadAtEachLoad(t *testing.T) {
	dir := t.TempDir()
	relay := writeFile(t, dir, "relay_domains", "example.org\n")
	config := fmt.Sprintf("lists:\n  relay: [file:%s]\nacl:\n  rcpt:\n    - accept: {recipient_domains: [+relay]}\n    - deny: {}\n", relay)
	verdict := func(p *Policy, rcpt string) milter.Verdict {
		d, _, _ := probe{sender: "a@example.net", rcpt: rcpt}.run(t, p, milter.StageRcpt)
		return d.Verdict
	}
	first := mustParse(t, config)
	if verdict(first, "x@example.org") != milter.Accept || verdict(first, "x@example.net") != milter.Reject {
		t.Fatal("first load: wrong verdicts")
	}
	writeFile(t, dir, "relay_domains", "example.net\n")
	second := mustParse(t, config)
	if verdict(second, "x@example.org") != milter.Reject || verdict(second, "x@example.net") != milter.Accept {
		t.Error("second load does not use the edited file")
	}
	if verdict(first, "x@example.org") != milter.Accept {
		t.Error("the first policy changed with the file")
	}
	writeFile(t, dir, "relay_domains", "example.net\nexa*mple.org\n")
	_, err := Parse("t.yaml", []byte(config), testFeatures...)
	if err == nil || !strings.Contains(err.Error(), "t.yaml:2: "+relay+`:2: "exa*mple.org"`) {
		t.Errorf("broken file: got %v", err)
	}
	if err := os.Remove(relay); err != nil {
		t.Fatal(err)
	}
	if _, err := Parse("t.yaml", []byte(config), testFeatures...); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("removed file: got %v", err)
	}
}

// testdata/lists.cdb was made by Debian's tinycdb:
// cdb -c -m testdata/lists.cdb testdata/lists.txt
func TestCDBItemsInEveryListKind(t *testing.T) {
	db, err := filepath.Abs("testdata/lists.cdb")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	databaseItemsInEveryListKind(t, "cdb", db, nil)
	notCDB := writeFile(t, dir, "not.cdb", "example.org\n")
	runListErrorCases(t, "domains", []listErrorCase{
		{"missing", "list: [\"cdb:" + dir + "/none.cdb\"]\n", []string{
			"t.yaml:1: cdb:" + dir + "/none.cdb: no such file or directory",
		}},
		{"not cdb", "list: [\"cdb:" + notCDB + "\"]\n", []string{
			"t.yaml:1: cdb:" + notCDB + ": not a cdb file: shorter than its 2048-byte header",
		}},
		{"relative", "list: [\"cdb:lists.cdb\"]\n", []string{
			"t.yaml:1: cdb:lists.cdb: the path must be absolute (the daemon's working directory is not the configuration's)",
		}},
	})
}

// databaseItemsInEveryListKind runs the match cases every key-lookup
// database item (cdb:, lmdb:) must pass, over testdata's lists.txt loaded
// into db: host lists by exact IP (also inside a file: list), domain lists
// (negated), address and pattern lists; extraDomains are domains the kind
// must match besides.
func databaseItemsInEveryListKind(t *testing.T, kind, db string, extraDomains []string) {
	t.Helper()
	inFile := writeFile(t, t.TempDir(), "with-"+kind, "!198.51.100.1\n"+kind+":"+db+"\n")
	runMatchCases(t, "hosts", "", []matchCase{{
		list:    "[\"" + kind + ":" + db + "\"]",
		match:   []string{"192.0.2.7", "::ffff:192.0.2.7", "2001:db8::25", "2001:0db8:0::25"},
		noMatch: []string{"192.0.2.8", "2001:db8::26", ""},
	}, {
		list:    "[file:" + inFile + "]",
		match:   []string{"192.0.2.7"},
		noMatch: []string{"198.51.100.1"},
	}})
	runMatchCases(t, "domains", "", []matchCase{{
		list:    "[\"!" + kind + ":" + db + "\", \"*\"]",
		match:   append([]string{"example.net", "sub.example.org"}, extraDomains...),
		noMatch: []string{"example.org", "Example.ORG.", "relay.example.net"},
	}})
	runMatchCases(t, "addresses", "", []matchCase{{
		list:    "[\"" + kind + ":" + db + "\"]",
		match:   []string{"alice@example.com", "Alice@Example.com"},
		noMatch: []string{"bob@example.com", "", "alice@example.com."},
	}})
	runMatchCases(t, "patterns", "", []matchCase{{
		list:    "[\"" + kind + ":" + db + "\"]",
		match:   []string{"bob", "BOB"},
		noMatch: []string{"alice", ""},
	}})
}

// A 100,000-line file list of exact domains holds a few megabytes (the
// strings and one map), not a closure per line.
func TestFileListMemoryBound(t *testing.T) {
	var sb strings.Builder
	for i := range 100_000 {
		fmt.Fprintf(&sb, "host%d.example.org\n", i)
	}
	path := writeFile(t, t.TempDir(), "domains", sb.String())
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	d := &decoder{file: "t.yaml"}
	l := (&listCompiler{d: d}).domains(StrList{{Value: "file:" + path, Line: 1}})
	runtime.GC()
	runtime.ReadMemStats(&after)
	if d.errs != nil || !l.Match("host99999.example.org") {
		t.Fatal("list not compiled")
	}
	const bound = 16 << 20
	if held := int64(after.HeapAlloc) - int64(before.HeapAlloc); held > bound {
		t.Errorf("the list holds %d MiB, more than %d MiB", held>>20, bound>>20)
	}
	t.Logf("100,000 lines hold %d KiB", (int64(after.HeapAlloc)-int64(before.HeapAlloc))>>10)
	runtime.KeepAlive(l)
}
