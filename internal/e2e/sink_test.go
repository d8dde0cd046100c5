package e2e

import (
	"strings"
	"testing"
)

func TestParseSinkFile(t *testing.T) {
	raw := "X-Client-Addr: 127.0.0.1\n" +
		"X-Client-Proto: ESMTP\n" +
		"X-Helo-Args: mx.tollgate.test\n" +
		"X-Mail-Args: <a@example.org> SIZE=12\n" +
		"X-Rcpt-Args: <b@example.com> ORCPT=rfc822;b@example.com\n" +
		"X-Rcpt-Args: <c@example.com>\n" +
		"Received: from mx.tollgate.test ([127.0.0.1])\n" +
		"\tby sink.tollgate.test (smtp-sink) with ESMTP id 7ab61c86;\n" +
		"\tSat, 21 Nov 2026 05:46:57 +0000 (UTC)\n" +
		"Subject: one\n" +
		"X-Folded: first\n" +
		"\tsecond\n" +
		"subject:two\n" +
		"\n" +
		"body\n" +
		"\n"
	m, err := parseSinkFile([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Envelope.From(); got != "a@example.org" {
		t.Errorf("From %q", got)
	}
	if got := m.Envelope.To(); strings.Join(got, ",") != "b@example.com,c@example.com" {
		t.Errorf("To %q", got)
	}
	if got := m.Header("SUBJECT"); strings.Join(got, "|") != "one|two" {
		t.Errorf("Subject %q", got)
	}
	if got := m.Header("X-Folded"); len(got) != 1 || got[0] != "first\tsecond" {
		t.Errorf("X-Folded %q", got)
	}
	if m.Headers[1].Value != " first\n\tsecond" {
		t.Errorf("raw X-Folded %q", m.Headers[1].Value)
	}
	if string(m.Body) != "body\n" {
		t.Errorf("body %q", m.Body)
	}
	if !strings.HasPrefix(string(m.Raw), "Subject: one\n") || !strings.HasSuffix(string(m.Raw), "\nbody\n") {
		t.Errorf("raw %q", m.Raw)
	}
}
