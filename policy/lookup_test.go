//go:build cgo

package policy

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	lmdbgo "github.com/PowerDNS/lmdb-go/lmdb"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tollgate/tollgate/milter"
)

// testdata/lists.mdb was made by Debian's mdb_load (lmdb-utils):
// mdb_load -n -T -f testdata/lists-lmdb.txt testdata/lists.mdb
func testMDB(t testing.TB) string {
	t.Helper()
	db, err := filepath.Abs("testdata/lists.mdb")
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestLMDBItemsInEveryListKind(t *testing.T) {
	db := testMDB(t)
	dir := t.TempDir()
	databaseItemsInEveryListKind(t, "lmdb", db, []string{"mixed.case.example"})
	notLMDB := writeFile(t, dir, "not.mdb", strings.Repeat("example.org\n", 1000))
	runListErrorCases(t, "domains", []listErrorCase{
		{"missing", "list: [\"lmdb:" + dir + "/none.mdb\"]\n", []string{
			"t.yaml:1: lmdb:" + dir + "/none.mdb: no such file or directory",
		}},
		{"not lmdb", "list: [\"lmdb:" + notLMDB + "\"]\n", []string{
			"t.yaml:1: lmdb:" + notLMDB + ": not an LMDB database (or one of another LMDB version)",
		}},
		{"relative", "list: [\"lmdb:lists.mdb\"]\n", []string{
			"t.yaml:1: lmdb:lists.mdb: the path must be absolute (the daemon's working directory is not the configuration's)",
		}},
		{"in a file", "list: [file:" + writeFile(t, dir, "bad-inside", "# x\nlmdb:"+notLMDB+"\n") + "]\n", []string{
			"t.yaml:1: " + dir + "/bad-inside:2: lmdb:" + notLMDB + ": not an LMDB database (or one of another LMDB version)",
		}},
	})
}

func lookupPolicy(t *testing.T, message string) (*Policy, error) {
	t.Helper()
	return Parse("t.yaml", []byte(fmt.Sprintf("acl:\n  rcpt:\n    - deny: {message: %q}\n", message)), testFeatures...)
}

func TestLookupExpansion(t *testing.T) {
	mdb := testMDB(t)
	cdbPath, err := filepath.Abs("testdata/lists.cdb")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ message, sender, want string }{
		{"550 [${lookup{$sender_address_domain}lmdb{" + mdb + "}}]", "a@Example.ORG", "[relay via mx1]"},
		{"550 [${lookup{$sender_address_domain}lmdb{" + mdb + "}}]", "a@example.net", "[]"},
		{"550 [${lookup{$sender_address}lmdb{" + mdb + "}}]", "alice@example.com", "[sales team]"},
		// Keys are used as expanded, as in Exim: case counts.
		{"550 ${lookup{Mixed.Case.example}lmdb{" + mdb + "}}/${lookup{mixed.case.example}lmdb{" + mdb + "}}", "", "kept as written/"},
		{"550 ${lookup{${sender_address_domain}}cdb{" + cdbPath + "}}", "x@example.org", "1"},
		{"550 ${lookup{x${lookup{$sender_address_domain}cdb{" + cdbPath + "}}}cdb{" + cdbPath + "}}.", "x@example.org", "."},
		{"550 $${lookup{a}lmdb{" + mdb + "}}", "", "${lookup{a}lmdb{" + mdb + "}}"},
	} {
		p, err := lookupPolicy(t, tc.message)
		if err != nil {
			t.Errorf("%s: %v", tc.message, err)
			continue
		}
		d, _, _ := probe{sender: tc.sender, rcpt: "r@example.org"}.run(t, p, milter.StageRcpt)
		if d.Reply.Text != tc.want {
			t.Errorf("%s with <%s>: %q, want %q", tc.message, tc.sender, d.Reply.Text, tc.want)
		}
	}
}

func TestLookupExpansionErrors(t *testing.T) {
	mdb := testMDB(t)
	dir := t.TempDir()
	for _, tc := range []struct{ message, want string }{
		{"550 ${lookup{$domain}lmdb{" + dir + "/none.mdb}}", "t.yaml:3: message: lmdb:" + dir + "/none.mdb: no such file or directory"},
		{"550 ${lookup{$domain}lmdb{lists.mdb}}", "t.yaml:3: message: lmdb:lists.mdb: the path must be absolute"},
		{"550 ${lookup{$domain}dbm{" + mdb + "}}", `t.yaml:3: message: "dbm" is not a lookup type (cdb, lmdb)`},
		{"550 ${lookup{$domain}lmdb{$mdb}}", `t.yaml:3: message: the path of a lookup must be written out, without variables: "$mdb"`},
		{"550 ${lookup{$domain", "t.yaml:3: message: unclosed key in"},
		{"550 ${lookup{$domain}lmdb{" + mdb + "}", "t.yaml:3: message: malformed lookup in"},
		{"550 ${lookup{$domain}lmdb}", "t.yaml:3: message: malformed lookup in"},
		{"550 ${lookup{$nosuch}lmdb{" + mdb + "}}", "t.yaml:3: message: unknown variable $nosuch"},
	} {
		_, err := lookupPolicy(t, tc.message)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %s", tc.message, err, tc.want)
		}
	}
}

// A lookup that fails at run time (here: the database was closed under it)
// takes the key as absent, counts it and says so in the log.
func TestLookupFailureIsCountedAndLogged(t *testing.T) {
	mdb := testMDB(t)
	p, err := Parse("t.yaml", []byte(fmt.Sprintf(`lists:
  friends: ["lmdb:%s"]
acl:
  rcpt:
    - accept: {hosts: [+friends]}
    - deny: {message: "550 [${lookup{$sender_address_domain}lmdb{%s}}]"}
`, mdb, mdb)), testFeatures...)
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	metrics := milter.NewMetrics(prometheus.NewRegistry())
	env := &Env{Log: slog.New(slog.NewTextHandler(&logs, nil)), Metrics: metrics, registry: prometheus.NewRegistry()}
	rt, err := env.Runtime(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.lookups) != 1 {
		t.Fatalf("%d databases opened; the list and the lookup share one", len(p.lookups))
	}
	if err := p.lookups[0].close(); err != nil {
		t.Fatal(err)
	}
	s := &milter.Session{Vars: map[string]string{}}
	s.Identity.ClientAddr = netip.MustParseAddr("192.0.2.7")
	tx := &milter.Txn{Session: s, Sender: "a@example.org"}
	r := &milter.Recipient{Addr: "r@example.org"}
	tx.Rcpts = append(tx.Rcpts, r)
	d, err := rt.Evaluate(t.Context(), milter.StageRcpt, s, tx, r)
	if err != nil {
		t.Fatal(err)
	}
	if d.Verdict != milter.Reject || d.Reply.Text != "[]" {
		t.Errorf("decision %v %q; want the host not found and an empty lookup", d.Verdict, d.Reply.Text)
	}
	if n := testutil.ToFloat64(metrics.LookupErrors.WithLabelValues("lmdb")); n != 2 {
		t.Errorf("tollgate_lookup_errors_total{type=lmdb} = %v, want 2", n)
	}
	if !strings.Contains(logs.String(), "lookup failed; the key is taken as absent") || !strings.Contains(logs.String(), "lmdb:"+mdb+": lmdb: the database is closed") {
		t.Errorf("log: %s", logs.String())
	}
}

// The watcher's view: Changed names a file that was edited, replaced by a
// rename or removed; Reread builds the policy again from the same
// configuration with the files as they are now, and refuses a broken file.
func TestChangedAndReread(t *testing.T) {
	dir := t.TempDir()
	relay := writeFile(t, dir, "relay_domains", "example.org\n")
	mdb := filepath.Join(dir, "senders.mdb")
	writeLMDB(t, mdb, "known.example", "yes")
	config := fmt.Sprintf(`lists:
  relay: [file:%s]
acl:
  rcpt:
    - deny: {recipient_domains: ["!+relay"], message: "550 relay denied"}
    - deny: {message: "550 [${lookup{$sender_address_domain}lmdb{%s}}]"}
`, relay, mdb)
	cfgPath := writeFile(t, dir, "tollgate.yaml", config)
	p, err := LoadFile(cfgPath, testFeatures...)
	if err != nil {
		t.Fatal(err)
	}
	reply := func(p *Policy, sender, rcpt string) string {
		d, _, _ := probe{sender: sender, rcpt: rcpt}.run(t, p, milter.StageRcpt)
		return d.Reply.Text
	}
	if changed, _ := p.Changed(); changed != nil {
		t.Fatalf("nothing changed, Changed = %v", changed.Paths())
	}
	if got := reply(p, "a@known.example", "r@example.org"); got != "[yes]" {
		t.Fatalf("first load: %q", got)
	}
	// An edit of the configuration itself is not taken: only SIGHUP reads it.
	writeFile(t, dir, "tollgate.yaml", "acl: {rcpt: [{accept: {}}]}\n")

	writeFile(t, dir, "relay_domains", "example.org\nexample.net\n")
	writeLMDB(t, mdb+".tmp", "known.example", "updated")
	if err := os.Rename(mdb+".tmp", mdb); err != nil {
		t.Fatal(err)
	}
	changed, now := p.Changed()
	if got := changed.Paths(); len(got) != 2 || got[0] != relay || got[1] != mdb {
		t.Fatalf("Changed = %v; want the list file and the database", got)
	}
	q, err := p.Reread()
	if err != nil {
		t.Fatal(err)
	}
	if got := reply(q, "a@known.example", "r@example.net"); got != "[updated]" {
		t.Errorf("after the change: %q", got)
	}
	if got := reply(p, "a@known.example", "r@example.net"); got != "relay denied" {
		t.Errorf("the old policy changed with its files: %q", got)
	}
	if c, _ := q.Changed(); c != nil {
		t.Errorf("the new policy sees changes: %v", c.Paths())
	}

	writeFile(t, dir, "relay_domains", "example.org\nexa*mple.net\n")
	changed, again := q.Changed()
	if len(changed) != 1 || again.Equal(now) {
		t.Fatalf("a broken edit is not seen: %v", changed.Paths())
	}
	if _, err := q.Reread(); err == nil || !strings.Contains(err.Error(), relay+`:2: "exa*mple.net"`) {
		t.Errorf("broken file: %v", err)
	}
	if err := os.Remove(mdb); err != nil {
		t.Fatal(err)
	}
	if changed, _ := q.Changed(); len(changed) != 2 {
		t.Errorf("a removed database is not a change: %v", changed.Paths())
	}
	// The policy in use still answers from the database it opened.
	if got := reply(q, "a@known.example", "r@example.net"); got != "[updated]" {
		t.Errorf("after removal: %q", got)
	}
}

// writeLMDB makes an LMDB file (no subdirectory, as mdb_load -n does)
// with lmdb-go's writer; the e2e tests use Debian's mdb_load.
func writeLMDB(t testing.TB, path string, pairs ...string) {
	t.Helper()
	env, err := lmdbgo.NewEnv()
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	if err := env.Open(path, lmdbgo.NoSubdir, 0o644); err != nil {
		t.Fatal(err)
	}
	err = env.Update(func(txn *lmdbgo.Txn) error {
		dbi, err := txn.OpenRoot(0)
		for i := 0; err == nil && i+1 < len(pairs); i += 2 {
			err = txn.Put(dbi, []byte(pairs[i]), []byte(pairs[i+1]), 0)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path + "-lock")
}

const haveLMDB = true
