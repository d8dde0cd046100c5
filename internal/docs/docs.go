// Package docs reads the fenced blocks of the repository's markdown files, so
// that tests can apply every snippet the documentation prints for another
// program (Postfix, Sendmail, nginx, systemd, Prometheus) exactly as printed.
//
// A block is marked for its program by the fence's info string:
//
//	```main.cf        lines for /etc/postfix/main.cf
//	```master.cf      lines for /etc/postfix/master.cf
//	```postfix-map    a Postfix lookup table source file (hash:, regexp:)
//	```sendmail.mc    lines for Sendmail's sendmail.mc
//	```nginx.conf     nginx configuration
//	```systemd        a systemd unit or drop-in
//	```prometheus.yml Prometheus configuration
//
// An HTML comment on the line before the fence, <!-- snippet: NAME -->, names
// a block so that a test can find the one it follows (a guide's setup).
package docs

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Program kinds: the info strings that mark a block for another program.
const (
	MainCF     = "main.cf"
	MasterCF   = "master.cf"
	PostfixMap = "postfix-map"
	SendmailMC = "sendmail.mc"
	NginxConf  = "nginx.conf"
	Systemd    = "systemd"
	Prometheus = "prometheus.yml"
)

// Programs are the info strings of blocks that tests apply to another program.
var Programs = []string{MainCF, MasterCF, PostfixMap, SendmailMC, NginxConf, Systemd, Prometheus}

// IsProgram reports whether info marks a block for another program.
func IsProgram(info string) bool {
	for _, p := range Programs {
		if info == p {
			return true
		}
	}
	return false
}

// Block is one fenced block of a markdown file.
type Block struct {
	File string // path relative to the repository root, with slashes
	Line int    // line of the opening fence, 1-based
	Info string // the fence's info string: "yaml", "main.cf", "" ...
	Name string // from <!-- snippet: NAME --> on the line before the fence
	Text string // the content, lines without the fence's indentation, each ending in "\n"
}

func (b Block) String() string { return fmt.Sprintf("%s:%d", b.File, b.Line) }

var snippetName = regexp.MustCompile(`^\s*<!--\s*snippet:\s*(\S+)(\s[^>]*)?-->\s*$`)

// Parse reads the fenced blocks of one markdown file's content.
func Parse(file string, data []byte) ([]Block, error) {
	var blocks []Block
	var cur *Block
	var indent, fence, prev string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimLeft(line, " ")
		if cur == nil {
			if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
				indent = line[:len(line)-len(trimmed)]
				fence = trimmed[:3]
				cur = &Block{File: file, Line: n, Info: strings.TrimSpace(trimmed[3:])}
				if m := snippetName.FindStringSubmatch(prev); m != nil {
					cur.Name = m[1]
				}
			}
			prev = line
			continue
		}
		if strings.HasPrefix(trimmed, fence) && strings.TrimSpace(trimmed[3:]) == "" {
			blocks = append(blocks, *cur)
			cur = nil
			prev = line
			continue
		}
		cur.Text += strings.TrimPrefix(line, indent) + "\n"
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("docs: %s: %w", file, err)
	}
	if cur != nil {
		return nil, fmt.Errorf("docs: %s:%d: fence not closed", file, cur.Line)
	}
	return blocks, nil
}

// All reads every markdown file under root (the repository), except test
// data, which keeps its upstream form.
func All(root string) ([]Block, error) {
	var blocks []Block
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".md") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("docs: %w", err)
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return fmt.Errorf("docs: %w", err)
		}
		bs, err := Parse(filepath.ToSlash(rel), data)
		if err != nil {
			return err
		}
		blocks = append(blocks, bs...)
		return nil
	})
	return blocks, err
}

// Named returns the block named name (<!-- snippet: name -->) in blocks.
func Named(blocks []Block, name string) (Block, error) {
	var found []Block
	for _, b := range blocks {
		if b.Name == name {
			found = append(found, b)
		}
	}
	switch len(found) {
	case 0:
		return Block{}, fmt.Errorf("docs: no block named %q", name)
	case 1:
		return found[0], nil
	}
	return Block{}, fmt.Errorf("docs: %d blocks named %q (%v, %v)", len(found), name, found[0], found[1])
}

// Looks for the shape of another program's configuration in a block that is
// not marked for one: the reason a block must be marked.
var unmarkedShapes = []struct {
	kind string
	re   *regexp.Regexp
}{
	{MainCF, regexp.MustCompile(`(?m)^[a-z][a-z0-9_]*\s+=\s`)},
	{MasterCF, regexp.MustCompile(`(?m)^\S+\s+(inet|unix|unix-dgram|fifo|pass)\s+[ny-]\s+[ny-]\s+[ny-]\s`)},
	{SendmailMC, regexp.MustCompile("(?m)^(INPUT_MAIL_FILTER|FEATURE|define)\\(`")},
	{NginxConf, regexp.MustCompile(`(?m)^\s*(mail|server|http|upstream)\s*\{|^\s*xclient\s+(on|off);`)},
	{Systemd, regexp.MustCompile(`(?m)^\[(Unit|Service|Install|Socket)\]\s*$`)},
	{Prometheus, regexp.MustCompile(`(?m)^(scrape_configs|rule_files|global|alerting):\s*$`)},
}

// LooksLike returns the program kind an unmarked block's text looks like a
// configuration for, or "".
func LooksLike(text string) string {
	for _, s := range unmarkedShapes {
		if s.re.MatchString(text) {
			return s.kind
		}
	}
	return ""
}

// MainCFProblems lists what Postfix would misread in a main.cf snippet: a
// "#" after a value is part of the value (Postfix has no trailing comments),
// and every other line is a parameter, a continuation or a whole-line comment.
func MainCFProblems(text string) []string {
	var out []string
	param := regexp.MustCompile(`^[a-z][a-z0-9_]*\s*=`)
	for i, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		switch {
		case strings.TrimSpace(l) == "", strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t"):
			if strings.Contains(l, "#") {
				out = append(out, fmt.Sprintf("line %d: %q: Postfix has no trailing comments; put the comment on a line of its own", i+1, l))
			}
		case param.MatchString(l):
			if strings.Contains(l, "#") {
				out = append(out, fmt.Sprintf("line %d: %q: Postfix has no trailing comments; put the comment on a line of its own", i+1, l))
			}
		default:
			out = append(out, fmt.Sprintf("line %d: %q: not \"name = value\", a continuation or a comment", i+1, l))
		}
	}
	return out
}

// MasterCFProblems is MainCFProblems for master.cf: comments only on lines of
// their own.
func MasterCFProblems(text string) []string {
	var out []string
	for i, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if !strings.HasPrefix(l, "#") && strings.Contains(l, "#") {
			out = append(out, fmt.Sprintf("line %d: %q: master.cf has no trailing comments", i+1, l))
		}
	}
	return out
}

// Parameters are the main.cf parameter names a snippet sets, in order.
func Parameters(text string) []string {
	var names []string
	param := regexp.MustCompile(`^([a-z][a-z0-9_]*)\s*=`)
	for _, l := range strings.Split(text, "\n") {
		if m := param.FindStringSubmatch(l); m != nil {
			names = append(names, m[1])
		}
	}
	return names
}
