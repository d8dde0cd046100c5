package policy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/arc"
)

func testKey(t *testing.T) string {
	t.Helper()
	_, pemBytes, _, err := arc.GenerateKey("ed25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "arc.key")
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The modules run in the order their specs declare, whatever order the
// features are listed in: ARC last (it seals what the others changed), SRS
// before the features that judge a recipient.
func TestFeatureModuleOrder(t *testing.T) {
	dir := t.TempDir()
	secrets := filepath.Join(dir, "s")
	os.WriteFile(secrets, []byte("k\n"), 0o600)
	reversed := slices.Clone(testFeatures)
	slices.Reverse(reversed)
	p, err := Parse("t.yaml", []byte(`
authserv_id: mx.example.org
arc: {sign: [{domain: example.org, selector: s, key: `+testKey(t)+`}]}
srs: {domain: fwd.example.org, secrets_file: `+secrets+`}
dcc: {address: /nonexistent}
bmi: {backend: {spamd: {address: "127.0.0.1:783"}}}
`), reversed...)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := NewEnv(nil, newRegistry()).Runtime(p)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range rt.Modules() {
		names = append(names, m.Name())
	}
	if strings.Join(names, " ") != "srs dcc bmi arc" {
		t.Errorf("module order %v: ARC must finalize (seal) after every module that changes headers", names)
	}
}
