//go:build e2e

package e2e

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/d--j/go-milter"
)

// startMilter serves one milter per connection on a loopback port chosen by
// the kernel and returns the smtpd_milters value for it.
func startMilter(t *testing.T, newMilter func() milter.Milter, opts ...milter.Option) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := milter.NewServer(append([]milter.Option{milter.WithMilter(newMilter)}, opts...)...)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	})
	return "inet:" + ln.Addr().String()
}

type addHeaderMilter struct{ milter.NoOpMilter }

func (addHeaderMilter) EndOfMessage(m milter.Modifier) (*milter.Response, error) {
	if err := m.AddHeader("X-Harness", "ok"); err != nil {
		return nil, err
	}
	return milter.RespAccept, nil
}

type rejectRcptMilter struct{ milter.NoOpMilter }

func (rejectRcptMilter) RcptTo(string, string, milter.Modifier) (*milter.Response, error) {
	return milter.RejectWithCodeAndReason(550, "5.7.1 nope")
}

func TestMilterAddsHeader(t *testing.T) {
	t.Parallel()
	addr := startMilter(t, func() milter.Milter { return addHeaderMilter{} }, milter.WithAction(milter.OptAddHeader))
	p := StartPostfix(t, PostfixOptions{Milter: addr})

	res := p.Swaks(t, "--from", "a@example.org", "--to", "b@example.com", "--header", "Subject: harness")
	if res.ExitCode != 0 {
		t.Fatalf("swaks exit %d, want 0:\n%s", res.ExitCode, res.Output)
	}
	msgs := p.WaitMessages(t, 1, 30*time.Second)
	if len(msgs) != 1 {
		t.Fatalf("sink has %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if got := m.Header("x-harness"); len(got) != 1 || got[0] != "ok" {
		t.Errorf("X-Harness = %q, want [ok]\n%s", got, m.Raw)
	}
	if got := m.Header("Subject"); len(got) != 1 || got[0] != "harness" {
		t.Errorf("Subject = %q, want [harness]", got)
	}
	if got := m.Envelope.From(); got != "a@example.org" {
		t.Errorf("envelope sender %q, want a@example.org", got)
	}
	if got := m.Envelope.To(); len(got) != 1 || got[0] != "b@example.com" {
		t.Errorf("envelope recipients %q, want [b@example.com]", got)
	}
	if !strings.HasPrefix(string(m.Raw), "Received: from ") || strings.Contains(string(m.Raw), "smtp-sink") {
		t.Errorf("raw message should start with Postfix's Received and hold nothing of smtp-sink's:\n%s", m.Raw)
	}
	if !strings.HasPrefix(string(m.Body), "This is a test mailing") {
		t.Errorf("body %q", m.Body)
	}
	p.WaitLog(t, "status=sent", 10*time.Second)
}

func TestMilterRejectsRecipient(t *testing.T) {
	t.Parallel()
	addr := startMilter(t, func() milter.Milter { return rejectRcptMilter{} })
	p := StartPostfix(t, PostfixOptions{Milter: addr})

	res := p.Swaks(t, "--from", "a@example.org", "--to", "b@example.com", "--header", "Subject: harness")
	if res.ExitCode == 0 {
		t.Errorf("swaks exit 0, want non-zero")
	}
	if !strings.Contains(res.Output, "<** 550 5.7.1 nope") {
		t.Errorf("swaks transcript lacks the milter's 550 for the recipient:\n%s", res.Output)
	}
	// Once smtpd has logged the reject the transaction is over: nothing
	// can still be on its way to the sink.
	p.WaitLog(t, "milter-reject: RCPT from", 10*time.Second)
	if msgs := p.Sink.Messages(t); len(msgs) != 0 {
		t.Errorf("sink has %d messages, want none:\n%s", len(msgs), msgs[0].Raw)
	}
}

func TestIPv6ListenWithoutMilter(t *testing.T) {
	t.Parallel()
	p := StartPostfix(t, PostfixOptions{Listen: "[::1]"})
	if !strings.HasPrefix(p.Addr, "[::1]:") {
		t.Fatalf("Addr %q, want [::1]:port", p.Addr)
	}
	res := p.Swaks(t, "--from", "a@example.org", "--to", "c@example.com")
	if res.ExitCode != 0 {
		t.Fatalf("swaks exit %d, want 0:\n%s", res.ExitCode, res.Output)
	}
	if msgs := p.WaitMessages(t, 1, 30*time.Second); msgs[0].Envelope.To()[0] != "c@example.com" {
		t.Errorf("recipient %q", msgs[0].Envelope.To())
	}
	p.WaitLog(t, "client=", 10*time.Second)
}
