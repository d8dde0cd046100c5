//go:build e2e

package srs

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/e2e"
)

// A real Postfix with its canonical maps on tollgate's socketmap, exactly
// as a postsrsd 2.x site writes them: a message forwarded by
// virtual_alias_maps leaves with an SRS sender (seen by the next hop, the
// sink), and the bounce to that address goes back to the original sender.
func TestSocketmapPostfix(t *testing.T) {
	e2e.RequireProgram(t, "postfix", "postfix")
	rw := ModuleOptions{SRS: mustNew(t, Options{Domain: "fwd.example", Secrets: []string{"tops3cr3t"}}),
		Local: func(d string) bool { return strings.EqualFold(d, "forward.example") }}
	// Debian's layout: cleanup chrooted in the queue directory, the socket
	// in its tollgate/ directory (root:postfix 0750 here, as the package
	// makes it), main.cf naming it relative to the chroot, as printed.
	mainCF := readmeMainCF(t, "# main.cf: SRS through tollgate's socketmap")
	pf := e2e.StartPostfix(t, e2e.PostfixOptions{Chroot: true, MainCFText: mainCF, MainCF: map[string]string{
		"virtual_alias_domains": "forward.example",
		"virtual_alias_maps":    "inline:{ alice@forward.example=alice@next.example }",
	}})
	sock := filepath.Join(pf.SocketDir(t), "srs.sock")
	sm, err := ListenSocketmap("unix:"+sock, rw, SocketmapOptions{Metrics: NewMetrics(prometheus.NewRegistry())})
	if err != nil {
		t.Fatal(err)
	}
	defer sm.Close()

	// The guide's check by hand: postmap -q on both maps.
	postmap := e2e.RequireProgram(t, "postmap", "postfix")
	q := func(key, m string) string {
		out, err := exec.Command(postmap, "-q", key, "socketmap:unix:"+sock+":"+m).CombinedOutput()
		if err != nil {
			t.Fatalf("postmap -q %s %s: %v %s", key, m, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if a := q("alice@example.net", "forward"); !strings.HasPrefix(a, "SRS0=") || q(a, "reverse") != "alice@example.net" {
		t.Errorf("postmap -q: forward %q", a)
	}

	res := pf.Swaks(t, "--from", "bob@orig.example", "--to", "alice@forward.example", "--header", "Subject: forwarded")
	if res.ExitCode != 0 {
		t.Fatalf("swaks: %s", res.Output)
	}
	msgs := pf.Sink.WaitMessages(t, 1, 30*time.Second)
	fwd := msgs[0].Envelope.From()
	if to := msgs[0].Envelope.To(); len(to) != 1 || to[0] != "alice@next.example" {
		t.Errorf("next hop got RCPT %v", to)
	}
	if !strings.HasPrefix(fwd, "SRS0=") || !strings.HasSuffix(fwd, "@fwd.example") {
		t.Fatalf("next hop got MAIL FROM %q, want an SRS address", fwd)
	}
	if back, err := rw.SRS.Reverse(fwd); err != nil || back != "bob@orig.example" {
		t.Errorf("%s reverses to %q, %v", fwd, back, err)
	}

	// The bounce comes back to the SRS address and goes to bob.
	res = pf.Swaks(t, "--from", "<>", "--to", fwd, "--header", "Subject: Undelivered Mail Returned to Sender")
	if res.ExitCode != 0 {
		t.Fatalf("swaks: %s", res.Output)
	}
	msgs = pf.Sink.WaitMessages(t, 2, 30*time.Second)
	bounce := msgs[1]
	if msgs[0].Envelope.From() == "" {
		bounce = msgs[0]
	}
	if to := bounce.Envelope.To(); bounce.Envelope.From() != "" || len(to) != 1 || to[0] != "bob@orig.example" {
		t.Errorf("bounce: MAIL FROM %q RCPT %v, want <> to bob@orig.example", bounce.Envelope.From(), to)
	}
	// A local sender is left alone ("Need not rewrite local domain.").
	res = pf.Swaks(t, "--from", "carol@forward.example", "--to", "dave@next.example")
	if res.ExitCode != 0 {
		t.Fatalf("swaks: %s", res.Output)
	}
	msgs = pf.Sink.WaitMessages(t, 3, 30*time.Second)
	found := false
	for _, m := range msgs {
		if m.Envelope.From() == "carol@forward.example" {
			found = true
		}
	}
	if !found {
		t.Errorf("the local sender was rewritten: %+v", msgs)
	}
}

// readmeMainCF returns the README.md block that starts with first, as
// printed; docs/guide.md must print the same.
func readmeMainCF(t *testing.T, first string) string {
	t.Helper()
	blockOf := func(path string) string {
		doc, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		_, block, ok := strings.Cut(string(doc), "```main.cf\n"+first+"\n")
		block, _, ok2 := strings.Cut(block, "```")
		if !ok || !ok2 {
			t.Fatalf("%s has no block starting %q", path, first)
		}
		return first + "\n" + block
	}
	block := blockOf("README.md")
	if guide := blockOf("../docs/guide.md"); guide != block {
		t.Fatalf("docs/guide.md prints other main.cf lines than srs/README.md:\n%s\n%s", guide, block)
	}
	return block
}

// BenchmarkSocketmapVsPostsrsd: forward requests per second at 16
// connections, tollgate's socketmap against Debian's postsrsd 1.10
// (tcp_table, a process per connection), in the same run on the same
// machine; compare the two req/s figures, not either with another run.
func BenchmarkSocketmapVsPostsrsd(b *testing.B) {
	const conns = 16
	postsrsdPath := e2e.RequireProgram(b, "postsrsd", "postsrsd")
	run := func(b *testing.B, dial func() (net.Conn, error), ask func(*bufio.Reader, net.Conn, string) error) {
		cs := make([]net.Conn, conns)
		for i := range cs {
			c, err := dial()
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			cs[i] = c
		}
		var wg sync.WaitGroup
		errs := make(chan error, conns)
		b.ResetTimer()
		for i, c := range cs {
			n := b.N / conns
			if i < b.N%conns {
				n++
			}
			wg.Go(func() {
				br := bufio.NewReader(c)
				for j := range n {
					if err := ask(br, c, fmt.Sprintf("user%d.%d@orig.example", i, j)); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
	}
	b.Run("tollgate-socketmap", func(b *testing.B) {
		rw := ModuleOptions{SRS: mustNew(b, Options{Domain: vecDomain, Secrets: []string{peerNew}, HashLength: 4})}
		sm, err := ListenSocketmap("inet:127.0.0.1:0", rw, SocketmapOptions{})
		if err != nil {
			b.Fatal(err)
		}
		defer sm.Close()
		run(b, func() (net.Conn, error) { return net.Dial("tcp", sm.Addr().String()) },
			func(br *bufio.Reader, c net.Conn, sender string) error {
				if _, err := c.Write(appendNetstring(nil, "forward "+sender)); err != nil {
					return err
				}
				r, err := readNetstring(br, 4096)
				if err == nil && !strings.HasPrefix(r, "OK SRS0=") {
					err = fmt.Errorf("socketmap: %q", r)
				}
				return err
			})
	})
	b.Run("postsrsd-1.10-tcp_table", func(b *testing.B) {
		p := startPostsrsd(b, postsrsdPath, '=', peerNew)
		run(b, func() (net.Conn, error) { return net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p.fport))) },
			func(br *bufio.Reader, c net.Conn, sender string) error {
				if _, err := fmt.Fprintf(c, "get %s\n", sender); err != nil {
					return err
				}
				line, err := br.ReadString('\n')
				if err == nil && !strings.HasPrefix(line, "200 SRS0=") {
					err = fmt.Errorf("postsrsd: %q", line)
				}
				return err
			})
	})
}
