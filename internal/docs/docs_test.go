package docs

import (
	"os"
	"strings"
	"testing"
)

const repo = "../.."

// Every block that prints another program's configuration says which
// program (so the end-to-end tests find and apply it), and what it prints
// is what that program reads: Postfix takes "name = value   # note" as a
// value with "#" in it, so comments stand on lines of their own.
func TestSnippetsAreMarkedAndReadable(t *testing.T) {
	blocks, err := All(repo)
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) < 50 {
		t.Fatalf("only %d fenced blocks found in the repository's markdown", len(blocks))
	}
	counts := map[string]int{}
	for _, b := range blocks {
		counts[b.Info]++
		if !IsProgram(b.Info) {
			if kind := LooksLike(b.Text); kind != "" && b.Info != "yaml" && b.Info != "go" && b.Info != "sh" && b.Info != "abnf" {
				t.Errorf("%v: this block looks like %s lines: mark it ```%s so that the snippet tests apply it (or show it as prose)", b, kind, kind)
			}
			continue
		}
		switch b.Info {
		case MainCF:
			for _, p := range MainCFProblems(b.Text) {
				t.Errorf("%v: main.cf %s", b, p)
			}
		case MasterCF:
			for _, p := range MasterCFProblems(b.Text) {
				t.Errorf("%v: %s", b, p)
			}
		}
	}
	for _, kind := range []string{MainCF, MasterCF, PostfixMap, SendmailMC, Prometheus, Systemd} {
		if counts[kind] == 0 {
			t.Errorf("no ```%s block in the documentation: the detection has gone blind", kind)
		}
	}
	for _, f := range []string{"deploy/postfix/main.cf"} {
		b, err := os.ReadFile(repo + "/" + f)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range MainCFProblems(string(b)) {
			t.Errorf("%s: %s", f, p)
		}
	}
	b, err := os.ReadFile(repo + "/deploy/postfix/master.cf")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range MasterCFProblems(string(b)) {
		t.Errorf("deploy/postfix/master.cf: %s", p)
	}
}

func TestParse(t *testing.T) {
	md := "text\n<!-- snippet: quick (a note) -->\n```main.cf\na = b\n```\n\n1. item\n\n   ```text\n   # main.cf\n   x = y\n   ```\n"
	bs, err := Parse("x.md", []byte(md))
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 2 {
		t.Fatalf("%d blocks", len(bs))
	}
	if bs[0].Name != "quick" || bs[0].Info != MainCF || bs[0].Text != "a = b\n" || bs[0].Line != 3 {
		t.Errorf("first block %+v", bs[0])
	}
	if bs[1].Info != "text" || bs[1].Text != "# main.cf\nx = y\n" || bs[1].Name != "" {
		t.Errorf("second block %+v", bs[1])
	}
	if LooksLike(bs[1].Text) != MainCF {
		t.Errorf("an indented main.cf block in text is not recognised")
	}
	if _, err := Parse("y.md", []byte("```sh\nopen\n")); err == nil || !strings.Contains(err.Error(), "y.md:1") {
		t.Errorf("unclosed fence: %v", err)
	}
}

func TestMainCFProblems(t *testing.T) {
	for text, want := range map[string]int{
		"smtpd_milters = unix:/tollgate/tollgate.sock\n":                    0,
		"# a note\nsmtpd_milters = unix:/x\n":                               0,
		"smtpd_milters = unix:/x   # a note\n":                              1,
		"smtpd_milters = unix:/x,\n    inet:127.0.0.1:1 # b\n":              1,
		"virtual_alias_maps = hash:/etc/postfix/virtual\nnot a parameter\n": 1,
	} {
		if got := MainCFProblems(text); len(got) != want {
			t.Errorf("%q: %v, want %d problems", text, got, want)
		}
	}
	if got := Parameters("# c\na = 1\n  more\nb=2\n"); strings.Join(got, ",") != "a,b" {
		t.Errorf("Parameters = %v", got)
	}
}
