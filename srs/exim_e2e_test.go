//go:build e2e

package srs

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/e2e"
)

// Exim 4.96 from Debian's packages, unpacked privately (exim4-daemon-heavy
// conflicts with postfix, so it is downloaded, never installed:
// scripts/install-test-deps.sh puts the debs in eximDebCache and adds the
// user Debian-exim Exim insists on). No daemon runs: every check is an
// expansion with exim -be, under a minimal configuration.
const eximDebCache = "/var/cache/tollgate-tests/exim"

// eximDebs: keep in step with exim_debs in scripts/install-test-deps.sh.
var eximDebs = []string{"exim4-daemon-heavy", "exim4-base", "exim4-config", "libmariadb3", "libidn12", "libspf2-2", "mariadb-common"}

type eximBin struct {
	root, conf string
}

func unpackExim(t *testing.T) eximBin {
	t.Helper()
	dpkgDeb := e2e.RequireProgram(t, "dpkg-deb", "dpkg")
	if out, err := exec.Command("getent", "passwd", "Debian-exim").CombinedOutput(); err != nil {
		t.Fatalf("e2e: Exim needs the system user Debian-exim (%v %s): run scripts/install-test-deps.sh as root", err, out)
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	for _, name := range eximDebs {
		matches, _ := filepath.Glob(filepath.Join(eximDebCache, name+"_*.deb"))
		if len(matches) == 0 {
			t.Fatalf("e2e: no %s package in %s: run scripts/install-test-deps.sh as root, which downloads "+
				"Exim's packages there (unpacked, never installed: exim4-daemon-heavy conflicts with postfix)", name, eximDebCache)
		}
		if out, err := exec.Command(dpkgDeb, "-x", slices.Max(matches), root).CombinedOutput(); err != nil {
			t.Fatalf("dpkg-deb -x %s: %v\n%s", name, err, out)
		}
	}
	conf := filepath.Join(dir, "exim.conf")
	if err := os.WriteFile(conf, []byte("keep_environment =\nprimary_hostname = tollgate.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return eximBin{root: root, conf: conf}
}

// expand runs each string through exim -be (one run, one line each) and
// returns the results.
func (x eximBin) expand(t *testing.T, exprs []string) []string {
	t.Helper()
	return x.expandAt(t, time.Time{}, exprs)
}

// expandAt is expand with Exim's clock at when (faketime), or the real
// clock for the zero time.
func (x eximBin) expandAt(t *testing.T, when time.Time, exprs []string) []string {
	t.Helper()
	args := []string{filepath.Join(x.root, "usr/sbin/exim4"), "-C", x.conf, "-be"}
	if !when.IsZero() {
		ft := e2e.RequireProgram(t, "faketime", "faketime")
		args = append([]string{ft, "-f", when.UTC().Format("2006-01-02 15:04:05")}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = []string{"TZ=UTC", "LD_LIBRARY_PATH=" + filepath.Join(x.root, "usr/lib/x86_64-linux-gnu") + ":" + filepath.Join(x.root, "usr/lib"), "PATH=/usr/bin:/bin"}
	cmd.Stdin = strings.NewReader(strings.Join(exprs, "\n") + "\n")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("exim -be: %v\n%s", err, stderr.String())
	}
	var out []string
	for line := range strings.Lines(stdout.String()) {
		line = strings.TrimSuffix(line, "\n")
		if line == "> " || line == ">" {
			continue
		}
		r, ok := strings.CutPrefix(line, "> ")
		if !ok {
			t.Fatalf("exim -be: unexpected line %q in\n%s", line, stdout.String())
		}
		out = append(out, r)
	}
	if len(out) != len(exprs) {
		t.Fatalf("exim -be: %d results for %d expressions:\n%s\n%s", len(out), len(exprs), stdout.String(), stderr.String())
	}
	return out
}

// eximEscape keeps a string literal in an Exim expansion.
func eximEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `$`, `\$`, `{`, `\{`, `}`, `\}`).Replace(s)
}

// inboundLocal is the local part as an Exim router hands it to inbound_srs:
// unquoted and lower-cased (caseful_local_part is off by default).
func inboundLocal(addr string) string {
	return strings.ToLower(unquoteLocal(addr[:strings.LastIndexByte(addr, '@')]))
}

const eximSecret = "tops3cr3t"

// eximSenders: separators and = in local parts, case, SRS senders, long and
// quoted local parts, non-ASCII.
var eximSenders = []string{
	"alice@example.com",
	"Alice.Smith@Example.COM",
	"x+tag@sub.example.org",
	"a-b_c@example.net",
	"a=b=c@example.net",
	"SRS0=abcd=jw=orig.example=bob@hop.example",
	"SRS1=HHHH=hop1.example==Ak0K=JK=orig.example=carol@hop2.example",
	strings.Repeat("long.local-part.", 4) + "end@example.org",
	`"a b"@example.com`,
	`"Quoted.Dot"@Example.org`,
	"j\u00f6rg@example.de",
	"o'brien@example.ie",
}

// eximCannotReverse are the senders whose srs_encode Exim's own inbound_srs
// refuses, and so do we: srs_encode hashes the sender as given, inbound_srs
// hashes a recipient it quotes by its own rule, so a quoted local part that
// needs no quotes, or one with a byte outside ASCII (which inbound_srs
// quotes), no longer matches.
var eximCannotReverse = map[string]bool{`"Quoted.Dot"@Example.org`: true, "j\u00f6rg@example.de": true}

func TestEximNativeSRS(t *testing.T) {
	x := unpackExim(t)
	avoidMidnight(t)
	now := time.Now()
	ours := func(now time.Time) *SRS {
		return mustNew(t, Options{Domain: "fwd.example", Secrets: []string{eximSecret}, Scheme: SchemeExim, Now: at(now)})
	}
	s := ours(now)
	var senders []string
	for _, sender := range eximSenders {
		if _, err := s.Forward(sender); err == nil {
			senders = append(senders, sender)
		} else {
			t.Logf("not forwarded by us: %q: %v", sender, err)
		}
	}

	var encode []string
	for _, sender := range senders {
		encode = append(encode, fmt.Sprintf("${srs_encode {%s}{%s}{fwd.example}}", eximSecret, eximEscape(sender)))
	}
	theirs := x.expand(t, encode)

	t.Run("forward is byte-identical", func(t *testing.T) {
		for i, sender := range senders {
			if got := forwardOne(t, s, sender); got != theirs[i] {
				t.Errorf("Forward(%q):\n  ours %s\n  Exim %s", sender, got, theirs[i])
			}
		}
	})

	// inbound asks Exim's inbound_srs about each address and returns its
	// $srs_recipient, or "" when it refuses.
	inbound := func(t *testing.T, addrs []string) []string {
		var exprs []string
		for _, a := range addrs {
			exprs = append(exprs, fmt.Sprintf("${if inbound_srs {%s}{%s}{yes:$srs_recipient}{no}}", eximEscape(inboundLocal(a)), eximSecret))
		}
		out := x.expand(t, exprs)
		for i, r := range out {
			switch {
			case r == "no":
				out[i] = ""
			case strings.HasPrefix(r, "yes:"):
				out[i] = r[4:]
			default:
				t.Fatalf("inbound_srs %s: %q", addrs[i], r)
			}
		}
		return out
	}
	// agree checks that tollgate and Exim accept the same addresses, with
	// the same recipient.
	agree := func(t *testing.T, s *SRS, addrs []string, wantAccepted int) {
		t.Helper()
		accepted := 0
		for i, want := range inbound(t, addrs) {
			got, err := s.Reverse(addrs[i])
			if want != got || (want == "") != (err != nil) {
				t.Errorf("%s: Exim says %q, we say %q, %v", addrs[i], want, got, err)
			}
			if want != "" {
				accepted++
			}
		}
		if accepted != wantAccepted {
			t.Errorf("Exim accepted %d of %d, want %d", accepted, len(addrs), wantAccepted)
		}
	}

	reversible := 0
	for _, sender := range senders {
		if !eximCannotReverse[sender] {
			reversible++
		}
	}
	t.Run("Exim accepts ours and we reverse Exim's alike", func(t *testing.T) {
		ourFwd := forwardAll(t, s, senders)
		agree(t, s, ourFwd, reversible)
		agree(t, s, theirs, reversible)
		// The case an MTA may have folded.
		var folded []string
		for _, a := range ourFwd {
			folded = append(folded, strings.ToUpper(a))
		}
		agree(t, s, folded, reversible)
	})

	// Forward on chosen days, Exim's clock set with faketime: day 0 of the
	// 1024-day cycle and the first 32 days (where 4.96 as released wrote no
	// stamp or one letter; Debian's carries the fix), the cycle's end, an
	// old date.
	t.Run("forward on fixed days", func(t *testing.T) {
		const cycleStart = 20480 // 2026-01-27, a multiple of 1024 days
		for _, day := range []int64{cycleStart, cycleStart + 1, cycleStart + 31, cycleStart + 32, cycleStart - 1, 19000, 20790} {
			when := time.Unix(day*86400+12*3600, 0)
			fixed := ours(when)
			got := x.expandAt(t, when, encode)
			for i, sender := range senders {
				if a := forwardOne(t, fixed, sender); a != got[i] {
					t.Errorf("day %d (%s), Forward(%q):\n  ours %s\n  Exim %s", day, when.Format(time.DateOnly), sender, a, got[i])
				}
			}
			// And on that day Exim's inbound_srs agrees with us, on what
			// it wrote then and on what it wrote 10 and 11 days before
			// (across the cycle's wrap for the first days).
			var addrs []string
			for _, back := range []int{0, 10, 11} {
				addrs = append(addrs, forwardOne(t, ours(when.AddDate(0, 0, -back)), "alice@example.com"))
			}
			exprs := make([]string, len(addrs))
			for i, a := range addrs {
				exprs[i] = fmt.Sprintf("${if inbound_srs {%s}{%s}{yes:$srs_recipient}{no}}", eximEscape(inboundLocal(a)), eximSecret)
			}
			verdicts := x.expandAt(t, when, exprs)
			for i, a := range addrs {
				back, err := fixed.Reverse(a)
				want := "no"
				if err == nil {
					want = "yes:" + back
				}
				if verdicts[i] != want {
					t.Errorf("day %d: %s: Exim says %q, we say %q, %v", day, a, verdicts[i], back, err)
				}
			}
			if day == cycleStart && (!strings.Contains(got[0], "=aa=") || verdicts[0] == "no") {
				t.Errorf("day 0 of the cycle: Exim wrote %s and said %q to it; want stamp aa, accepted", got[0], verdicts[0])
			}
		}
	})

	t.Run("stamps: 10 days valid, 11 not, none from the future", func(t *testing.T) {
		var addrs []string
		valid := 0
		for _, days := range []int{0, 1, 5, 9, 10, 11, 12, 30, 400, 1023, -1, -2, -10} {
			old := ours(now.AddDate(0, 0, -days))
			addrs = append(addrs, forwardOne(t, old, "alice@example.com"), forwardOne(t, old, `"a b"@Example.com`))
			if days >= 0 && days <= 10 {
				valid += 2
			}
		}
		agree(t, s, addrs, valid)
	})

	t.Run("refused alike", func(t *testing.T) {
		good := forwardOne(t, s, "alice@example.com")
		hash, rest := good[5:9], good[9:]
		stamp := strings.Split(good, "=")[2]
		flipped := "0"
		if hash[0] == '0' {
			flipped = "1"
		}
		addrs := []string{
			"SRS0=" + flipped + hash[1:] + rest,                        // wrong hash
			"SRS0=" + hash[:3] + rest,                                  // short hash
			"SRS0=" + hash + "0" + rest,                                // long hash
			"SRS0=" + hash + "=1" + rest[len(stamp)+1:],                // stamp outside base32
			"SRS0+" + good[5:],                                         // another separator
			"SRS0=" + hash + "=" + stamp + "=example.com@fwd.example",  // no local part field
			"SRS0=" + hash + "=" + stamp + "=example.com=@fwd.example", // empty local part
			"SRS0=" + hash + "=" + stamp + "==alice@fwd.example",       // empty domain
			"SRS1=" + hash + "=hop.example==" + good[5:],
			"alice@fwd.example",
		}
		agree(t, s, addrs, 0)
	})

	t.Run("other secret", func(t *testing.T) {
		other := mustNew(t, Options{Domain: "fwd.example", Secrets: []string{"another"}, Scheme: SchemeExim, Now: at(now)})
		agree(t, s, forwardAll(t, other, senders), 0)
		// Our second secret still verifies.
		rotated := mustNew(t, Options{Domain: "fwd.example", Secrets: []string{"another", eximSecret}, Scheme: SchemeExim, Now: at(now)})
		for i, a := range theirs {
			if eximCannotReverse[senders[i]] {
				continue
			}
			want, _ := s.Reverse(a)
			if got, err := rotated.Reverse(a); err != nil || got != want || want == "" {
				t.Errorf("second secret: Reverse(%s) = %q, %v; want %q (%s)", a, got, err, want, senders[i])
			}
		}
	})
}
