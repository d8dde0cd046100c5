//go:build e2e

package bmi

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/e2e"
)

// A real spamd (Debian packages spamassassin and spamd): loopback only,
// local tests only (-L), per-user settings from --virtual-config-dir with a
// required_score per profile:
//
//	strict   required_score -5   (a clean message is spam)
//	lenient  required_score  8
//	(none)   the site default, 5

var spamdProfiles = map[string]string{
	"strict":  "required_score -5\n",
	"lenient": "required_score 8\n",
}

type spamdInstance struct {
	proc *process
	dir  string
	tcp  string // 127.0.0.1:port
	unix string // socket path
}

var (
	spamdOnce   sync.Once
	spamdShared *spamdInstance
	spamdErr    error
)

// sharedSpamd is the spamd of this test binary, started at first use.
func sharedSpamd(t *testing.T) *spamdInstance {
	t.Helper()
	path := e2e.RequireProgram(t, "spamd", "spamassassin spamd")
	spamdOnce.Do(func() {
		start := time.Now()
		spamdShared, spamdErr = startSpamd(path)
		if spamdErr == nil {
			atExit(spamdShared.stop)
			fmt.Fprintf(os.Stderr, "bmi: spamd ready in %v\n", time.Since(start).Round(time.Millisecond))
		}
	})
	if spamdErr != nil {
		t.Fatal(spamdErr)
	}
	return spamdShared
}

// startSpamd runs spamd in the foreground on a free loopback port and a unix
// socket, as nobody when root, with a private pid file and log.
func startSpamd(path string) (*spamdInstance, error) {
	dir, err := os.MkdirTemp("", "tollgate-bmi-spamd-")
	if err != nil {
		return nil, err
	}
	// spamd's children read the per-user files as the -u user.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	for name, prefs := range spamdProfiles {
		d := filepath.Join(dir, "vc", name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(d, "user_prefs"), []byte(prefs), 0o644); err != nil {
			return nil, err
		}
	}
	sock := filepath.Join(dir, "spamd.sock")
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a free port can be taken before spamd binds it
		port := freePortNoT()
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		args := []string{
			"-L",                                                           // local tests only: no DNS, no network
			"-x", "--virtual-config-dir=" + filepath.Join(dir, "vc", "%u"), // per-profile user_prefs
			"-i", addr, "-i", sock, "-A", "127.0.0.1",
			"--max-children", "2", "--min-children", "1", "--min-spare", "1", "--max-spare", "1",
			"-r", filepath.Join(dir, "spamd.pid"),
			"-s", "stderr",
			"--cf", "use_bayes 0", "--cf", "bayes_auto_learn 0",
		}
		if os.Geteuid() == 0 {
			args = append(args, "-u", "nobody")
		}
		proc, err := startProcess("spamd", filepath.Join(dir, "spamd.log"), path, args...)
		if err != nil {
			return nil, err
		}
		inst := &spamdInstance{proc: proc, dir: dir, tcp: addr, unix: sock}
		sp := NewSpamd(SpamdOptions{Address: addr, Timeout: 2 * time.Second})
		if lastErr = proc.waitReady(90*time.Second, sp.Ping); lastErr == nil {
			return inst, nil
		}
		proc.stop()
	}
	os.RemoveAll(dir)
	return nil, fmt.Errorf("spamd did not start: %v", lastErr)
}

func (s *spamdInstance) stop() {
	s.proc.stop()
	os.RemoveAll(s.dir)
}

func freePortNoT() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestSpamdGTUBEBothProfiles(t *testing.T) {
	sd := sharedSpamd(t)
	b := NewSpamd(SpamdOptions{Address: sd.tcp})
	msg := gtubeMessage('X')
	for _, p := range []struct {
		profile   string
		threshold float64
	}{{"strict", -5}, {"lenient", 8}, {"", 5}} {
		res := scan(t, b, msg, env("bob@example.net"), p.profile)
		if !res.IsSpam || res.Score < 1000 || res.Threshold != p.threshold || !slices.Contains(res.Symbols, "GTUBE") {
			t.Errorf("profile %q: %+v; want spam, score >= 1000 (GTUBE), threshold %v, symbol GTUBE", p.profile, res, p.threshold)
		}
		if res.Backend != "spamd" || res.Profile != p.profile || res.Action != "" {
			t.Errorf("profile %q: backend %q profile %q action %q", p.profile, res.Backend, res.Profile, res.Action)
		}
		if !slices.IsSorted(res.Symbols) {
			t.Errorf("symbols not sorted: %v", res.Symbols)
		}
	}
}

func TestSpamdCleanMessagePerProfile(t *testing.T) {
	sd := sharedSpamd(t)
	b := NewSpamd(SpamdOptions{Address: sd.tcp})
	msg := cleanMessage()
	strict := scan(t, b, msg, env("alice@example.net"), "strict")
	lenient := scan(t, b, msg, env("bob@example.net"), "lenient")
	def := scan(t, b, msg, env("carol@example.net"), "")
	t.Logf("clean message: score %v, symbols %v", def.Score, def.Symbols)
	if !strict.IsSpam || strict.Threshold != -5 {
		t.Errorf("strict: %+v; want spam at required_score -5", strict)
	}
	if lenient.IsSpam || lenient.Threshold != 8 {
		t.Errorf("lenient: %+v; want not spam at required_score 8", lenient)
	}
	if def.IsSpam || def.Threshold != 5 {
		t.Errorf("default profile: %+v; want not spam at required_score 5", def)
	}
	if strict.Score != lenient.Score || strict.Score != def.Score {
		t.Errorf("the profiles change the threshold, not the score: %v %v %v", strict.Score, lenient.Score, def.Score)
	}
}

// The scenario end to end through the package: recipients grouped by
// profile (from their opt-ins), one scan per profile, then the rules.
func TestSpamdVerdictsPerRecipient(t *testing.T) {
	sd := sharedSpamd(t)
	b := NewSpamd(SpamdOptions{Address: sd.tcp})
	rules := exampleRules()
	if err := Validate(rules); err != nil {
		t.Fatal(err)
	}
	profiles := ProfileMap{ByOptin: map[string]string{"spam-strict": "strict", "spam-lenient": "lenient"}}

	run := func(msg []byte, rcpts []RcptInput) ([]Verdict, []GroupScan) {
		groups := Profiles(rcpts, profiles.Of)
		scans := ScanGroups(context.Background(), b, bytes.NewReader(msg), int64(len(msg)), env(), rcpts, groups)
		for _, s := range scans {
			if s.Err != nil {
				t.Fatalf("profile %q: %v", s.Profile, s.Err)
			}
		}
		return EvaluateGroups(rules, rcpts, scans), scans
	}

	// GTUBE to two recipients with different opt-ins: different outcomes.
	rcpts := []RcptInput{
		{Addr: "Alice@Example.NET", Optins: []string{"spam-strict", "drop-spam"}},
		{Addr: "bob@example.net", Optins: []string{"spam-lenient"}},
	}
	v, scans := run(gtubeMessage('X'), rcpts)
	if len(scans) != 2 {
		t.Fatalf("%d scans, want one per profile", len(scans))
	}
	if !v[0].DontDeliver() || v[0].Deliver || v[0].Rule != 1 || !slices.Equal(v[0].Fired, []int{1, 2, 3}) {
		t.Errorf("alice: %+v; want drop by rule 1, fired 1,2,3", v[0])
	}
	if !v[1].DeliverAlternate() || !v[1].Deliver || v[1].AltLocation != "redirect:spam-trap@example.net" || !slices.Equal(v[1].Fired, []int{2, 3}) {
		t.Errorf("bob: %+v; want alternate redirect by rule 2, fired 2,3", v[1])
	}
	// Exim finds a verdict by address, case-insensitively.
	if got := Find(rcpts, v, "alice@example.net"); got.Rule != 1 {
		t.Errorf("Find(alice@example.net) = %+v", got)
	}

	// A clean message: both delivered normally with their default profile.
	plain := []RcptInput{{Addr: "alice@example.net"}, {Addr: "bob@example.net", Optins: []string{"x"}}}
	v, scans = run(cleanMessage(), plain)
	if len(scans) != 1 {
		t.Fatalf("%d scans for one profile", len(scans))
	}
	for i, x := range v {
		if !x.Scanned || !x.DeliverDefault() || !x.Deliver || x.Rule != 0 || len(x.Fired) != 0 {
			t.Errorf("clean, recipient %d: %+v; want deliver, nothing fired", i, x)
		}
		if EncodeVerdict(x, scans[0].Result) == "" || x.Tracker() == "" {
			t.Errorf("a scanned recipient has a verdict and a tracker")
		}
	}

	// The clean message with the strict profile is spam there only.
	v, _ = run(cleanMessage(), rcpts)
	if !v[0].DeliverAlternate() || v[0].Rule != 3 || !strictHeader(v[0]) {
		t.Errorf("clean, strict: %+v; want alternate header by rule 3", v[0])
	}
	if !v[1].DeliverDefault() || len(v[1].Fired) != 0 {
		t.Errorf("clean, lenient: %+v; want deliver", v[1])
	}
}

func strictHeader(v Verdict) bool {
	a, err := ParseAltLocation(v.AltLocation)
	return err == nil && a.Kind == AltHeader && a.HeaderName == "X-Spam-Folder"
}

func TestSpamdCheckCommandAndUnixSocket(t *testing.T) {
	sd := sharedSpamd(t)
	msg := gtubeMessage('X')
	check := scan(t, NewSpamd(SpamdOptions{Address: sd.tcp, Command: "check"}), msg, env(), "lenient")
	if !check.IsSpam || check.Score < 1000 || len(check.Symbols) != 0 {
		t.Errorf("CHECK: %+v; want spam, no symbols", check)
	}
	for _, addr := range []string{sd.unix, "unix:" + sd.unix} {
		res := scan(t, NewSpamd(SpamdOptions{Address: addr}), msg, env(), "strict")
		if !res.IsSpam || res.Threshold != -5 || !slices.Contains(res.Symbols, "GTUBE") {
			t.Errorf("%s: %+v", addr, res)
		}
	}
}

// spamd's own error replies, as the real daemon writes them.
func TestSpamdRealErrorReply(t *testing.T) {
	sd := sharedSpamd(t)
	for _, req := range []string{
		"BOGUS SPAMC/1.5\r\n\r\n",
		"SYMBOLS SPAMC/1.5\r\nContent-length: nonsense\r\n\r\n",
	} {
		c, err := net.DialTimeout("tcp", sd.tcp, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write([]byte(req))
		res, err := ParseSpamdReply(bufio.NewReader(c))
		c.Close()
		if Kind(err) != KindScanner {
			t.Errorf("%q: %+v, %v; want a scanner error", req, res, err)
		} else {
			t.Logf("%q: %v", req, err)
		}
	}
}

// spamd stopped mid-test: the next scan fails with a dial error, and the
// recipients get no verdict, which is normal delivery.
func TestSpamdStoppedMidTest(t *testing.T) {
	path := e2e.RequireProgram(t, "spamd", "spamassassin spamd")
	t.Parallel() // its own spamd starts while the other tests run
	sd, err := startSpamd(path)
	if err != nil {
		t.Fatal(err)
	}
	defer sd.stop()
	b := NewSpamd(SpamdOptions{Address: sd.tcp, Timeout: 5 * time.Second})
	msg := gtubeMessage('X')
	rcpts := []RcptInput{{Addr: "alice@example.net", Optins: []string{"drop-spam"}}}
	groups := Profiles(rcpts, nil)

	scans := ScanGroups(context.Background(), b, bytes.NewReader(msg), int64(len(msg)), env(), rcpts, groups)
	if scans[0].Err != nil || !EvaluateGroups(exampleRules(), rcpts, scans)[0].DontDeliver() {
		t.Fatalf("before the stop: %+v", scans[0])
	}

	sd.proc.stop()
	scans = ScanGroups(context.Background(), b, bytes.NewReader(msg), int64(len(msg)), env(), rcpts, groups)
	if Kind(scans[0].Err) != KindDial {
		t.Fatalf("after the stop: %v (kind %q); want a dial error", scans[0].Err, Kind(scans[0].Err))
	}
	v := EvaluateGroups(exampleRules(), rcpts, scans)[0]
	if v.Scanned || !v.Deliver || !v.DeliverDefault() || EncodeVerdict(v, scans[0].Result) != "" || v.Tracker() != "" || v.AltLocation != "" {
		t.Errorf("verdict after a failed scan: %+v; want no verdict (deliver normally)", v)
	}
	if Fired(v, []int{1}) {
		t.Error("bmi_rule is true without a verdict")
	}
}
