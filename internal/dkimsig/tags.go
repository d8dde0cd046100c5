package dkimsig

import "strings"

// Tag is one tag=value of a signature's tag list.
type Tag struct{ Name, Value string }

// Render lays tags out as "k=v; k=v" for the header field named field,
// folded with CRLF TAB before a tag that would pass column 78; h= folds at
// its colons and b= starts a line of its own and is cut into pieces that
// fit, so that the text before b= is the same whether b= is empty or not
// (the signature is computed over the empty form, and with simple header
// canonicalization the folds count).
func Render(field string, tags []Tag) string {
	const width = 78
	var b strings.Builder
	col := len(field) + 2
	for i, t := range tags {
		last := i == len(tags)-1
		item := t.Name + "=" + t.Value
		if !last {
			item += ";"
		}
		switch {
		case i == 0:
		case t.Name == "b" || col+1+len(item) > width:
			b.WriteString("\r\n\t")
			col = 8
		default:
			b.WriteByte(' ')
			col++
		}
		switch t.Name {
		case "b":
			// 68 then 70 characters a line: 78 columns with the tab
			b.WriteString("b=")
			v, n := t.Value, 68
			for len(v) > n {
				b.WriteString(v[:n] + "\r\n\t")
				v, n = v[n:], 70
			}
			b.WriteString(v)
			if !last {
				b.WriteByte(';')
			}
		case "h":
			b.WriteString("h=")
			col += 2
			parts := strings.Split(t.Value, ":")
			for j, p := range parts {
				if j < len(parts)-1 {
					p += ":"
				} else if !last {
					p += ";"
				}
				if col+len(p) > width && j > 0 {
					b.WriteString("\r\n\t")
					col = 8
				}
				b.WriteString(p)
				col += len(p)
			}
		default:
			b.WriteString(item)
			col += len(item)
		}
	}
	return b.String()
}
