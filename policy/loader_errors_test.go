package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every loader error in one run, each at the line of the node it is about
// (issue 13, point 3).
func TestLoaderErrorsAllAtTheirLines(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "redis.pw")
	if err := os.WriteFile(pw, []byte("first\nsecond\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := `srs:
  domain: fwd.example.org
  secrets: [s3cret]
  hash_length: 40
  max_age: 12h
  database:
    redis:
      address: 127.0.0.1:6379
      password_file: ` + pw + `
dcc:
  address: "no such: thing"
  options: [bogus-word]
bmi:
  backend: {spamd: {address: 127.0.0.1:783}}
  rules:
    - {id: 1, when: {score_above: 5}, outcome: drop}
    - id: 2
      outcome: sideways
    - {id: 1, when: {score_above: 9}, outcome: deliver}
acl:
  rcpt:
    - accept: {}
`
	_, err := Parse("t.yaml", []byte(src), testFeatures...)
	if err == nil {
		t.Fatal("loaded")
	}
	got := err.Error()
	for _, want := range []string{
		"t.yaml:4: srs: hash_length 40: must be between",
		"t.yaml:5: srs: max_age 12h0m0s: must be whole days",
		"t.yaml:9: srs.database.redis.password_file: " + pw + " has 2 lines, want the password alone on one line",
		`t.yaml:11: dcc: address: "no such: thing"`,
		`t.yaml:12: dcc: option: unknown option word "bogus-word"`,
		`t.yaml:17: bmi.rules: bmi: rule 2 (#1 in the list): outcome "sideways"`,
		"t.yaml:19: bmi.rules: id 1 is already used by the rule at line 16",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "<nil>") {
		t.Errorf("a nil error printed:\n%s", got)
	}
	for _, line := range strings.Split(got, "\n") {
		if !strings.HasPrefix(line, "t.yaml:") {
			t.Errorf("a line without its file:line: %q", line)
		}
	}
}

// A section whose first problem stops it from being built still has its
// other problems reported in the same run.
func TestLoaderErrorsAfterMissingSecrets(t *testing.T) {
	_, err := Parse("t.yaml", []byte("srs:\n  domain: fwd.example.org\n  separator: '#'\n  hash_min: 1\n  database: {bolt: relative.db}\n"), testFeatures...)
	if err == nil {
		t.Fatal("loaded")
	}
	for _, want := range []string{
		"t.yaml:2: srs needs secrets_file (or secrets)",
		`t.yaml:3: srs.separator: "#" is not one of = + -`,
		"t.yaml:4: srs: hash_min 1: must be between",
		`t.yaml:5: srs.database.bolt: "relative.db" must be an absolute path`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}
