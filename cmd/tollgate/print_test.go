package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/arc"
	"github.com/tollgate/tollgate/feature"
	"github.com/tollgate/tollgate/policy"
)

// printedSecrets are the files the configurations below name under
// /etc/tollgate/, written into the test's directory; the secrets must never
// appear in a printed configuration.
func printedSecrets(t *testing.T, dir string) {
	t.Helper()
	_, key, _, err := arc.GenerateKey("ed25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"arc2026.key": string(key), "dkim-rsa2026.key": string(key), "dkim-ed2026.key": string(key), "srs.secrets": "file-secret-do-not-print\n",
		"redis.password": "redis-password-do-not-print\n", "dcc-helo-map": "out1.example.org 192.0.2.10\n", "bmi-optins": "ceo@example.org: strict\n",
		"relay_domains": "example.net\n", "relay_networks": "192.0.2.0/24\n", "blocked_senders": "*@spam.example\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The list examples' cdb database: policy's, made by tinycdb.
	cdbData, err := os.ReadFile("../../policy/testdata/lists.cdb")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "blocked.cdb"), cdbData, 0o600); err != nil {
		t.Fatal(err)
	}
	// The LMDB examples' database, made by mdb_load (see policy/lookup_test.go).
	mdbData, err := os.ReadFile("../../policy/testdata/lists.mdb")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "senders.mdb"), mdbData, 0o600); err != nil {
		t.Fatal(err)
	}
}

// printTwice prints the effective configuration of src, loads what it
// printed and prints that again: both prints must be the same (the printed
// configuration loads, and nothing changes once the defaults are in).
func printTwice(t *testing.T, name, src, dir string) string {
	t.Helper()
	print := func(file string) string {
		p, err := policy.LoadFile(file, features...)
		if err != nil {
			t.Fatalf("%s: %s does not load: %v\n%s", name, file, err, must(os.ReadFile(file)))
		}
		var out, errOut strings.Builder
		if code := printEffective(p, &out, &errOut); code != 0 {
			t.Fatalf("%s: printEffective: exit %d: %s", name, code, errOut.String())
		}
		return out.String()
	}
	first := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(first, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	printed := print(first)
	again := filepath.Join(dir, "printed.yaml")
	if err := os.WriteFile(again, []byte(printed), 0o644); err != nil {
		t.Fatal(err)
	}
	if second := print(again); body(second) != body(printed) {
		t.Errorf("%s: printed twice, the effective configuration differs:\n%s\n---\n%s", name, printed, second)
	}
	for _, secret := range []string{"do-not-print", "inline-secret", "PRIVATE KEY"} {
		if strings.Contains(printed, secret) {
			t.Errorf("%s: a secret (%q) is printed:\n%s", name, secret, printed)
		}
	}
	return printed
}

func must(b []byte, _ error) string { return string(b) }

// Every feature prints its section with its defaults filled in: an option
// left out appears with its documented default, secrets do not appear.
func TestPrintFeatureDefaults(t *testing.T) {
	dir := t.TempDir()
	printedSecrets(t, dir)
	acl := "acl:\n  rcpt:\n    - accept: {}\n"
	cases := map[string]struct {
		section string
		want    []string
	}{
		"srs": {"srs:\n  domain: fwd.example.org\n  secrets_file: DIR/srs.secrets\n  secrets: [inline-secret]\n" +
			"  database:\n    redis: {address: 127.0.0.1:6379, password_file: DIR/redis.password}\n",
			[]string{"\n  max_age: 31d\n", "\n  hash_length: 6\n", "\n  secrets_file: DIR/srs.secrets\n", "\n  secrets: [<redacted>]\n",
				"\n      password_file: DIR/redis.password\n", "\n      timeout: 1s\n", "\n    use: long\n"}},
		"dcc":   {"dcc: {options: [grey-off]}\n", []string{"\n  address: /var/dcc/dccifd\n", "\n  timeout: 10s\n", "\n  local_user: local_part\n"}},
		"bmi":   {"bmi:\n  backend: {rspamd: {address: 127.0.0.1:11333}}\n  rules:\n    - {id: 1, when: {score_above: 5}}\n", []string{"\n      timeout: 30s\n", "\n      max_size: 20M\n", "\n    memory: 1M\n", "\n      outcome: deliver\n", "\n  on_error: deliver\n"}},
		"arc":   {"authserv_id: mx.example.org\narc:\n  sign: [{domain: example.org, selector: s1, key: DIR/arc2026.key, options: [timestamps, expire]}]\n", []string{"\n      options: [timestamps, expire=+2592000]\n", "\n  min_rsa_bits: 1024\n", "\nadd_authresults: true\n", "\n  oversign: [from]\n", "\ndns: {resolv_conf: /etc/resolv.conf, timeout: 5s, failure_ttl: 5s, cache_size: 4096}\n", "\n      key: DIR/arc2026.key\n"}},
		"dmarc": {"authserv_id: mx.example.org\ndmarc: {trusted_arc_sealers: [fwd.example.net]}\n", []string{"\n  timeout: 10s\n", "\n  trusted_arc_sealers: [fwd.example.net]\n"}},
		"dkim_sign": {"dkim_sign:\n  keys: [{domain: example.org, selector: s1, key: DIR/arc2026.key}]\n", []string{"\n  canonicalization: relaxed/relaxed\n",
			"\n  timestamps: true\n", "\n  headers: [From, Sender, Reply-To, ", "\n      key: DIR/arc2026.key\n"}},
		"dkim":                    {"authserv_id: mx.example.org\ndkim: {max_signatures: 3}\n", []string{"\n  max_signatures: 3\n", "\n  timeout: 10s\n", "\n  min_rsa_bits: 1024\n"}},
		"spf":                     {"authserv_id: mx.example.org\nspf: {received_header: true}\n", []string{"\n  timeout: 20s\n", "\n  helo: false\n", "\n  received_header: true\n"}},
		"iprev":                   {"authserv_id: mx.example.org\niprev: {}\n", []string{"\n  timeout: 10s\n"}},
		"arc oversigning nothing": {"authserv_id: mx.example.org\narc: {oversign: []}\n", []string{"\n  oversign: []\n", "\n  headers: [from, sender, "}},
	}
	for _, spec := range features {
		if _, ok := spec.(feature.Defaulter); !ok {
			t.Errorf("feature %s has no feature.Defaulter: check --print cannot fill in its defaults", spec.Name())
		}
		if _, ok := cases[spec.Name()]; !ok {
			t.Errorf("feature %s has no case here", spec.Name())
		}
	}
	for name, c := range cases {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			printed := printTwice(t, name, strings.ReplaceAll(c.section, "DIR", dir)+acl, t.TempDir())
			for _, want := range c.want {
				if want = strings.ReplaceAll(want, "DIR", dir); !strings.Contains(printed, want) {
					t.Errorf("%s: no %q in\n%s", name, want, printed)
				}
			}
		})
	}
}

var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// The configurations the README and the guide print, and the packaged
// example, print with their defaults filled in, load again, and print the same.
func TestPrintDocumentedConfigurations(t *testing.T) {
	dir := t.TempDir()
	printedSecrets(t, dir)
	example, err := os.ReadFile("../../deploy/examples/tollgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	configs := map[string]string{"deploy/examples/tollgate.yaml": string(example)}
	for _, doc := range []string{"../../README.md", "../../docs/guide.md"} {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range yamlBlock.FindAllSubmatch(data, -1) {
			configs[fmt.Sprintf("%s example %d", doc, i+1)] = string(m[1])
		}
	}
	sections := map[string]bool{}
	for name, src := range configs {
		src = strings.ReplaceAll(src, "/etc/tollgate/", dir+"/")
		printed := printTwice(t, name, src, t.TempDir())
		for _, spec := range features {
			if strings.Contains(printed, "\n"+spec.Name()+":\n") {
				sections[spec.Name()] = true
			}
		}
	}
	for _, spec := range features {
		if !sections[spec.Name()] {
			t.Errorf("no documented configuration has a %s: section", spec.Name())
		}
	}
}

// The README's example of check --print is what it prints for the
// configuration shown before it.
func TestPrintREADMEExample(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := yamlBlock.FindAllSubmatch(data, -1)
	for i := 1; i < len(blocks); i++ {
		shown := string(blocks[i][1])
		if !strings.HasPrefix(shown, "# The effective configuration of /etc/tollgate/tollgate.yaml") {
			continue
		}
		dir := t.TempDir()
		printedSecrets(t, dir)
		file := filepath.Join(dir, "tollgate.yaml")
		if err := os.WriteFile(file, []byte(strings.ReplaceAll(string(blocks[i-1][1]), "/etc/tollgate/", dir+"/")), 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := policy.LoadFile(file, features...)
		if err != nil {
			t.Fatal(err)
		}
		var out, errOut strings.Builder
		if code := printEffective(p, &out, &errOut); code != 0 {
			t.Fatalf("printEffective: exit %d: %s", code, errOut.String())
		}
		if got := strings.ReplaceAll(out.String(), dir+"/", "/etc/tollgate/"); got != shown {
			t.Errorf("the README shows\n%s\ncheck --print writes\n%s", shown, got)
		}
		return
	}
	t.Fatal("the README shows no output of tollgate check --print")
}
