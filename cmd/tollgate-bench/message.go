package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	mailmsg "github.com/tollgate/tollgate/internal/message"
)

// field is one header field as an MTA hands it to a milter: the name, and the
// value after the colon with leading white space removed (spaced is the value
// with the space, for milters that negotiate OptHeaderLeadingSpace). Folded
// lines are joined with LF, as Postfix stores them.
type field struct {
	name, value, spaced string
}

// message is one message to send: headers and a body with CRLF line ends.
type message struct {
	name    string // file name for a corpus message
	fields  []field
	body    []byte
	size    int // bytes as in a file: headers, blank line, body
	msgIDAt int // index of the Message-ID field, varied per message; -1 if none
}

func newField(name, value string) field {
	value = strings.TrimLeft(value, " \t")
	return field{name: name, value: value, spaced: " " + value}
}

func (m *message) headerBytes() int {
	n := 0
	for _, f := range m.fields {
		n += len(f.name) + 1 + len(f.spaced) + 2
	}
	return n
}

// generated headers: name, value, and rank (lower ranks are kept first when
// fewer headers are asked for). The order is the order in the message.
var generatedHeaders = []struct {
	name, value string
	rank        int
}{
	{"Received", "from [192.168.1.20] (dsl-20.example.net [198.51.100.20])\n\tby mail.example.net (Postfix) with ESMTPSA id 4XkT2c0Zz3z9t\n\tfor <user1@example.org>; Tue, 03 Mar 2026 10:15:02 +0100 (CET)", 8},
	{"DKIM-Signature", "v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.net;\n\ts=mail2026; t=1772529302;\n\th=from:to:subject:date:message-id:mime-version:content-type;\n\tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\n\tb=dzdVyOfAKCdLXdJOc9G2q8LoXSlEniSbav+yuU4zGeeruD00lszZVoG4ZHRNiYzR\n\t 9yzzDj2Jzxrp/XcKbW+D8iN1D4LVqBeQ6N5vZeeM4gGxM2dg+ls1PtfZ1rCt3RT9\n\t kZ7AfItJ2vq6fSXW0p+ioCR6Yb8VO5tMvTM3e2cc5zg=", 9},
	{"From", "Alice Sender <sender@example.net>", 0},
	{"To", "Bob Recipient <user1@example.org>", 1},
	{"Subject", "Quarterly figures, draft for review", 2},
	{"Date", "Tue, 03 Mar 2026 10:15:01 +0100", 3},
	{"Message-ID", "<20260303091501.4XkT2c0Zz3z9t@mail.example.net>", 4},
	{"MIME-Version", "1.0", 5},
	{"Content-Type", "text/plain; charset=utf-8; format=flowed", 6},
	{"Content-Transfer-Encoding", "8bit", 7},
}

const bodyLine = "The quick brown fox jumps over the lazy dog, and the figures add up again"

// generateMessage builds a message of about size bytes (headers included) with
// nHeaders header fields: the realistic set above, then more Received lines.
func generateMessage(size, nHeaders int) *message {
	m := &message{name: "generated", msgIDAt: -1}
	keep := make([]bool, len(generatedHeaders))
	ranks := make([]int, len(generatedHeaders))
	for i := range ranks {
		ranks[i] = i
	}
	sort.Slice(ranks, func(a, b int) bool { return generatedHeaders[ranks[a]].rank < generatedHeaders[ranks[b]].rank })
	for i := 0; i < nHeaders && i < len(ranks); i++ {
		keep[ranks[i]] = true
	}
	// Relays above the submission server's Received line: the top of the
	// header, as in a message that travelled.
	for i := len(generatedHeaders); i < nHeaders; i++ {
		hop := nHeaders - i
		m.fields = append(m.fields, newField("Received", fmt.Sprintf(
			"from relay%d.example.com (relay%d.example.com [192.0.2.%d])\n\tby relay%d.example.com (Postfix) with ESMTPS id 4XkT2c%07d\n\tfor <user1@example.org>; Tue, 03 Mar 2026 10:15:%02d +0100 (CET)",
			hop, hop, hop%250+1, hop+1, hop, hop%60)))
	}
	for i, h := range generatedHeaders {
		if keep[i] {
			if h.name == "Message-ID" {
				m.msgIDAt = len(m.fields)
			}
			m.fields = append(m.fields, newField(h.name, h.value))
		}
	}
	hb := m.headerBytes() + 2
	var body bytes.Buffer
	for n := 0; body.Len() < size-hb; n++ {
		line := strconv.Itoa(n%1000) + " " + bodyLine
		if rest := size - hb - body.Len() - 2; rest < len(line) {
			line = line[:max(rest, 0)]
		}
		body.WriteString(line)
		body.WriteString("\r\n")
	}
	m.body = body.Bytes()
	m.size = hb + len(m.body)
	return m
}

// loadCorpus reads every *.eml file of dir (sorted by name).
func loadCorpus(dir string) ([]*message, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.eml"))
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("corpus %s: no .eml files", dir)
	}
	sort.Strings(names)
	var out []*message
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			return nil, err
		}
		m, err := parseMessage(data)
		if err != nil {
			return nil, fmt.Errorf("corpus %s: %w", n, err)
		}
		m.name = filepath.Base(n)
		out = append(out, m)
	}
	return out, nil
}

// parseMessage splits an RFC 5322 message into header fields and a body
// with CRLF line ends, as an MTA passes them on. Unlike the MTA it refuses
// a header it cannot read, so that a corpus is measured as written.
func parseMessage(data []byte) (*message, error) {
	m := &message{msgIDAt: -1}
	if len(data) > 0 && (data[0] == ' ' || data[0] == '\t') {
		return nil, errors.New("message starts with a continuation line")
	}
	if first, rest, _ := bytes.Cut(data, []byte("\n")); bytes.HasPrefix(first, []byte("From ")) && !bytes.Contains(first, []byte(":")) {
		data = rest // mbox separator
	}
	fields, rest, separated := mailmsg.Split(data)
	if !separated && len(rest) > 0 {
		line, _, _ := bytes.Cut(rest, []byte("\n"))
		return nil, fmt.Errorf("bad header line %q", truncate(string(line), 60))
	}
	for _, f := range fields {
		if f.Name == "" {
			return nil, fmt.Errorf("bad header line %q", truncate(":"+strings.ReplaceAll(f.Value, "\r\n", "\n"), 60))
		}
		m.fields = append(m.fields, newField(f.Name, strings.ReplaceAll(f.Value, "\r\n", "\n")))
		if strings.EqualFold(f.Name, "Message-ID") {
			m.msgIDAt = len(m.fields) - 1
		}
	}
	var body bytes.Buffer
	for len(rest) > 0 {
		line := rest
		next := []byte(nil)
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, next = rest[:i], rest[i+1:]
		}
		rest = next
		body.Write(bytes.TrimSuffix(line, []byte("\r")))
		body.WriteString("\r\n")
	}
	m.body = body.Bytes()
	m.size = m.headerBytes() + 2 + len(m.body)
	return m, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
