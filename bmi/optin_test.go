package bmi

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestSplitOptins(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"spam-high", []string{"spam-high"}},
		{" spam-high : virus:: x ", []string{"spam-high", "virus", "x"}},
		{":::", nil},
	} {
		if got := SplitOptins(c.in); !slices.Equal(got, c.want) {
			t.Errorf("SplitOptins(%q) = %q; want %q", c.in, got, c.want)
		}
	}
}

func TestLoadOptinFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "optin")
	os.WriteFile(p, []byte("# opt-ins\n\nAlice@Example.ORG: spam-high:virus\r\nbob@example.org:   spam-low\ncarol@example.org:\n"), 0o644)
	m, err := LoadOptinFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := LookupOptins(m, "ALICE@example.org"); !slices.Equal(got, []string{"spam-high", "virus"}) {
		t.Errorf("alice: %q", got)
	}
	if got := LookupOptins(m, "bob@example.org"); !slices.Equal(got, []string{"spam-low"}) {
		t.Errorf("bob: %q", got)
	}
	if got, ok := m["carol@example.org"]; !ok || len(got) != 0 {
		t.Errorf("carol: %q, %v", got, ok)
	}
	if _, ok := m["Alice@Example.ORG"]; ok {
		t.Error("keys are not lower-cased")
	}

	os.WriteFile(p, []byte("ok@example.org: a\nno colon here\n: empty\nbad key@x: y\nOK@example.org: dup\n"), 0o644)
	_, err = LoadOptinFile(p)
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 4 {
		t.Errorf("want 4 problems:\n%v", err)
	}
	for i, want := range []string{":2:", ":3:", ":4:", ":5:"} {
		if i < len(lines) && !strings.Contains(lines[i], p+want) {
			t.Errorf("%q: want file:line %s", lines[i], want)
		}
	}
	if _, err := LoadOptinFile(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("missing file")
	}
	if _, err := ParseOptins(strings.NewReader("a@b: "+strings.Repeat("x", maxOptinLine)), "long"); err == nil || !strings.Contains(err.Error(), "long:1:") {
		t.Errorf("long line: %v", err)
	}
}
