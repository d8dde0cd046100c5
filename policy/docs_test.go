package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/arc"
)

var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// Every YAML example in the documentation is a complete configuration that loads.
func TestDocumentationExamplesLoad(t *testing.T) {
	docs, _ := filepath.Glob("../*/README.md")
	docs = append([]string{"../README.md"}, docs...)
	more, _ := filepath.Glob("../docs/*.md")
	docs = append(docs, more...)
	// Examples name files under /etc/tollgate/; give them real ones.
	etc := t.TempDir()
	_, key, _, err := arc.GenerateKey("ed25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"arc2026.key": string(key), "srs.secrets": "example-secret\n", "dcc-helo-map": "out1.example.org 192.0.2.10\n", "bmi-optins": "ceo@example.org: strict\n"} {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for _, doc := range docs {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range yamlBlock.FindAllSubmatch(data, -1) {
			total++
			line := 1 + strings.Count(string(data[:strings.Index(string(data), string(m[0]))]), "\n")
			example := strings.ReplaceAll(string(m[1]), "/etc/tollgate/", etc+"/")
			if _, err := Parse(fmt.Sprintf("%s example %d", doc, i+1), []byte(example)); err != nil {
				t.Errorf("%s:%d: example does not load:\n%v", doc, line, err)
			}
		}
	}
	if total < 5 { // guards against the pattern silently matching nothing
		t.Errorf("only %d YAML examples found", total)
	}
	examples, _ := filepath.Glob("../deploy/examples/*.yaml")
	if len(examples) == 0 {
		t.Fatal("no deploy/examples/*.yaml")
	}
	for _, f := range examples {
		if _, err := LoadFile(f); err != nil {
			t.Errorf("%v", err)
		}
	}
}
