package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/arc"
	"github.com/tollgate/tollgate/internal/lmdb"
)

var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// docExample is one YAML example printed in the documentation.
type docExample struct {
	doc  string // the file it is printed in
	line int    // the line of its ```yaml fence
	name string
	data []byte
}

// docExamples returns every YAML example of the documentation (README.md,
// docs/*.md, each package README) with the files they name under
// /etc/tollgate/ created in a temporary directory, so that they load as
// printed. The config fuzz target seeds from them too.
func docExamples(tb testing.TB, tmp string) []docExample {
	tb.Helper()
	docs, _ := filepath.Glob("../*/README.md")
	docs = append([]string{"../README.md"}, docs...)
	more, _ := filepath.Glob("../docs/*.md")
	docs = append(docs, more...)
	_, key, _, err := arc.GenerateKey("ed25519", 0)
	if err != nil {
		tb.Fatal(err)
	}
	for name, content := range map[string]string{"arc2026.key": string(key), "srs.secrets": "example-secret\n", "dcc-helo-map": "out1.example.org 192.0.2.10\n", "bmi-optins": "ceo@example.org: strict\n",
		"relay_domains": "# ours\nexample.net\n*.example.net\n", "relay_networks": "192.0.2.0/24\n!198.51.100.7 # retired\n198.51.100.0/24\n",
		"blocked_senders": "<>\n*@spam.example\n"} {
		if err := os.WriteFile(filepath.Join(tmp, name), []byte(content), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	cdbData, err := os.ReadFile("testdata/lists.cdb") // made by tinycdb, see listfile_test.go
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "blocked.cdb"), cdbData, 0o600); err != nil {
		tb.Fatal(err)
	}
	// The LMDB examples' database, made by mdb_load (see policy/lookup_test.go).
	mdbData, err := os.ReadFile("testdata/lists.mdb")
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "senders.mdb"), mdbData, 0o600); err != nil {
		tb.Fatal(err)
	}
	var out []docExample
	for _, doc := range docs {
		data, err := os.ReadFile(doc)
		if err != nil {
			tb.Fatal(err)
		}
		for i, m := range yamlBlock.FindAllSubmatchIndex(data, -1) {
			line := 1 + strings.Count(string(data[:m[0]]), "\n")
			example := strings.ReplaceAll(string(data[m[2]:m[3]]), "/etc/tollgate/", tmp+"/")
			out = append(out, docExample{doc: doc, line: line, name: fmt.Sprintf("%s example %d", doc, i+1), data: []byte(example)})
		}
	}
	return out
}

// onlyNoLMDB reports whether a build without cgo refused a configuration
// for its lmdb: items and lookups alone, as documented.
func onlyNoLMDB(err error) bool {
	var list ErrorList
	if haveLMDB || !errors.As(err, &list) {
		return false
	}
	for _, e := range list {
		if !strings.HasSuffix(e.Msg, lmdb.ErrNoLMDB.Error()) {
			return false
		}
	}
	return true
}

// Every YAML example in the documentation is a complete configuration that
// loads (in a build without cgo, one with LMDB gets the documented error).
func TestDocumentationExamplesLoad(t *testing.T) {
	examples := docExamples(t, t.TempDir())
	for _, ex := range examples {
		if _, err := Parse(ex.name, ex.data, testFeatures...); err != nil && !onlyNoLMDB(err) {
			t.Errorf("%s:%d: example does not load:\n%v", ex.doc, ex.line, err)
		}
	}
	if len(examples) < 5 { // guards against the pattern silently matching nothing
		t.Errorf("only %d YAML examples found", len(examples))
	}
	files, _ := filepath.Glob("../deploy/examples/*.yaml")
	if len(files) == 0 {
		t.Fatal("no deploy/examples/*.yaml")
	}
	for _, f := range files {
		if _, err := LoadFile(f, testFeatures...); err != nil {
			t.Errorf("%v", err)
		}
	}
}
