package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/docs"
	"github.com/tollgate/tollgate/policy"
)

// docs/guide.md: its YAML examples load (policy's documentation test loads
// every one); here, its fences are yaml, sh, text or a program's kind, the repository files it
// names exist, and the quick start's tollgate socket and Postfix's
// smtpd_milters name the same file through Postfix's chroot.
func TestGuide(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repo, "docs/guide.md"))
	if err != nil {
		t.Fatal(err)
	}
	guide := string(b)
	inFence := false
	for i, l := range strings.Split(guide, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "```") {
			continue
		}
		lang := strings.TrimPrefix(strings.TrimSpace(l), "```")
		if !inFence && lang != "yaml" && lang != "sh" && lang != "text" && !docs.IsProgram(lang) {
			t.Errorf("docs/guide.md:%d: fence %q: use yaml (a complete tollgate configuration), sh, text, or the program's kind (%v)", i+1, lang, docs.Programs)
		}
		inFence = !inFence
	}
	if inFence {
		t.Error("docs/guide.md: a fence is not closed")
	}
	for _, m := range regexp.MustCompile("`((?:deploy|scripts|docs|cmd)/[A-Za-z0-9_./-]*[A-Za-z0-9_])`").FindAllStringSubmatch(guide, -1) {
		if _, err := os.Stat(filepath.Join(repo, m[1])); err != nil {
			t.Errorf("docs/guide.md names %s, which is not in the repository", m[1])
		}
	}

	// Section 5's complete configurations are for the quick start's
	// chrooted Postfix: pasted alone, each must keep listen: and socket:.
	_, sec5, ok := strings.Cut(guide, "## 5. Each feature from zero")
	if !ok {
		t.Fatal("docs/guide.md has no section 5")
	}
	sec5, _, _ = strings.Cut(sec5, "## 6. ")
	blocks, err := docs.Parse("docs/guide.md", []byte(sec5))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, b := range blocks {
		if b.Info != "yaml" {
			continue
		}
		n++
		if !strings.Contains(b.Text, "listen: unix:/var/spool/postfix/tollgate/tollgate.sock\n") || !strings.Contains(b.Text, "socket: {group: postfix, mode: \"0660\"}\n") {
			t.Errorf("docs/guide.md section 5, configuration %d, drops listen: or socket::\n%s", n, b.Text)
		}
	}
	if n < 5 {
		t.Errorf("only %d configurations in section 5", n)
	}

	// The quick start: the configuration, then main.cf's lines.
	_, after, ok := strings.Cut(guide, quickStartMarker+"\n```yaml\n")
	config, rest, ok2 := strings.Cut(after, "```")
	if !ok || !ok2 {
		t.Fatalf("docs/guide.md has no yaml block after %q", quickStartMarker)
	}
	p, err := policy.Parse("quick start", []byte(strings.ReplaceAll(config, "/etc/tollgate/arc2026.key", testKey(t))), features...)
	if err != nil {
		t.Fatal(err)
	}
	milters := regexp.MustCompile(`(?m)^smtpd_milters = unix:(\S+)$`).FindStringSubmatch(rest)
	if milters == nil {
		t.Fatal("the quick start sets no smtpd_milters = unix:... after its configuration")
	}
	if p.Listen.Network != "unix" || p.Listen.Addr != "/var/spool/postfix"+milters[1] {
		t.Errorf("the quick start's tollgate listens on %v; Postfix, chrooted in /var/spool/postfix, connects to %s", p.Listen, milters[1])
	}
	if p.Socket.Group != "postfix" || p.Socket.Mode&0o060 != 0o060 {
		t.Errorf("the quick start's socket (%+v) must let the group postfix connect", p.Socket)
	}
}

// testKey is a fresh ARC key for configurations that name one.
func testKey(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "arc.key")
	run(t, tollgateBinary(t), "arc", "keygen", "--domain", "example.org", "--selector", "t", "--type", "ed25519", "--out", p)
	return p
}

// quickStartMarker precedes the configuration the guide's quick start installs.
const quickStartMarker = "<!-- snippet: quick-start (deploy/package_test.go installs it) -->"
