package bmi

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/milter"
)

// The real scanners are started once per test binary (sync.Once) and
// stopped by TestMain; a test that needs to stop one starts its own.

var (
	cleanupMu sync.Mutex
	cleanups  []func()
)

func atExit(f func()) {
	cleanupMu.Lock()
	cleanups = append(cleanups, f)
	cleanupMu.Unlock()
}

func TestMain(m *testing.M) {
	code := m.Run()
	cleanupMu.Lock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	cleanupMu.Unlock()
	os.Exit(code)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Test messages. GTUBE lines of rspamd's test patterns: X = reject,
// Y = add header, Z = rewrite subject, A = no action (rspamd 3.4, the
// last three with enable_test_patterns).
const gtubeBody = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

func message(subject, body string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Received: from mail.example.org (mail.example.org [192.0.2.10])\r\n\tby mx.example.net with ESMTP id 4AbCdE; %s\r\n", time.Now().Format(time.RFC1123Z))
	b.WriteString("From: Alice Example <alice@example.org>\r\n")
	b.WriteString("To: Bob Example <bob@example.net>\r\n")
	fmt.Fprintf(&b, "Subject: %s\r\n", subject)
	fmt.Fprintf(&b, "Date: %s\r\n", time.Now().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%d.tollgate-test@example.org>\r\n", time.Now().UnixNano())
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
	b.WriteString(strings.ReplaceAll(body, "\n", "\r\n"))
	b.WriteString("\r\n")
	return b.Bytes()
}

func cleanMessage() []byte {
	return message("Lunch on Thursday", "Hi Bob,\n\nare we still on for lunch on Thursday at noon? The usual place\nnear the station is fine with me.\n\nAlice\n")
}

func gtubeMessage(letter byte) []byte {
	line := string(letter) + gtubeBody[1:]
	return message("Test pattern", "This is a test message.\n\n"+line+"\n")
}

func env(rcpts ...string) Envelope {
	return Envelope{Sender: "alice@example.org", Helo: "mail.example.org", Hostname: "mail.example.org",
		QueueID: "4AbCdE", Rcpts: rcpts}
}

func scan(t *testing.T, b Backend, msg []byte, e Envelope, profile string) *ScanResult {
	t.Helper()
	res, err := b.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg)), e, profile)
	if err != nil {
		t.Fatalf("%s scan (profile %q): %v", b.Name(), profile, err)
	}
	return res
}

func ptr[T any](v T) *T { return &v }

// exampleRules are the rules of README's example.
func exampleRules() []Rule {
	return []Rule{
		{ID: 1, When: Conditions{SymbolsAny: []string{"GTUBE"}, OptinAny: []string{"drop-spam"}}, Outcome: OutcomeDrop},
		{ID: 2, When: Conditions{ScoreAbove: ptr(20.0)}, Outcome: OutcomeAlternate, AltLocation: "redirect:spam-trap@example.net"},
		{ID: 3, When: Conditions{IsSpam: ptr(true)}, Outcome: OutcomeAlternate, AltLocation: "header:X-Spam-Folder: Junk"},
		{ID: 4, When: Conditions{Actions: []string{"reject"}}, Outcome: OutcomeDrop},
		{ID: 5, When: Conditions{Actions: []string{"add header", "rewrite subject"}}, Outcome: OutcomeAlternate, AltLocation: "quarantine:held by bmi rule 5"},
	}
}

// Find returns the verdict of the first recipient whose RCPT address is
// addr, compared case-insensitively as Exim does, or NoVerdict.
func Find(rcpts []RcptInput, verdicts []Verdict, addr string) Verdict {
	for i, r := range rcpts {
		if i < len(verdicts) && asciiEqualFold(r.Addr, addr) {
			return verdicts[i]
		}
	}
	return NoVerdict()
}

// FactsOf returns what happened to the scan of a message: empty when none.
func FactsOf(t *milter.Txn) *Facts { return milter.TxnFacts[Facts](t, name) }
