// Package manpage turns the markdown sources of tollgate's manual pages
// (docs/man/*.md) into roff for man(1). A source starts with a header line
//
//	<!-- man: TITLE SECTION DATE SOURCE MANUAL -->
//
// (the arguments of .TH, quoted as in roff) and may pull in a section of
// another markdown file with
//
//	<!-- include: README.md#Configuration reference -->
//
// so that a reference kept in the README is the one source of its manual
// page. The markdown understood is what the repository's documents use:
// headings, paragraphs, bullet and numbered lists, fenced blocks, tables,
// inline code, bold, emphasis and links.
package manpage

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

var (
	headerLine  = regexp.MustCompile(`^<!-- man: (.*) -->$`)
	includeLine = regexp.MustCompile(`^<!-- include: ([^#]+)#(.+) -->$`)
	heading     = regexp.MustCompile(`^(#{1,6}) +(.*)$`)
	numbered    = regexp.MustCompile(`^(\d+)\. +(.*)$`)
	tableSep    = regexp.MustCompile(`^\|[-:| ]+\|$`)
)

// Generate reads the source at path (relative paths in include lines are
// relative to root, the repository) and returns the roff page.
func Generate(root, path string) ([]byte, error) {
	src, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		return nil, fmt.Errorf("manpage: %w", err)
	}
	lines := strings.Split(strings.TrimSuffix(string(src), "\n"), "\n")
	m := headerLine.FindStringSubmatch(lines[0])
	if m == nil {
		return nil, fmt.Errorf("manpage: %s: the first line must be <!-- man: TITLE SECTION DATE SOURCE MANUAL -->", path)
	}
	var expanded []string
	for i, l := range lines[1:] {
		inc := includeLine.FindStringSubmatch(l)
		if inc == nil {
			expanded = append(expanded, l)
			continue
		}
		part, err := section(filepath.Join(root, inc[1]), inc[2])
		if err != nil {
			return nil, fmt.Errorf("manpage: %s:%d: %w", path, i+2, err)
		}
		expanded = append(expanded, part...)
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, ".\\\" Generated from %s by internal/manpage; edit the source, then\n", path)
	out.WriteString(".\\\" go test ./internal/manpage -run TestManPages -update\n")
	fmt.Fprintf(&out, ".TH %s\n", m[1])
	render(&out, expanded)
	return out.Bytes(), nil
}

// section returns the lines of a markdown file's section: from the heading
// whose text is title down to the next heading of the same or a higher level.
func section(file, title string) ([]string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(string(b), "\n")
	start, level := -1, 0
	inFence := false
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			inFence = !inFence
		}
		h := heading.FindStringSubmatch(l)
		if inFence || h == nil {
			continue
		}
		if start < 0 && h[2] == title {
			start, level = i, len(h[1])
			continue
		}
		if start >= 0 && len(h[1]) <= level {
			return lines[start:i], nil
		}
	}
	if start < 0 {
		return nil, fmt.Errorf("%s has no heading %q", file, title)
	}
	return lines[start:], nil
}

func render(out *bytes.Buffer, lines []string) {
	for i := 0; i < len(lines); {
		l := lines[i]
		t := strings.TrimSpace(l)
		switch {
		case t == "":
			i++
		case strings.HasPrefix(t, "<!--"):
			for i < len(lines) && !strings.Contains(lines[i], "-->") {
				i++
			}
			i++
		case strings.HasPrefix(t, "```"):
			indent := len(l) - len(strings.TrimLeft(l, " "))
			i++
			out.WriteString(".PP\n.RS 4\n.nf\n")
			for i < len(lines) && !strings.HasPrefix(strings.TrimSpace(lines[i]), "```") {
				out.WriteString(literal(strings.TrimPrefix(lines[i], strings.Repeat(" ", indent))) + "\n")
				i++
			}
			out.WriteString(".fi\n.RE\n")
			i++
		case heading.MatchString(l):
			h := heading.FindStringSubmatch(l)
			switch len(h[1]) {
			case 1, 2:
				fmt.Fprintf(out, ".SH %s\n", strings.ToUpper(inline(h[2])))
			case 3:
				fmt.Fprintf(out, ".SS %s\n", inline(h[2]))
			default:
				fmt.Fprintf(out, ".PP\n\\fB%s\\fR\n", inline(h[2]))
			}
			i++
		case strings.HasPrefix(t, "|"):
			for ; i < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[i]), "|"); i++ {
				row := strings.TrimSpace(lines[i])
				if tableSep.MatchString(row) || i+1 < len(lines) && tableSep.MatchString(strings.TrimSpace(lines[i+1])) {
					continue // the separator, and the header row above it
				}
				cells := splitRow(row)
				var rest []string
				for _, c := range cells[1:] {
					if c != "" {
						rest = append(rest, inline(c))
					}
				}
				fmt.Fprintf(out, ".TP\n%s\n%s\n", inline(cells[0]), strings.Join(rest, "; "))
			}
		case strings.HasPrefix(t, "- ") || numbered.MatchString(t):
			indent := len(l) - len(t)
			tag, text := "\\(bu", strings.TrimPrefix(t, "- ")
			width := 2
			if m := numbered.FindStringSubmatch(t); m != nil {
				tag, text, width = m[1]+".", m[2], 4
			}
			i++
			for i < len(lines) {
				n := lines[i]
				nt := strings.TrimSpace(n)
				if nt == "" || len(n)-len(nt) <= indent || strings.HasPrefix(nt, "```") {
					break
				}
				text += "\n" + nt
				i++
			}
			fmt.Fprintf(out, ".IP %s %d\n%s\n", tag, width, inline(text))
		default:
			var para []string
			for i < len(lines) {
				n := strings.TrimSpace(lines[i])
				if n == "" || strings.HasPrefix(n, "```") || strings.HasPrefix(n, "|") || heading.MatchString(lines[i]) ||
					strings.HasPrefix(n, "- ") || numbered.MatchString(n) || strings.HasPrefix(n, "<!--") {
					break
				}
				para = append(para, n)
				i++
			}
			fmt.Fprintf(out, ".PP\n%s\n", inline(strings.Join(para, "\n")))
		}
	}
}

// splitRow splits a table row at the pipes that are not escaped (\|) or in
// code spans.
func splitRow(row string) []string {
	row = strings.TrimSuffix(strings.TrimPrefix(row, "|"), "|")
	var cells []string
	var cur strings.Builder
	inCode := false
	for i := 0; i < len(row); i++ {
		c := row[i]
		switch {
		case c == '\\' && i+1 < len(row) && row[i+1] == '|':
			cur.WriteByte('|')
			i++
		case c == '`':
			inCode = !inCode
			cur.WriteByte(c)
		case c == '|' && !inCode:
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(cells, strings.TrimSpace(cur.String()))
}

var (
	codeSpan = regexp.MustCompile("`([^`]+)`")
	link     = regexp.MustCompile(`\[([^\]]+)\]\(([^)]+)\)`)
	bold     = regexp.MustCompile(`\*\*([^*]+)\*\*`)
	emph     = regexp.MustCompile(`(^|[\s(\[|])\*([^*\s][^*]*)\*`)
)

// inline converts a markdown text to roff: code spans bold, **bold**,
// *emphasis* italic, links as their text. Code spans are set aside first,
// so that nothing inside them is read as markup.
func inline(s string) string {
	var codes []string
	s = codeSpan.ReplaceAllStringFunc(s, func(m string) string {
		codes = append(codes, m[1:len(m)-1])
		return fmt.Sprintf("\x00%d\x00", len(codes)-1)
	})
	s = link.ReplaceAllString(s, "$1")
	s = escape(s)
	s = bold.ReplaceAllString(s, `\fB$1\fR`)
	s = emph.ReplaceAllString(s, `$1\fI$2\fR`)
	for i, c := range codes {
		s = strings.Replace(s, fmt.Sprintf("\x00%d\x00", i), `\fB`+escape(c)+`\fR`, 1)
	}
	return guardLines(s)
}

// escape makes text safe inside a roff line: backslashes, and minus signs
// (roff's "-" is a hyphen; options and values want a minus).
func escape(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	return strings.ReplaceAll(s, "-", `\-`)
}

// literal is one line of a fenced block.
func literal(s string) string {
	return guardLines(escape(s))
}

// guardLines keeps text lines from starting with a roff control character.
func guardLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			lines[i] = `\&` + l
		}
	}
	return strings.Join(lines, "\n")
}
