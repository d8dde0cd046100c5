// Package message splits a mail message the way an MTA reads it before it
// hands the header fields and the body to a milter. It is the one splitter
// of `tollgate test`, tollgate-bench and the tests.
package message

import "bytes"

// Field is one header field.
type Field struct {
	// Name is the field name as written, blanks before the colon removed.
	Name string
	// Value is everything after the colon (a leading space included),
	// continuation lines joined with CRLF as a milter receives them.
	Value string
}

// Split separates msg (LF or CRLF line ends) into its header fields and the
// body. The header ends at the first empty line; the body is what follows
// it, line ends untouched. A line that is neither a field nor a
// continuation also ends the header: it starts the body (a message without
// the empty line), and separated is false, as it is when msg ends inside
// the header.
func Split(msg []byte) (fields []Field, body []byte, separated bool) {
	rest := msg
	for len(rest) > 0 {
		end := bytes.IndexByte(rest, '\n')
		line := rest
		if end >= 0 {
			line = rest[:end]
			rest = rest[end+1:]
		} else {
			rest = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			return fields, rest, true
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1].Value += "\r\n" + string(line)
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return fields, append(append([]byte{}, line...), append([]byte("\n"), rest...)...), false
		}
		fields = append(fields, Field{Name: string(bytes.TrimRight(name, " \t")), Value: string(value)})
	}
	return fields, nil, false
}
