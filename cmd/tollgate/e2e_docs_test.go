//go:build e2e

package main

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/dcc/dcctest"
	"github.com/tollgate/tollgate/internal/docs"
	"github.com/tollgate/tollgate/internal/e2e"
)

// The documentation's snippets for other programs, applied exactly as
// printed and exercised with the real program: main.cf and master.cf
// blocks are appended to a Debian-style (chrooted) Postfix's files, map
// files written as printed, sendmail.mc lines added to a Sendmail's mc,
// Prometheus's configuration checked by promtool; then mail goes through
// tollgate. The guide's setups run as written: the quick start, the merged
// ARC and SRS configuration with a bounce coming back through
// virtual_alias_domains, the XCLIENT listener, the submission port. Every
// block marked for a program must be applied by one of them.
func TestDocSnippets(t *testing.T) {
	e2e.RequireProgram(t, "/usr/sbin/postfix", "postfix")
	e2e.RequireProgram(t, "/usr/sbin/postmap", "postfix")
	e2e.RequireProgram(t, "/usr/bin/swaks", "swaks")
	blocks, err := docs.All("../..")
	if err != nil {
		t.Fatal(err)
	}
	// The files deploy/ ships for the MTAs are snippets too, applied whole.
	for _, f := range []struct{ path, info string }{
		{"deploy/postfix/main.cf", docs.MainCF},
		{"deploy/postfix/master.cf", docs.MasterCF},
		{"deploy/sendmail/sendmail.mc", docs.SendmailMC},
	} {
		b, err := os.ReadFile("../../" + f.path)
		if err != nil {
			t.Fatal(err)
		}
		blocks = append(blocks, docs.Block{File: f.path, Line: 1, Info: f.info, Text: string(b)})
	}
	s := &snippets{blocks: blocks, applied: map[string]bool{}}

	scenarios := []struct {
		name string
		run  func(*testing.T)
	}{
		{"main.cf blocks attach Postfix", s.mainCFBlocks},
		{"quick start", s.quickStart},
		{"ARC and SRS together with bounces through virtual_alias_domains", s.together},
		{"SRS section with bounces through virtual_alias_domains", s.srsSection},
		{"SRS socketmap", s.srsSocketmap},
		{"ARC section", s.arcSection},
		{"DCC greylisting", s.dcc},
		{"BMI with spamd", s.bmi},
		{"master.cf: the XCLIENT listener", s.proxyListener},
		{"master.cf: the submission port", s.submission},
		{"sendmail.mc", s.sendmail},
		{"prometheus.yml", s.prometheus},
		{"systemd drop-ins", s.systemd},
	}
	ran := 0
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) { ran++; sc.run(t) })
	}
	if ran < len(scenarios) {
		t.Logf("%d of %d scenarios selected by -run: which blocks no test applies is not checked", ran, len(scenarios))
		return
	}
	for _, b := range blocks {
		if docs.IsProgram(b.Info) && !s.applied[b.Info+"\x00"+b.Text] {
			t.Errorf("%v: a ```%s block that no test applies: add it to TestDocSnippets", b, b.Info)
		}
	}
}

type snippets struct {
	blocks  []docs.Block
	applied map[string]bool // info and text of blocks applied
}

// use marks a block (and every block printing the same text) applied.
func (s *snippets) use(b docs.Block) string {
	s.applied[b.Info+"\x00"+b.Text] = true
	return b.Text
}

func (s *snippets) named(t *testing.T, name string) docs.Block {
	t.Helper()
	b, err := docs.Named(s.blocks, name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// distinct returns the blocks of one kind, one per distinct text.
func (s *snippets) distinct(info string) []docs.Block {
	seen := map[string]bool{}
	var out []docs.Block
	for _, b := range s.blocks {
		if b.Info == info && !seen[b.Text] {
			seen[b.Text] = true
			out = append(out, b)
		}
	}
	return out
}

var smtpdMilters = regexp.MustCompile(`(?m)^smtpd_milters = unix:(/\S+)$`)

// startChrooted starts a Postfix whose smtpd, cleanup and pickup run
// chrooted, as Debian's, with main.cf and master.cf text appended as
// printed, and the directory the guide's socket lives in.
func startChrooted(t *testing.T, mainCF, masterCF string, extra map[string]string) *e2e.Postfix {
	t.Helper()
	pf := e2e.StartPostfix(t, e2e.PostfixOptions{Chroot: true, MainCFText: mainCF, MasterCFText: masterCF, MainCF: extra})
	pf.SocketDir(t)
	return pf
}

// startForPostfix runs tollgate with a guide configuration on the socket the
// main.cf text names, inside pf's chroot. The configuration's paths are the
// guide's: /var/spool/postfix is pf's queue directory here, and files under
// /etc/tollgate are given as replacements.
func startForPostfix(t *testing.T, pf *e2e.Postfix, mainCF, config string, files map[string]string) *daemonProc {
	t.Helper()
	m := smtpdMilters.FindStringSubmatch(mainCF)
	if m == nil {
		t.Fatalf("the main.cf text names no unix socket in smtpd_milters:\n%s", mainCF)
	}
	sock := pf.QueueDir() + m[1]
	config = strings.ReplaceAll(config, "/var/spool/postfix/", pf.QueueDir()+"/")
	for from, to := range files {
		config = strings.ReplaceAll(config, from, to)
	}
	if l := regexp.MustCompile(`(?m)^listen: unix:(\S+)$`).FindStringSubmatch(config); l != nil && l[1] != sock {
		t.Fatalf("tollgate listens on %s; Postfix, chrooted in %s, connects to %s", l[1], pf.QueueDir(), m[1])
	}
	return launchDaemon(t, config, "unix:"+sock)
}

const stampConfig = `
socket: {group: postfix, mode: "0660"}
acl:
  data:
    - accept: {name: stamp, add_header: "X-Doc-Snippet: $sender_host_address $queue_id"}
`

// Each main.cf block that attaches Postfix does: mail over SMTP (smtpd_milters)
// and from the sendmail command (non_smtpd_milters, through the chrooted
// cleanup) both reach tollgate.
func (s *snippets) mainCFBlocks(t *testing.T) {
	n := 0
	for _, b := range s.distinct(docs.MainCF) {
		if !smtpdMilters.MatchString(b.Text) {
			continue
		}
		n++
		t.Run(b.String(), func(t *testing.T) {
			text := s.use(b)
			pf := startChrooted(t, text, "", nil)
			d := startForPostfix(t, pf, text, stampConfig, nil)
			res := pf.Swaks(t, "--from", "alice@example.net", "--to", "bob@example.org", "--header", "Subject: smtp")
			if res.ExitCode != 0 {
				t.Fatalf("swaks: exit %d\n%s\npostfix log:\n%s", res.ExitCode, res.Output, pf.Log())
			}
			pf.Sendmail(t, "Subject: local\n\nhello\n", "-f", "root@example.org", "bob@example.org")
			msgs := pf.WaitMessages(t, 2, 30*time.Second)
			for _, m := range msgs {
				if v := m.Header("X-Doc-Snippet"); len(v) != 1 || !strings.HasPrefix(v[0], "127.0.0.1 ") {
					t.Errorf("message %q: X-Doc-Snippet %q: tollgate did not see it\npostfix log:\n%s", m.Header("Subject"), v, pf.Log())
				}
			}
			if strings.Contains(pf.Log(), "Milter") {
				t.Errorf("Postfix complains about the milter:\n%s", pf.Log())
			}
			d.waitLog(t, "decision=accept")
		})
	}
	if n == 0 {
		t.Fatal("no main.cf block sets smtpd_milters")
	}
}

// arcKey makes the quick start's key with the command the guide prints.
func arcKey(t *testing.T) string {
	t.Helper()
	key := filepath.Join(t.TempDir(), "arc2026.key")
	out, err := exec.Command(binary, "arc", "keygen", "--domain", "example.org", "--selector", "arc2026", "--type", "ed25519", "--out", key).CombinedOutput()
	if err != nil {
		t.Fatalf("arc keygen: %v\n%s", err, out)
	}
	return key
}

// The quick start: its configuration, its main.cf lines, and a message
// submitted on the host comes out sealed.
func (s *snippets) quickStart(t *testing.T) {
	mainCF := s.use(s.named(t, "quick-start-main.cf"))
	config := s.named(t, "quick-start").Text
	pf := startChrooted(t, mainCF, "", nil)
	d := startForPostfix(t, pf, mainCF, config, map[string]string{"/etc/tollgate/arc2026.key": arcKey(t)})
	pf.Sendmail(t, "Subject: ARC test\n\nhello\n", "-f", "alice@example.org", "alice")
	m := pf.WaitMessages(t, 1, 30*time.Second)[0]
	if seal := m.Header("ARC-Seal"); len(seal) != 1 || !strings.Contains(seal[0], "cv=none") || !strings.Contains(seal[0], "d=example.org") || !strings.Contains(seal[0], "s=arc2026") {
		t.Errorf("ARC-Seal %q\n%s", seal, m.Raw)
	}
	d.waitLog(t, "ARC=none/sealed")
}

// writeMaps writes the map files as printed, where their first line says
// (/etc/postfix is the instance's config directory), and runs postmap on
// the hash: ones.
func writeMaps(t *testing.T, pf *e2e.Postfix, maps ...docs.Block) {
	t.Helper()
	for _, b := range maps {
		first, _, _ := strings.Cut(b.Text, "\n")
		name, ok := strings.CutPrefix(first, "# /etc/postfix/")
		if !ok || strings.ContainsAny(name, "/ ") {
			t.Fatalf("%v: the map's first line does not name its file under /etc/postfix: %q", b, first)
		}
		path := filepath.Join(pf.ConfDir(), name)
		if err := os.WriteFile(path, []byte(b.Text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func postmap(t *testing.T, pf *e2e.Postfix, file string) {
	t.Helper()
	if out, err := exec.Command("/usr/sbin/postmap", "-c", pf.ConfDir(), filepath.Join(pf.ConfDir(), file)).CombinedOutput(); err != nil {
		t.Fatalf("postmap %s: %v\n%s", file, err, out)
	}
}

// The guide's MX that forwards with SRS and seals with ARC: Postfix with
// the quick start's and the SRS section's main.cf lines and map files,
// tollgate with the merged configuration. A forwarded message leaves with an
// SRS sender and a seal; its bounce, sent to the SRS address, passes
// Postfix's unlisted-recipient check (the default), is reversed by tollgate
// and delivered to the original sender; a forged one is refused by tollgate.
func (s *snippets) together(t *testing.T) { s.forwarding(t, "together", true) }

// Section 5.2 alone: the same forwarding and bounces, without a seal.
func (s *snippets) srsSection(t *testing.T) { s.forwarding(t, "srs", false) }

func (s *snippets) forwarding(t *testing.T, snippet string, sealed bool) {
	mainCF := s.use(s.named(t, "quick-start-main.cf")) + s.use(s.named(t, "srs-main.cf"))
	if strings.Contains(mainCF, "smtpd_reject_unlisted_recipient") {
		t.Fatal("the guide changes smtpd_reject_unlisted_recipient: the test is for the default")
	}
	config := s.named(t, snippet).Text
	secrets := filepath.Join(t.TempDir(), "srs.secrets")
	if err := os.WriteFile(secrets, []byte("c2VjcmV0IG9mIHRoZSBndWlkZQ==\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pf := startChrooted(t, mainCF, "", nil)
	writeMaps(t, pf, s.named(t, "srs-virtual"), s.named(t, "srs-virtual-srs"))
	s.use(s.named(t, "srs-virtual"))
	s.use(s.named(t, "srs-virtual-srs"))
	postmap(t, pf, "virtual")
	d := startForPostfix(t, pf, mainCF, config, map[string]string{"/etc/tollgate/arc2026.key": arcKey(t), "/etc/tollgate/srs.secrets": secrets})

	// Forwarded: alice@forward.example.org is alice@elsewhere.example.
	res := pf.Swaks(t, "--from", "carol@example.net", "--to", "alice@forward.example.org", "--header", "Subject: forwarded")
	if res.ExitCode != 0 {
		t.Fatalf("forwarded message: exit %d\n%s\npostfix log:\n%s", res.ExitCode, res.Output, pf.Log())
	}
	fwd := pf.WaitMessages(t, 1, 30*time.Second)[0]
	srsSender := strings.Trim(fwd.Envelope.From(), "<>")
	if !strings.HasPrefix(srsSender, "SRS0=") || !strings.HasSuffix(srsSender, "=example.net=carol@fwd.example.org") {
		t.Fatalf("forwarded with envelope sender %q", fwd.Envelope.From())
	}
	if to := fwd.Envelope.To(); len(to) != 1 || !strings.Contains(to[0], "alice@elsewhere.example") {
		t.Errorf("forwarded to %v", to)
	}
	if n := len(fwd.Header("ARC-Seal")); sealed && n != 1 || !sealed && n != 0 {
		t.Errorf("the forwarded message has %d ARC seals:\n%s", n, fwd.Raw)
	}

	// The bounce comes back to the SRS address.
	res = pf.Swaks(t, "--from", "<>", "--to", srsSender, "--header", "Subject: Undelivered Mail Returned to Sender")
	if res.ExitCode != 0 {
		t.Fatalf("the bounce was refused: exit %d\n%s\npostfix log:\n%s", res.ExitCode, res.Output, pf.Log())
	}
	bounce := pf.WaitMessages(t, 2, 30*time.Second)[1]
	if to := bounce.Envelope.To(); len(to) != 1 || !strings.Contains(to[0], "carol@example.net") {
		t.Errorf("the bounce went to %v, not back to carol@example.net\npostfix log:\n%s", to, pf.Log())
	}
	if from := bounce.Envelope.From(); from != "<>" && from != "" {
		t.Errorf("the bounce's sender is %q", from)
	}

	// A forged SRS address passes Postfix's map and is refused by tollgate.
	hash, rest, _ := strings.Cut(strings.TrimPrefix(srsSender, "SRS0="), "=")
	forged := "SRS0=" + strings.Repeat("A", len(hash)) + "=" + rest
	res = pf.Swaks(t, "--from", "<>", "--to", forged)
	if res.ExitCode == 0 || !strings.Contains(res.Output, "550 5.1.1") || strings.Contains(res.Output, "virtual alias table") {
		t.Errorf("forged SRS address %s: exit %d\n%s", forged, res.ExitCode, res.Output)
	}
	if !d.waitMetric(t, `tollgate_srs_reverse_total{result="bad_hash"} 1`) {
		_, body := d.get(t, "/metrics")
		t.Errorf("metrics:\n%s", grepLines(body, "tollgate_srs"))
	}
}

// The guide's SRS socketmap (5.2.1): its tollgate.yaml and main.cf lines as
// printed, with a chrooted Postfix. Postfix's postmap asks the socketmap the
// way the guide says to check it by hand; a forwarded message leaves with an
// SRS sender, and the bounce to it goes back to the original sender.
func (s *snippets) srsSocketmap(t *testing.T) {
	mainCF := s.use(s.named(t, "srs-socketmap-main.cf"))
	secrets := filepath.Join(t.TempDir(), "srs.secrets")
	if err := os.WriteFile(secrets, []byte("c2VjcmV0IG9mIHRoZSBndWlkZQ==\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pf := startChrooted(t, mainCF, "", map[string]string{
		"virtual_alias_domains": "forward.example.org",
		"virtual_alias_maps":    "inline:{ alice@forward.example.org=alice@elsewhere.example }",
	})
	config := strings.ReplaceAll(s.use(s.named(t, "srs-socketmap")), "/var/spool/postfix/", pf.QueueDir()+"/")
	config = strings.ReplaceAll(config, "/etc/tollgate/srs.secrets", secrets)
	launchDaemon(t, config, "unix:"+pf.QueueDir()+"/tollgate/tollgate.sock")

	sock := pf.QueueDir() + "/tollgate/srs.sock"
	q := func(key, m string) string {
		out, err := exec.Command("/usr/sbin/postmap", "-q", key, "socketmap:unix:"+sock+":"+m).CombinedOutput()
		if err != nil {
			t.Fatalf("postmap -q %s %s: %v %s", key, m, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if a := q("carol@example.net", "forward"); !strings.HasPrefix(a, "SRS0=") || q(a, "reverse") != "carol@example.net" {
		t.Errorf("postmap -q through the socketmap: forward gives %q", a)
	}

	res := pf.Swaks(t, "--from", "carol@example.net", "--to", "alice@forward.example.org", "--header", "Subject: forwarded")
	if res.ExitCode != 0 {
		t.Fatalf("forwarded message: exit %d\n%s\npostfix log:\n%s", res.ExitCode, res.Output, pf.Log())
	}
	fwd := pf.WaitMessages(t, 1, 30*time.Second)[0]
	srsSender := strings.Trim(fwd.Envelope.From(), "<>")
	if !strings.HasPrefix(srsSender, "SRS0=") || !strings.HasSuffix(srsSender, "=example.net=carol@fwd.example.org") {
		t.Fatalf("forwarded with envelope sender %q\npostfix log:\n%s", fwd.Envelope.From(), pf.Log())
	}
	res = pf.Swaks(t, "--from", "<>", "--to", srsSender, "--header", "Subject: Undelivered Mail Returned to Sender")
	if res.ExitCode != 0 {
		t.Fatalf("the bounce was refused: exit %d\n%s\npostfix log:\n%s", res.ExitCode, res.Output, pf.Log())
	}
	bounce := pf.WaitMessages(t, 2, 30*time.Second)[1]
	if to := bounce.Envelope.To(); len(to) != 1 || !strings.Contains(to[0], "carol@example.net") {
		t.Errorf("the bounce went to %v, not back to carol@example.net\npostfix log:\n%s", to, pf.Log())
	}
}

// The XCLIENT listener the docs print for master.cf: appended as printed,
// with the guide's proxy configuration; a client named by XCLIENT is seen
// as that client, with its login.
func (s *snippets) proxyListener(t *testing.T) {
	n := 0
	for _, b := range s.distinct(docs.MasterCF) {
		if strings.Contains(b.Text, "smtpd_authorized_xclient_hosts") {
			n++
			t.Run(b.String(), func(t *testing.T) { s.proxyListenerBlock(t, b) })
		}
	}
	if n == 0 {
		t.Fatal("no master.cf block with the XCLIENT listener")
	}
}

func (s *snippets) proxyListenerBlock(t *testing.T, block docs.Block) {
	var addr string
	for _, l := range strings.Split(s.use(block), "\n") {
		if l != "" && l[0] != '#' && l[0] != ' ' {
			addr, _, _ = strings.Cut(l, " ")
			break
		}
	}
	mainCF := s.use(s.named(t, "quick-start-main.cf"))
	// This host takes mail for example.org: the proxied client is not in
	// mynetworks, and an XCLIENT login is not a SASL login to Postfix.
	pf := startChrooted(t, mainCF, block.Text, map[string]string{"relay_domains": "example.org"})
	d := startForPostfix(t, pf, mainCF, s.named(t, "proxy").Text, nil)
	res := e2e.Swaks(t, "--server", addr, "--xclient-addr", "203.0.113.8", "--xclient-login", "carol",
		"--from", "carol@example.org", "--to", "bob@example.org")
	if res.ExitCode != 0 {
		t.Fatalf("through the XCLIENT listener %s: exit %d\n%s\npostfix log:\n%s", addr, res.ExitCode, res.Output, pf.Log())
	}
	pf.WaitMessages(t, 1, 30*time.Second)
	d.waitLog(t, "203.0.113.8]")
	d.waitLog(t, "login=carol")
}

// The submission port as the guide prints it: Postfix starts with it, it
// insists on TLS, and refuses a client that has not authenticated, with
// tollgate attached (smtpd_milters is inherited).
func (s *snippets) submission(t *testing.T) {
	var block docs.Block
	for _, b := range s.distinct(docs.MasterCF) {
		if strings.HasPrefix(b.Text, "submission ") {
			block = b
		}
	}
	if block.Text == "" {
		t.Fatal("no master.cf block with the submission service")
	}
	mainCF := s.use(s.named(t, "quick-start-main.cf"))
	// A certificate, which the guide assumes the host has.
	pf := startChrooted(t, mainCF, s.use(block), map[string]string{
		"smtpd_tls_cert_file": "/etc/ssl/certs/ssl-cert-snakeoil.pem",
		"smtpd_tls_key_file":  "/etc/ssl/private/ssl-cert-snakeoil.key",
	})
	d := startForPostfix(t, pf, mainCF, stampConfig, nil)
	res := e2e.Swaks(t, "--server", "127.0.0.1:587", "--from", "alice@example.org", "--to", "bob@example.net")
	if res.ExitCode == 0 || !strings.Contains(res.Output, "STARTTLS") {
		t.Errorf("plain text submission: exit %d\n%s", res.ExitCode, res.Output)
	}
	res = e2e.Swaks(t, "--server", "127.0.0.1:587", "--tls", "--from", "alice@example.org", "--to", "bob@example.net")
	if res.ExitCode == 0 || !regexp.MustCompile(`<[*~]\* 5\d\d .*(Access denied|rejected)`).MatchString(res.Output) {
		t.Errorf("unauthenticated submission over TLS: exit %d\n%s\npostfix log:\n%s", res.ExitCode, res.Output, pf.Log())
	}
	if !d.waitMetric(t, "tollgate_sessions_total 2") {
		_, body := d.get(t, "/metrics")
		t.Errorf("tollgate did not see both submission sessions:\n%s", grepLines(body, "tollgate_sessions"))
	}
}

// The sendmail.mc lines, added to a Sendmail's mc as printed, with tollgate
// on the socket they name; the macros they list arrive.
func (s *snippets) sendmail(t *testing.T) {
	for _, b := range s.distinct(docs.SendmailMC) {
		t.Run(b.String(), func(t *testing.T) {
			m := regexp.MustCompile(`S=unix:(/\S+?),`).FindStringSubmatch(s.use(b))
			if m == nil {
				t.Fatalf("no S=unix:... in\n%s", b.Text)
			}
			sock := m[1]
			dir := filepath.Dir(sock)
			if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
				if err := os.MkdirAll(dir, 0o750); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.RemoveAll(dir) })
			}
			if _, err := os.Lstat(sock); err == nil {
				if c, err := net.Dial("unix", sock); err == nil {
					c.Close()
					t.Fatalf("%s answers: a tollgate runs on this machine; the test needs the documented path", sock)
				}
				os.Remove(sock) // left by a daemon that was killed
			}
			t.Cleanup(func() { os.Remove(sock) }) // after the daemon's own cleanup kills it
			config := strings.Replace(s.named(t, "sendmail").Text, "acl:\n", "acl:\n  data:\n    - accept: {name: stamp, add_header: \"X-Doc-Snippet: $sender_host_address $queue_id\"}\n", 1)
			d := launchDaemon(t, config, "unix:"+sock)
			sm := e2e.StartSendmail(t, e2e.SendmailOptions{MCText: b.Text})
			res := sm.Swaks(t, "--from", "alice@example.net", "--to", "bob@example.org")
			if res.ExitCode != 0 {
				t.Fatalf("swaks: exit %d\n%s\nsendmail log:\n%s", res.ExitCode, res.Output, sm.Log())
			}
			msg := sm.WaitMessages(t, 1, 30*time.Second)[0]
			v := msg.Header("X-Doc-Snippet")
			if len(v) != 1 || !regexp.MustCompile(`^127\.0\.0\.1 \S+$`).MatchString(v[0]) {
				t.Errorf("X-Doc-Snippet %q: the client address and the queue id did not both arrive", v)
			}
			d.waitLog(t, "decision=accept")
		})
	}
}

// The Prometheus configuration as printed, beside the shipped rules, passes
// promtool, as the guide has the reader run it.
func (s *snippets) prometheus(t *testing.T) {
	e2e.RequireProgram(t, "/usr/bin/promtool", "prometheus")
	for _, b := range s.distinct(docs.Prometheus) {
		dir := t.TempDir()
		rules, err := os.ReadFile("../../deploy/prometheus/tollgate.rules.yml")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "tollgate.rules.yml"), rules, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(s.use(b)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("/usr/bin/promtool", "check", "config", filepath.Join(dir, "prometheus.yml")).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "SUCCESS") || !strings.Contains(string(out), "tollgate.rules.yml") {
			t.Errorf("%v: promtool check config: %v\n%s", b, err, out)
		}
	}
}

// The guide's DCC setup: greylisted first, delivered on retry; the HELO map
// gives dccifd the cluster's address.
func (s *snippets) dcc(t *testing.T) {
	var greylist atomic.Bool
	greylist.Store(true)
	dccd := dcctest.New(t, dcctest.Config{Handler: func(*dcctest.Request) dcctest.Reply {
		if greylist.Load() {
			return dcctest.Reply{Overall: 'G', Header: dcctest.DefaultHeader}
		}
		return dcctest.Reply{Overall: 'A', Header: dcctest.DefaultHeader}
	}})
	heloMap := filepath.Join(t.TempDir(), "dcc-helo-map")
	if err := os.WriteFile(heloMap, []byte("mail.example.net 192.0.2.10\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mainCF := s.use(s.named(t, "quick-start-main.cf"))
	pf := startChrooted(t, mainCF, "", nil)
	d := startForPostfix(t, pf, mainCF, s.named(t, "dcc").Text, map[string]string{
		"/var/dcc/dccifd": dccd.DCCAddress(), "/etc/tollgate/dcc-helo-map": heloMap})
	send := func() e2e.SwaksResult {
		return pf.Swaks(t, "--helo", "mail.example.net", "--from", "alice@example.net", "--to", "bob@example.org")
	}
	if res := send(); res.ExitCode == 0 || !strings.Contains(res.Output, "451 4.7.1 greylisted, please try again later") {
		t.Fatalf("first attempt: exit %d\n%s", res.ExitCode, res.Output)
	}
	greylist.Store(false)
	if res := send(); res.ExitCode != 0 {
		t.Fatalf("retry: exit %d\n%s", res.ExitCode, res.Output)
	}
	pf.WaitMessages(t, 1, 30*time.Second)
	if reqs := dccd.WaitRequests(2, 5*time.Second); len(reqs) != 2 || reqs[1].ClientIP.String() != "192.0.2.10" {
		t.Errorf("dccifd requests %+v: want the client from the HELO map", reqs)
	}
	d.waitLog(t, "decision=accept")
}

// The guide's BMI setup on a real spamd: the strict opt-in drops spam for
// its recipient only; a very spammy message is held in Postfix's hold queue.
func (s *snippets) bmi(t *testing.T) {
	spamd := e2e.StartSpamd(t, map[string]string{"strict": "required_score -5"})
	optins := filepath.Join(t.TempDir(), "bmi-optins")
	if err := os.WriteFile(optins, []byte("ceo@example.org: strict\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mainCF := s.use(s.named(t, "quick-start-main.cf"))
	pf := startChrooted(t, mainCF, "", nil)
	d := startForPostfix(t, pf, mainCF, s.named(t, "bmi").Text, map[string]string{
		`"127.0.0.1:783"`: `"` + spamd.Addr + `"`, "/etc/tollgate/bmi-optins": optins})

	res := pf.Swaks(t, "--from", "alice@example.net", "--to", "ceo@example.org,bob@example.org",
		"--header", "Subject: lunch", "--body", "Shall we have lunch on Friday?")
	if res.ExitCode != 0 {
		t.Fatalf("exit %d\n%s", res.ExitCode, res.Output)
	}
	msg := pf.WaitMessages(t, 1, 60*time.Second)[0]
	if to := msg.Envelope.To(); len(to) != 1 || !strings.Contains(to[0], "bob@example.org") {
		t.Errorf("delivered to %v: the strict opt-in's recipient must not get it", to)
	}

	gtube := "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
	if res := pf.Swaks(t, "--from", "alice@example.net", "--to", "bob@example.org", "--header", "Subject: gtube", "--body", gtube); res.ExitCode != 0 {
		t.Fatalf("exit %d\n%s", res.ExitCode, res.Output)
	}
	hold := filepath.Join(pf.QueueDir(), "hold")
	deadline := time.Now().Add(30 * time.Second)
	for {
		entries, _ := os.ReadDir(hold)
		if len(entries) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the GTUBE message is not in the hold queue (%d files)\npostfix log:\n%s", len(entries), pf.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(pf.Sink.Messages(t)); n != 1 {
		t.Errorf("%d messages delivered, want 1: the quarantined one went through", n)
	}
	d.waitMetric(t, `tollgate_bmi_verdicts_total{outcome="drop"} 1`)
}

// Each systemd block is a drop-in for the shipped unit, as "systemctl edit"
// writes it; systemd-analyze verifies the unit with it, in a root holding
// the unit, the programs it runs and systemd's own units.
func (s *snippets) systemd(t *testing.T) {
	e2e.RequireProgram(t, "/usr/bin/systemd-analyze", "systemd")
	for _, b := range s.distinct(docs.Systemd) {
		root := t.TempDir()
		for _, d := range []string{"usr/bin", "bin", "lib/systemd", "etc/systemd/system/tollgate.service.d"} {
			if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range [][]string{
			{"cp", binary, filepath.Join(root, "usr/bin/tollgate")},
			{"cp", "/bin/kill", filepath.Join(root, "bin/kill")},
			{"cp", "-a", "/lib/systemd/system", filepath.Join(root, "lib/systemd/")},
			{"cp", "../../deploy/systemd/tollgate.service", filepath.Join(root, "etc/systemd/system/tollgate.service")},
		} {
			if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", c, err, out)
			}
		}
		dropIn := filepath.Join(root, "etc/systemd/system/tollgate.service.d/override.conf")
		if err := os.WriteFile(dropIn, []byte(s.use(b)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("/usr/bin/systemd-analyze", "verify", "--root="+root, "tollgate.service").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "" {
			t.Errorf("%v: systemd-analyze verify with the drop-in: %v\n%s", b, err, out)
		}
		// A key the unit does not know would be reported: the check sees the drop-in.
		if err := os.WriteFile(dropIn, []byte(b.Text+"NoSuchSetting=1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, _ := exec.Command("/usr/bin/systemd-analyze", "verify", "--root="+root, "tollgate.service").CombinedOutput(); !strings.Contains(string(out), "NoSuchSetting") {
			t.Errorf("systemd-analyze did not read the drop-in at %s:\n%s", dropIn, out)
		}
	}
}

// Section 5.1: mail to a list address is sealed, with the timestamps
// option; other mail is validated, not sealed.
func (s *snippets) arcSection(t *testing.T) {
	mainCF := s.use(s.named(t, "quick-start-main.cf"))
	pf := startChrooted(t, mainCF, "", map[string]string{"relay_domains": "lists.example.org example.org"})
	d := startForPostfix(t, pf, mainCF, s.named(t, "arc").Text, map[string]string{"/etc/tollgate/arc2026.key": arcKey(t)})
	for _, rcpt := range []string{"team@lists.example.org", "bob@example.org"} {
		if res := pf.Swaks(t, "--from", "alice@example.net", "--to", rcpt, "--header", "Subject: to "+rcpt); res.ExitCode != 0 {
			t.Fatalf("to %s: exit %d\n%s", rcpt, res.ExitCode, res.Output)
		}
	}
	msgs := pf.WaitMessages(t, 2, 30*time.Second)
	for _, m := range msgs {
		to := strings.Join(m.Envelope.To(), ",")
		seal := m.Header("ARC-Seal")
		switch {
		case strings.Contains(to, "lists.example.org") && (len(seal) != 1 || !regexp.MustCompile(`\bt=\d+`).MatchString(seal[0])):
			t.Errorf("list mail: ARC-Seal %q, want one with t= (options: [timestamps])", seal)
		case !strings.Contains(to, "lists.example.org") && len(seal) != 0:
			t.Errorf("mail to %s was sealed: %q", to, seal)
		}
		if ar := m.Header("Authentication-Results"); len(ar) != 1 || !strings.HasPrefix(strings.Join(strings.Fields(ar[0]), " "), "mx.example.org; arc=none") {
			t.Errorf("mail to %s: Authentication-Results %q", to, ar)
		}
	}
	d.waitLog(t, "ARC=none/sealed")
}
