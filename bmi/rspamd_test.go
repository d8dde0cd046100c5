//go:build e2e

package bmi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/e2e"
)

// A real rspamd (Debian package rspamd, 3.4): a private configuration of our
// own, one normal worker on loopback (and a unix socket), no controller, no
// proxy, no redis, and no network: only the core, the stock local rules
// (regexp, headers, MIME) and the settings module are loaded, and the
// resolver points at a closed loopback port so that any lookup fails at
// once. The hyperscan cache, the slow part of a cold start, is kept between
// runs in rspamdCacheDir.

const rspamdCacheDir = "/var/cache/tollgate-tests/rspamd"

// rspamdConf is the whole configuration. %[1]s is the private directory,
// %[2]s the cache directory, %[3]s the worker's loopback address.
const rspamdConf = `# tollgate bmi tests: a private rspamd, loopback only, no network
.include "$CONFDIR/metrics.conf"
.include "$CONFDIR/actions.conf"
.include "$CONFDIR/groups.conf"
lua = "$RULESDIR/rspamd.lua";
modules { path = "${PLUGINSDIR}/settings.lua"; }

options {
  pidfile = "%[1]s/rspamd.pid";
  dbdir = "%[1]s/db";
  cache_file = "%[1]s/db/symbols.cache";
  control_socket = "%[1]s/db/rspamd.sock mode=0600";
  hs_cache_dir = "%[2]s";
  tempdir = "%[1]s/tmp";
  url_tld = "${SHAREDIR}/effective_tld_names.dat";
  enable_test_patterns = true;
  explicit_modules = ["settings"];
  filters = "regexp";
  dns { nameserver = ["127.0.0.1:9"]; timeout = 0.1s; retransmits = 1; }
}

logging { type = "file"; filename = "%[1]s/rspamd.log"; level = "info"; }

worker "normal" {
  bind_socket = "%[3]s";
  bind_socket = "%[1]s/normal.sock mode=0666";
  count = 1;
  mime = true;
}

# Profiles, chosen by Settings-ID.
settings {
  strict { id = "strict"; apply { actions { "add header" = -100; reject = 100; } } }
}
`

type rspamdInstance struct {
	proc *process
	dir  string
	tcp  string
	unix string
}

var (
	rspamdOnce   sync.Once
	rspamdShared *rspamdInstance
	rspamdErr    error
)

func sharedRspamd(t *testing.T) *rspamdInstance {
	t.Helper()
	path := e2e.RequireProgram(t, "rspamd", "rspamd")
	rspamdOnce.Do(func() {
		start := time.Now()
		rspamdShared, rspamdErr = startRspamd(path)
		if rspamdErr == nil {
			atExit(rspamdShared.stop)
			fmt.Fprintf(os.Stderr, "bmi: rspamd ready in %v\n", time.Since(start).Round(time.Millisecond))
		}
	})
	if rspamdErr != nil {
		t.Fatal(rspamdErr)
	}
	return rspamdShared
}

// rspamdCache returns the shared cache directory, or a per-user one when the
// shared one cannot be used (tests not run as root).
func rspamdCache() string {
	if err := os.MkdirAll(rspamdCacheDir, 0o755); err == nil && writable(rspamdCacheDir) {
		return rspamdCacheDir
	}
	if d, err := os.UserCacheDir(); err == nil {
		d = filepath.Join(d, "tollgate-tests", "rspamd")
		if os.MkdirAll(d, 0o755) == nil {
			return d
		}
	}
	return ""
}

func writable(dir string) bool {
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return false
	}
	f.Close()
	os.Remove(f.Name())
	return true
}

func startRspamd(path string) (*rspamdInstance, error) {
	cache := rspamdCache()
	dir, err := os.MkdirTemp("", "tollgate-bmi-rspamd-")
	if err != nil {
		return nil, err
	}
	if cache == "" {
		cache = filepath.Join(dir, "cache") // a cold start every time
	}
	for _, d := range []string{"db", "tmp", cache} {
		if !filepath.IsAbs(d) {
			d = filepath.Join(dir, d)
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	var args []string
	if os.Geteuid() == 0 {
		// rspamd refuses to run its workers as root.
		u, g := daemonUser("_rspamd", "nobody")
		if u == nil {
			return nil, errors.New("no _rspamd or nobody user to run rspamd's workers as")
		}
		if err := chownTo(u, dir, filepath.Join(dir, "db"), filepath.Join(dir, "tmp"), cache); err != nil {
			return nil, err
		}
		args = append(args, "-u", u.Username, "-g", g.Name)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePortNoT()))
		conf := filepath.Join(dir, "rspamd.conf")
		if err := os.WriteFile(conf, []byte(fmt.Sprintf(rspamdConf, dir, cache, addr)), 0o644); err != nil {
			return nil, err
		}
		proc, err := startProcess("rspamd", filepath.Join(dir, "rspamd.out"), path,
			append([]string{"-f", "-c", conf}, args...)...)
		if err != nil {
			return nil, err
		}
		inst := &rspamdInstance{proc: proc, dir: dir, tcp: addr, unix: filepath.Join(dir, "normal.sock")}
		r := NewRspamd(RspamdOptions{Address: addr, Timeout: 2 * time.Second})
		// A cold start compiles hyperscan databases (a minute on a busy
		// 2-core machine); with the cache kept it takes about a second.
		if lastErr = proc.waitReady(240*time.Second, r.Ping); lastErr == nil {
			return inst, nil
		}
		lastErr = fmt.Errorf("%v\nrspamd.log:\n%s", lastErr, tailFile(filepath.Join(dir, "rspamd.log")))
		proc.stop()
	}
	os.RemoveAll(dir)
	return nil, fmt.Errorf("rspamd did not start: %v", lastErr)
}

func tailFile(p string) string {
	b, _ := os.ReadFile(p)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func (r *rspamdInstance) stop() {
	r.proc.stop()
	os.RemoveAll(r.dir)
}

// GTUBE variants give rspamd's actions; the rules map them to outcomes.
func TestRspamdActionsToOutcomes(t *testing.T) {
	rs := sharedRspamd(t)
	b := NewRspamd(RspamdOptions{Address: rs.tcp})
	rules := []Rule{
		{ID: 10, When: Conditions{Actions: []string{"reject"}}, Outcome: OutcomeDrop},
		{ID: 11, When: Conditions{Actions: []string{"add_header"}}, Outcome: OutcomeAlternate, AltLocation: "header:X-Spam-Folder: Junk"},
		{ID: 12, When: Conditions{Actions: []string{"Rewrite Subject"}}, Outcome: OutcomeAlternate, AltLocation: "redirect:spam-trap@example.net"},
		{ID: 13, When: Conditions{Actions: []string{"soft reject", "greylist"}}, Outcome: OutcomeAlternate, AltLocation: "quarantine:temporary"},
		{ID: 20, When: Conditions{SymbolsAny: []string{"gtube"}}, Outcome: OutcomeDrop},
	}
	if err := Validate(rules); err != nil {
		t.Fatal(err)
	}
	rcpt := RcptInput{Addr: "bob@example.net"}
	for _, c := range []struct {
		name    string
		msg     []byte
		action  string
		spam    bool
		outcome Outcome
		fired   []int
	}{
		{"X reject", gtubeMessage('X'), "reject", true, OutcomeDrop, []int{10, 20}},
		{"Y add header", gtubeMessage('Y'), "add header", true, OutcomeAlternate, []int{11, 20}},
		{"Z rewrite subject", gtubeMessage('Z'), "rewrite subject", true, OutcomeAlternate, []int{12, 20}},
		{"A no action", gtubeMessage('A'), "no action", false, OutcomeDeliver, nil},
		{"clean", cleanMessage(), "no action", false, OutcomeDeliver, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := scan(t, b, c.msg, env("bob@example.net"), "")
			if res.Action != c.action || res.IsSpam != c.spam || res.Threshold != 15 || res.Backend != "rspamd" {
				t.Errorf("%+v; want action %q, spam %v, threshold 15", res, c.action, c.spam)
			}
			v := Evaluate(rules, res, rcpt)
			if v.Outcome != c.outcome || !slices.Equal(v.Fired, c.fired) || v.Deliver != (c.outcome != OutcomeDrop) {
				t.Errorf("verdict %+v; want %s, fired %v", v, c.outcome, c.fired)
			}
			rec, err := DecodeVerdict(EncodeVerdict(v, res))
			if err != nil || rec.Action != c.action || rec.Backend != "rspamd" || rec.Outcome != c.outcome {
				t.Errorf("verdict header round trip: %+v, %v", rec, err)
			}
		})
	}
}

// The profile goes out as Settings-ID: the "strict" settings lower the
// add-header threshold, so the same clean message gets another action.
func TestRspamdSettingsID(t *testing.T) {
	rs := sharedRspamd(t)
	b := NewRspamd(RspamdOptions{Address: rs.tcp})
	msg := cleanMessage()
	def := scan(t, b, msg, env("bob@example.net"), "")
	strict := scan(t, b, msg, env("bob@example.net"), "strict")
	unknown := scan(t, b, msg, env("bob@example.net"), "no-such-profile")
	if def.Action != "no action" || def.IsSpam || def.Threshold != 15 {
		t.Errorf("default: %+v", def)
	}
	if strict.Action != "add header" || !strict.IsSpam || strict.Threshold != 100 || strict.Profile != "strict" {
		t.Errorf("strict: %+v; want add header, required_score 100", strict)
	}
	// rspamd logs an unknown Settings-ID and scans with its defaults.
	if unknown.Action != "no action" || unknown.Threshold != 15 {
		t.Errorf("unknown profile: %+v", unknown)
	}
	rules := []Rule{{ID: 7, When: Conditions{Profiles: []string{"strict"}, IsSpam: ptr(true)}, Outcome: OutcomeAlternate, AltLocation: "quarantine"}}
	if v := Evaluate(rules, strict, RcptInput{Addr: "bob@example.net"}); !v.DeliverAlternate() || v.Rule != 7 {
		t.Errorf("strict verdict %+v", v)
	}
	if v := Evaluate(rules, def, RcptInput{Addr: "bob@example.net"}); !v.DeliverDefault() {
		t.Errorf("default verdict %+v", v)
	}
}

// The envelope reaches rspamd: its task log line shows the queue id, IP,
// login, envelope sender and recipients, and that no DNS request was made.
func TestRspamdEnvelope(t *testing.T) {
	rs := sharedRspamd(t)
	b := NewRspamd(RspamdOptions{Address: rs.unix})
	msg := cleanMessage()
	e := env("bob@example.net", "carol@example.net")
	e.ClientIP = mustAddr("192.0.2.10")
	e.Login = "alice"
	e.QueueID = "4EnvTest1"
	res := scan(t, b, msg, e, "")
	line := rspamdLogLine(t, rs, "qid: <4EnvTest1>")
	for _, want := range []string{"ip: 192.0.2.10,", "user: alice,", "from: <alice@example.org>", "rcpts: <bob@example.net,carol@example.net>", "dns req: 0,"} {
		if !strings.Contains(line, want) {
			t.Errorf("rspamd's log line lacks %q:\n%s", want, line)
		}
	}
	// The envelope sender is compared with From: by the stock rules.
	e.Sender = "someone-else@example.com"
	e.QueueID = "4EnvTest2"
	other := scan(t, b, msg, e, "")
	if !slices.Contains(res.Symbols, "FROM_EQ_ENVFROM") || !slices.Contains(other.Symbols, "FROM_NEQ_ENVFROM") {
		t.Errorf("symbols %v and %v: the envelope sender did not count", res.Symbols, other.Symbols)
	}
}

// rspamdLogLine waits for rspamd's task log line containing s.
func rspamdLogLine(t *testing.T, rs *rspamdInstance, s string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(rs.dir, "rspamd.log"))
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "rspamd_task_write_log") && strings.Contains(line, s) {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no task log line with %q in rspamd.log", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// What FACTS.md warns about, on the real daemon: an empty POST is answered
// "no action". Our client never sends one, and never reads a reply to a
// request it could not finish.
func TestRspamdNeverTrustsUnsentRequest(t *testing.T) {
	rs := sharedRspamd(t)
	resp, err := http.Post("http://"+rs.tcp+"/checkv2", "text/plain", strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if res, err := ParseRspamdReply(body); err != nil || res.Action != "no action" {
		t.Logf("rspamd's answer to an empty POST changed: %s", body)
	}

	b := NewRspamd(RspamdOptions{Address: rs.tcp, Timeout: 5 * time.Second})
	if _, err := b.Scan(context.Background(), bytes.NewReader(nil), 0, env(), ""); Kind(err) != KindSend {
		t.Errorf("empty message: %v; want a send error", err)
	}
	msg := gtubeMessage('X')
	failing := &failingReader{r: bytes.NewReader(msg), after: len(msg) / 2}
	if res, err := b.Scan(context.Background(), failing, int64(len(msg)), env(), ""); Kind(err) != KindSend {
		t.Errorf("source failing mid-way: %+v, %v; want a send error", res, err)
	}
	short := msg[:len(msg)-10]
	if res, err := b.Scan(context.Background(), bytes.NewReader(short), int64(len(msg)), env(), ""); Kind(err) != KindSend {
		t.Errorf("source shorter than its size: %+v, %v; want a send error", res, err)
	}
	// And the daemon is still fine.
	if res := scan(t, b, msg, env(), ""); res.Action != "reject" {
		t.Errorf("after the failures: %+v", res)
	}
}

// failingReader fails after a number of bytes.
type failingReader struct {
	r     *bytes.Reader
	after int
	read  int
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.read >= f.after {
		return 0, errors.New("disk error")
	}
	if len(p) > f.after-f.read {
		p = p[:f.after-f.read]
	}
	n, err := f.r.Read(p)
	f.read += n
	return n, err
}

func (f *failingReader) Seek(off int64, whence int) (int64, error) {
	f.read = 0
	return f.r.Seek(off, whence)
}

// ScanGroups against the real daemon: one scan per profile, in order.
func TestRspamdScanGroups(t *testing.T) {
	rs := sharedRspamd(t)
	b := NewRspamd(RspamdOptions{Address: rs.tcp})
	rcpts := []RcptInput{
		{Addr: "a@example.net", Optins: []string{"strict-filter"}},
		{Addr: "b@example.net"},
		{Addr: "c@example.net", Optins: []string{"s", "strict-filter"}},
	}
	pm := ProfileMap{ByOptin: map[string]string{"strict-filter": "strict", "s": "ignored"}}
	groups := Profiles(rcpts, pm.Of)
	if len(groups) != 2 || groups[0].Profile != "strict" || !slices.Equal(groups[0].Rcpts, []int{0, 2}) || groups[1].Profile != "" {
		t.Fatalf("groups %+v", groups)
	}
	sp := NewSpool(1<<20, t.TempDir())
	defer sp.Close()
	sp.Write(cleanMessage())
	r, size, err := sp.Message(nil)
	if err != nil {
		t.Fatal(err)
	}
	e := env()
	e.QueueID = "4GroupTest"
	scans := ScanGroups(context.Background(), b, r, size, e, rcpts, groups)
	rules := []Rule{{ID: 1, When: Conditions{Actions: []string{"add header"}}, Outcome: OutcomeDrop}}
	v := EvaluateGroups(rules, rcpts, scans)
	if !v[0].DontDeliver() || !v[1].DeliverDefault() || !v[2].DontDeliver() {
		t.Errorf("verdicts %+v", v)
	}
	if scans[0].Result.Profile != "strict" || scans[1].Result.Profile != "" {
		t.Errorf("profiles %q, %q", scans[0].Result.Profile, scans[1].Result.Profile)
	}
	if line := rspamdLogLine(t, rs, "rcpts: <a@example.net,c@example.net>"); !strings.Contains(line, "qid: <4GroupTest>") {
		t.Errorf("log line %s", line)
	}
	rspamdLogLine(t, rs, "rcpts: <b@example.net>")
}
