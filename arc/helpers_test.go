package arc

import (
	"bytes"

	"github.com/tollgate/tollgate/internal/keyfile"

	"context"
	"fmt"
	"strings"

	"github.com/tollgate/tollgate/internal/message"

	"github.com/tollgate/tollgate/internal/sigcrypto"
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
// receives them and a CRLF body, the way an MTA turns what it received into
// SMTP.
func parseMessage(msg string) ([]Header, []byte) {
	fields, body, _ := message.Split([]byte(msg))
	hs := make([]Header, 0, len(fields))
	for _, f := range fields {
		hs = append(hs, Header{Name: f.Name, Value: f.Value})
	}
	if body == nil {
		return hs, nil
	}
	return hs, bytes.ReplaceAll(bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
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
func ParsePrivateKey(data []byte) (sigcrypto.Signer, error) {
	parsed, err := keyfile.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	k, err := sigcrypto.NewSigner(parsed)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	return k, nil
}
