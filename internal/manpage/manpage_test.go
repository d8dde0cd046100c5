package manpage

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/policy"
)

var update = flag.Bool("update", false, "rewrite the committed manual pages from their sources")

const root = "../.."

// pages: source -> the committed page the Debian package installs.
var pages = map[string]string{
	"docs/man/tollgate.8.md":      "deploy/man/tollgate.8",
	"docs/man/tollgate.yaml.5.md": "deploy/man/tollgate.yaml.5",
}

// The committed pages are what their sources give today.
func TestManPagesUpToDate(t *testing.T) {
	for src, page := range pages {
		got, err := Generate(root, src)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(root, page)
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s is not what %s gives: go test ./internal/manpage -run TestManPages -update", page, src)
		}
	}
}

// yamlKeys lists the configuration's key names, from policy.Config's yaml
// tags: what the decoder accepts is what the page must explain.
func yamlKeys(t reflect.Type, seen map[reflect.Type]bool, out map[string]bool) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || seen[t] {
		return
	}
	seen[t] = true
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name != "" {
			out[name] = true
		}
		yamlKeys(f.Type, seen, out)
	}
}

// Every key of the configuration appears in tollgate.yaml(5).
func TestManPageHasEveryConfigKey(t *testing.T) {
	keys := map[string]bool{}
	yamlKeys(reflect.TypeOf(policy.Config{}), map[reflect.Type]bool{}, keys)
	if len(keys) < 40 {
		t.Fatalf("only %d keys found in policy.Config", len(keys))
	}
	b, err := os.ReadFile(filepath.Join(root, pages["docs/man/tollgate.yaml.5.md"]))
	if err != nil {
		t.Fatal(err)
	}
	page := strings.ReplaceAll(string(b), `\-`, "-")
	for k := range keys {
		if !regexp.MustCompile(`(^|[^a-z_])` + regexp.QuoteMeta(k) + `([^a-z_]|$)`).MatchString(page) {
			t.Errorf("tollgate.yaml(5) does not mention the key %q: document it in README.md's Configuration reference", k)
		}
	}
}

func TestInline(t *testing.T) {
	for in, want := range map[string]string{
		"`--config` *FILE*":          `\fB\-\-config\fR \fIFILE\fR`,
		"**bold** and `a*b*c`":       `\fBbold\fR and \fBa*b*c\fR`,
		"see [the guide](docs/x.md)": "see the guide",
		".starts with a dot":         `\&.starts with a dot`,
		`back\slash`:                 `back\eslash`,
	} {
		if got := inline(in); got != want {
			t.Errorf("inline(%q) = %q, want %q", in, got, want)
		}
	}
	if got := splitRow("| `a\\|b` | x \\| y | z |"); len(got) != 3 || got[0] != "`a|b`" || got[1] != "x | y" {
		t.Errorf("splitRow: %q", got)
	}
}
