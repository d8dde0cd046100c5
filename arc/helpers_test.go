package arc

import (
	"context"
	"crypto"
	"fmt"
	"strings"
)

// mapResolver serves TXT records from a map: a missing name is NXDOMAIN,
// a name mapped to nil is a temporary failure.
type mapResolver map[string][]string

func (m mapResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	v, ok := m[name]
	if !ok {
		return nil, &DNSError{Name: name, Cause: "NXDOMAIN"}
	}
	if v == nil {
		return nil, &DNSError{Name: name, Temporary: true, Cause: "SERVFAIL"}
	}
	return v, nil
}

// parseMessage splits a message (LF or CRLF) into headers as a milter
// delivers them (value after the colon, folds joined with CRLF) and a CRLF
// body, the way an MTA turns what it received into SMTP.
func parseMessage(msg string) ([]Header, []byte) {
	msg = strings.ReplaceAll(msg, "\r\n", "\n")
	head, body, found := strings.Cut(msg, "\n\n")
	if strings.HasPrefix(msg, "\n") {
		head, body, found = "", msg[1:], true
	}
	var hs []Header
	for _, line := range strings.Split(head, "\n") {
		if line == "" {
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && len(hs) > 0 {
			hs[len(hs)-1].Value += "\r\n" + line
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		hs = append(hs, Header{Name: name, Value: value})
	}
	if !found {
		return hs, nil
	}
	return hs, []byte(strings.ReplaceAll(body, "\n", "\r\n"))
}

// verifyMessage runs a whole message through a Verifier, in body chunks of
// chunk bytes (0: one chunk).
func verifyMessage(opts VerifyOptions, hs []Header, body []byte, chunk int) (*Verifier, *Result) {
	v := NewVerifier(opts)
	for _, h := range hs {
		v.Header(h)
	}
	v.EndOfHeaders()
	if chunk <= 0 {
		chunk = len(body) + 1
	}
	for len(body) > 0 {
		n := min(chunk, len(body))
		v.Body(body[:n])
		body = body[n:]
	}
	return v, v.Result(context.Background())
}

func formatMessage(hs []Header, body []byte) string {
	var b strings.Builder
	for _, h := range hs {
		v := h.Value
		if !strings.HasPrefix(v, " ") && !strings.HasPrefix(v, "\t") {
			v = " " + v
		}
		b.WriteString(h.Name + ":" + v + "\r\n")
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.String()
}

// ParsePrivateKey parses the formats LoadKeyFile accepts.
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	k, err := parsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	return k, nil
}
