//go:build e2e

package policy

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// millionKeys is the size of the LMDB database of the bound.
const millionKeys = 1_000_000

// scratchDir is a temporary directory in memory when the machine has one:
// mdb_load commits every 100 records, and on a disk each commit's fsync
// makes a million keys take half a minute instead of a few seconds.
func scratchDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "tollgate-lmdb-")
	if err != nil {
		return tb.TempDir()
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// mdbLoadMillion writes an LMDB file of n keys host<i>.example.org with
// Debian's mdb_load from a generated dump (mdb_dump's print format; its
// header sets a map large enough, which -T input cannot), and reports how
// long that took. Made once per test binary run.
func mdbLoadMillion(tb testing.TB, dir string, n int) string {
	tb.Helper()
	db := filepath.Join(dir, "million.mdb")
	start := time.Now()
	cmd := exec.Command("mdb_load", "-n", db)
	in, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	out := &lockedOutput{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("mdb_load (lmdb-utils, scripts/install-test-deps.sh): %v", err)
	}
	w := bufio.NewWriterSize(in, 1<<20)
	fmt.Fprint(w, "VERSION=3\nformat=print\ntype=btree\nmapsize=536870912\nHEADER=END\n")
	for i := range n {
		fmt.Fprintf(w, " host%d.example.org\n value-%d\n", i, i)
	}
	fmt.Fprint(w, "DATA=END\n")
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		tb.Fatalf("mdb_load: %v\n%s", err, out.String())
	}
	os.Remove(db + "-lock")
	tb.Logf("mdb_load wrote %d keys in %v", n, time.Since(start).Round(time.Millisecond))
	return db
}

type lockedOutput struct{ b []byte }

func (o *lockedOutput) Write(p []byte) (int, error) { o.b = append(o.b, p...); return len(p), nil }
func (o *lockedOutput) String() string              { return string(o.b) }

// An LMDB list of a million keys is read through its memory map: opening it
// and looking keys up holds next to nothing on the Go heap, and every key
// mdb_load wrote is found.
func TestLMDBMillionKeys(t *testing.T) {
	db := mdbLoadMillion(t, scratchDir(t), millionKeys)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	d := &decoder{file: "t.yaml"}
	l := (&listCompiler{d: d}).domains(StrList{{Value: "lmdb:" + db, Line: 1}})
	if d.errs != nil {
		t.Fatal(d.errs)
	}
	for i := 0; i < millionKeys; i += 997 {
		if !l.Match(fmt.Sprintf("host%d.example.org", i)) {
			t.Fatalf("host%d.example.org not found", i)
		}
	}
	if !l.Match("host999999.example.org") || l.Match("host1000000.example.org") {
		t.Fatal("wrong answer at the end of the key range")
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	const bound = 1 << 20
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if held > bound {
		t.Errorf("the open database holds %d KiB of heap, more than %d KiB", held>>10, bound>>10)
	}
	t.Logf("a million-key LMDB list holds %d KiB of heap", held>>10)
	runtime.KeepAlive(l)
}

// BenchmarkLMDBLookup is the cost of one lookup in a million-key LMDB
// database through a domain list, for a key present and one absent.
func BenchmarkLMDBLookup(b *testing.B) {
	db := mdbLoadMillion(b, scratchDir(b), millionKeys)
	d := &decoder{file: "t.yaml"}
	l := (&listCompiler{d: d}).domains(StrList{{Value: "lmdb:" + db, Line: 1}})
	if d.errs != nil {
		b.Fatal(d.errs)
	}
	for _, tc := range []struct {
		name, domain string
		want         bool
	}{{"present", "host765432.example.org", true}, {"absent", "other.example.net", false}} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				if l.Match(tc.domain) != tc.want {
					b.Fatal("wrong answer")
				}
			}
		})
	}
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if !l.Match("host765432.example.org") {
					b.Fatal("wrong answer")
				}
			}
		})
	})
}

// The README's commands that make the databases of its examples, run as
// printed (with /etc/tollgate/ in a temporary directory) on the input it
// describes; the lists then find the keys.
func TestREADMEDatabaseCommands(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(string(readme)), " ") // commands may wrap
	for _, tc := range []struct {
		command, input, inputFile, list string
		keys                            []string
	}{
		{"mdb_load -n -T -f senders.txt ", "alice@example.com\n1\nexample.org\n1\n", "senders.txt", "lmdb:/etc/tollgate/senders.mdb",
			[]string{"alice@example.com", "example.org"}},
		{"cdb -c -m /etc/tollgate/blocked.cdb ", "192.0.2.7 1\nspam.example 1\n", "blocked.txt", "cdb:/etc/tollgate/blocked.cdb",
			[]string{"192.0.2.7", "spam.example"}},
	} {
		m := regexp.MustCompile("`(" + regexp.QuoteMeta(tc.command) + "[^`]*)`").FindStringSubmatch(text)
		if m == nil {
			t.Errorf("the README shows no `%s...` command", tc.command)
			continue
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, tc.inputFile), []byte(tc.input), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("sh", "-ec", strings.ReplaceAll(m[1], "/etc/tollgate/", dir+"/"))
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", m[1], err, out)
		}
		d := &decoder{file: "t.yaml"}
		l := (&listCompiler{d: d}).patterns(StrList{{Value: strings.ReplaceAll(tc.list, "/etc/tollgate/", dir+"/"), Line: 1}})
		if d.errs != nil {
			t.Fatalf("%s: %v", m[1], d.errs)
		}
		for _, k := range tc.keys {
			if !l.Match(k) {
				t.Errorf("%s: %q not found", m[1], k)
			}
		}
		if l.Match("absent.example") {
			t.Errorf("%s: an absent key matches", m[1])
		}
	}
}
