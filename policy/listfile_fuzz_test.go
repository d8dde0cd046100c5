package policy

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

// FuzzListFile feeds arbitrary file contents to the list-file parser and
// compiles what it yields as every kind of list: no input may panic, every
// item is a trimmed, non-empty, non-comment line with its true line number,
// and every error names the file's line.
func FuzzListFile(f *testing.F) {
	for _, s := range []string{
		"# relay domains\nexample.org\n*.example.net\n!bad.example.com # retired\n",
		"192.0.2.0/24\r\n!198.51.100.7\n2001:db8::/32\n::ffff:192.0.2.1\n",
		"<>\npostmaster@*\n*@+local\n^.*\\.invalid$\n",
		"\n\n   \t\n#\n a#b \n",
		"file:/etc/x\n!\n!!x\n+\n+missing\n10.0.0.1/8\n",
		"lmdb:/nonexistent.mdb\n!cdb:/nonexistent.cdb\nlmdb:relative.mdb\ncdb:\nlmdb:/\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		lines := parseListFile(data)
		physical := bytes.Split(data, []byte("\n"))
		prev := 0
		items := make(StrList, 0, len(lines))
		for _, l := range lines {
			if l.line <= prev || l.line > len(physical) {
				t.Fatalf("line %d after %d (file has %d)", l.line, prev, len(physical))
			}
			prev = l.line
			if l.text == "" || l.text != strings.TrimSpace(l.text) || l.text[0] == '#' {
				t.Fatalf("line %d: item %q", l.line, l.text)
			}
			if !strings.Contains(string(physical[l.line-1]), l.text) {
				t.Fatalf("line %d: item %q is not on that line", l.line, l.text)
			}
			items = append(items, Str{Value: l.text, Line: l.line})
		}
		d := &decoder{file: "t.yaml"}
		c := &listCompiler{named: namedLists{"local": {{Value: "*", Line: 1}}}, d: d, where: "f:"}
		c.hosts(items).Match(netip.MustParseAddr("192.0.2.1"))
		c.domains(items).Match("a.example.org")
		c.addresses(items).Match("a@example.org")
		c.patterns(items).Match("alice")
		for _, e := range d.errs {
			if !strings.HasPrefix(e.Msg, "f:") {
				t.Fatalf("error without the file's line: %v", e)
			}
		}
	})
}
