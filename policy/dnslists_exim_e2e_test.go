//go:build e2e

package policy

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/dnstest"
	"github.com/tollgate/tollgate/internal/e2e"
	"github.com/tollgate/tollgate/milter"
)

// Exim 4.96 from Debian's packages, unpacked privately as srs/exim_e2e_test.go
// does (scripts/install-test-deps.sh downloads them to eximDebCache): its
// dnslists and tollgate's ask the same DNS server for the same items and
// clients, and must agree on listed or not, on deferring, and on every
// $dnslist_* variable.
const (
	eximDebCache = "/var/cache/tollgate-tests/exim"
	// eximDNSAddr is where the DNS server listens for Exim, which reads
	// resolv.conf (no port there, so 53). Not 127.0.0.2, which other
	// packages' tests use for their peers at the same time.
	eximDNSAddr = "127.0.0.36"
)

var eximDebs = []string{"exim4-daemon-heavy", "exim4-base", "exim4-config", "libmariadb3", "libidn12", "libspf2-2", "mariadb-common"}

func TestDNSListsAgreeWithExim(t *testing.T) {
	dpkgDeb := e2e.RequireProgram(t, "dpkg-deb", "dpkg")
	unshare := e2e.RequireProgram(t, "unshare", "util-linux")
	if out, err := exec.Command("getent", "passwd", "Debian-exim").CombinedOutput(); err != nil {
		t.Fatalf("e2e: Exim needs the system user Debian-exim (%v %s): run scripts/install-test-deps.sh as root", err, out)
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	for _, name := range eximDebs {
		matches, _ := filepath.Glob(filepath.Join(eximDebCache, name+"_*.deb"))
		if len(matches) == 0 {
			t.Fatalf("e2e: no %s package in %s: run scripts/install-test-deps.sh as root", name, eximDebCache)
		}
		if out, err := exec.Command(dpkgDeb, "-x", slices.Max(matches), root).CombinedOutput(); err != nil {
			t.Fatalf("dpkg-deb -x %s: %v\n%s", name, err, out)
		}
	}
	for _, d := range []string{"spool", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	resolvConf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolvConf, []byte("nameserver "+eximDNSAddr+"\noptions timeout:1 attempts:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := dnstest.StartOn(t, eximDNSAddr+":53")
	setDNSListZones(srv)

	const show = "listed|$dnslist_domain|$dnslist_value|$dnslist_text|$dnslist_matched"
	// exim runs Exim's connect ACL for client in -bh mode (an SMTP session
	// read from standard input, no daemon) and returns what it answered:
	// "accept", "defer", or the deny message.
	exim := func(t *testing.T, items []string, client string) string {
		conf := filepath.Join(dir, "exim.conf")
		src := fmt.Sprintf(`keep_environment =
primary_hostname = tollgate.test
spool_directory = %s
log_file_path = %s
acl_smtp_connect = acl_conn
begin acl
acl_conn:
  deny dnslists = <; %s
       message = %s
  accept
`, filepath.Join(dir, "spool"), filepath.Join(dir, "log", "%slog"), strings.Join(items, " ; "), show)
		if err := os.WriteFile(conf, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(unshare, "-m", "sh", "-c", `mount --bind "$0" /etc/resolv.conf && exec "$@"`,
			resolvConf, filepath.Join(root, "usr/sbin/exim4"), "-C", conf, "-bh", client)
		cmd.Env = []string{"LD_LIBRARY_PATH=" + filepath.Join(root, "usr/lib/x86_64-linux-gnu") + ":" + filepath.Join(root, "usr/lib"), "PATH=/usr/bin:/bin"}
		cmd.Stdin = strings.NewReader("QUIT\r\n")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("exim -bh: %v\n%s\n%s", err, stdout.String(), stderr.String())
		}
		// Exim wraps a long reply at spaces into 5xx- lines: join them.
		var reply []string
		for line := range strings.Lines(stdout.String()) {
			line = strings.TrimRight(line, "\r\n")
			switch {
			case strings.HasPrefix(line, "220 "):
				return "accept"
			case strings.HasPrefix(line, "4"):
				return "defer"
			case len(line) >= 4 && line[0] == '5':
				reply = append(reply, line[4:])
				if line[3] == ' ' {
					return strings.Join(reply, " ")
				}
			}
		}
		t.Fatalf("exim -bh answered nothing:\n%s\n%s", stdout.String(), stderr.String())
		return ""
	}
	tollgate := func(t *testing.T, items []string, client string) string {
		var yml strings.Builder
		fmt.Fprintf(&yml, "dns: {server: \"%s:53\", timeout: 2s}\nacl:\n  connect:\n    - deny:\n        message: \"%s\"\n        dnslists:\n", eximDNSAddr, show)
		for _, it := range items {
			fmt.Fprintf(&yml, "          - %q\n", it)
		}
		yml.WriteString("    - accept: {}\n")
		p := mustParse(t, yml.String())
		env := NewEnv(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
		rt, err := env.Runtime(p)
		if err != nil {
			t.Fatal(err)
		}
		s := &milter.Session{Vars: map[string]string{}, Identity: milter.Identity{ClientAddr: netip.MustParseAddr(client)}}
		d, _ := rt.Evaluate(t.Context(), milter.StageConnect, s, nil, nil)
		switch d.Verdict {
		case milter.Accept:
			return "accept"
		case milter.TempFail:
			return "defer"
		}
		return d.Reply.Text
	}

	for _, tc := range []struct {
		items  []string
		client string
	}{
		{[]string{"zen.example.org"}, "192.0.2.1"},
		{[]string{"zen.example.org"}, "192.0.2.2"},
		{[]string{"zen.example.org"}, "2001:db8::1"},
		{[]string{"bl.example.net=127.0.0.3"}, "192.0.2.1"},
		{[]string{"bl.example.net=127.0.0.9,127.0.0.2"}, "192.0.2.1"},
		{[]string{"bl.example.net=127.0.0.9"}, "192.0.2.1"},
		{[]string{"bl.example.net==127.0.0.2"}, "192.0.2.1"},
		{[]string{"bl.example.net==127.0.0.3,127.0.0.2"}, "192.0.2.1"},
		{[]string{"bl.example.net!=127.0.0.2"}, "192.0.2.1"},
		{[]string{"bl.example.net!=127.0.0.9"}, "192.0.2.1"},
		{[]string{"bl.example.net!==127.0.0.2"}, "192.0.2.1"},
		{[]string{"bits.example.net&0.0.0.4"}, "192.0.2.1"},
		{[]string{"bits.example.net&0.0.0.12"}, "192.0.2.1"},
		{[]string{"bits.example.net=&0.0.0.2,0.0.0.4"}, "192.0.2.1"},
		{[]string{"bits.example.net!&0.0.0.2"}, "192.0.2.1"},
		{[]string{"bits.example.net!&0.0.0.8"}, "192.0.2.1"},
		{[]string{"wild.example.net"}, "192.0.2.1"},
		{[]string{"wild.example.net=192.0.2.99"}, "192.0.2.1"},
		{[]string{"txt.example.net,bl.example.net=127.0.0.2"}, "192.0.2.1"},
		{[]string{"dbl.example.net/spam.example.com"}, "192.0.2.2"},
		{[]string{"zen.example.org=127.0.0.4/192.0.2.5"}, "192.0.2.2"},
		{[]string{"zen.example.net", "bl.example.net=127.0.0.2", "zen.example.org"}, "192.0.2.1"},
		{[]string{"zen.example.org/<|192.0.2.2|192.0.2.1|192.0.2.5"}, "192.0.2.9"},
		{[]string{"zen.example.org/<|192.0.2.2|2001:db8::1"}, "192.0.2.9"},
		{[]string{"+defer_unknown", "broken.example.net/<|192.0.2.1|192.0.2.2"}, "192.0.2.9"},
		{[]string{"+defer_unknown", "broken.example.net/<|192.0.2.1|192.0.2.3", "zen.example.org"}, "192.0.2.1"},
		{[]string{"broken.example.net", "zen.example.org"}, "192.0.2.1"},
		{[]string{"broken.example.net"}, "192.0.2.1"},
		{[]string{"+include_unknown", "broken.example.net"}, "192.0.2.1"},
		{[]string{"+defer_unknown", "broken.example.net", "zen.example.org"}, "192.0.2.1"},
		{[]string{"broken.example.net", "+defer_unknown", "bl.example.net=127.0.0.9"}, "192.0.2.1"},
	} {
		name := strings.Join(tc.items, " ; ") + " for " + tc.client
		t.Run(name, func(t *testing.T) {
			want := exim(t, tc.items, tc.client)
			// Exim writes an IPv6 client's address in full in $dnslist_matched
			// (its $sender_host_address); tollgate as its own
			// $sender_host_address does, compressed.
			if a := netip.MustParseAddr(tc.client); a.Is6() {
				want = strings.Replace(want, "|"+fullIPv6(a), "|"+a.String(), 1)
			}
			if got := tollgate(t, tc.items, tc.client); got != want {
				t.Errorf("tollgate %q, Exim %q", got, want)
			}
		})
	}
}

// fullIPv6 writes an IPv6 address as Exim does: eight groups of four
// hexadecimal digits.
func fullIPv6(a netip.Addr) string {
	b := a.As16()
	groups := make([]string, 8)
	for i := range groups {
		groups[i] = fmt.Sprintf("%02x%02x", b[2*i], b[2*i+1])
	}
	return strings.Join(groups, ":")
}
