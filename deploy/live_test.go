//go:build e2e

package deploy_test

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/dnstest"

	gomilter "github.com/d--j/go-milter"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/mta"

	"github.com/tollgate/tollgate/dcc/dcctest"
	"github.com/tollgate/tollgate/internal/e2e"
	"github.com/tollgate/tollgate/policy"
)

// liveResult is what one run of the shipped binary with every feature
// configured showed: the metrics it exposed, the metrics the same
// configuration registers, and the system calls it made.
type liveResult struct {
	// families are the metric families /metrics showed, name -> type.
	families map[string]string
	// described are the names registered, with or without series, by the
	// daemon's registry code (policy.NewEnv and Env.Runtime) for the same
	// configuration: vectors only show on /metrics once they have a series.
	described map[string]bool
	syscalls  map[string]bool
	// sockets are the address families of the sockets it opened (AF_UNIX, ...).
	sockets map[string]bool
	log     string
}

var live struct {
	once sync.Once
	res  *liveResult
	err  error
}

// liveDaemon runs the shipped binary once, under strace, with ARC, SRS
// (database mode on a Redis that hangs up), DCC (a dccifd stand-in) and BMI
// (a spamd stand-in) configured; drives messages through it that make every
// metric it can show appear (a sealed and scanned message, a dccifd that
// hangs up, a failing spool, an SRS database that is down, an MTA that
// hangs up before the changes); reloads it and stops it.
func liveDaemon(t testing.TB) *liveResult {
	t.Helper()
	bin := tollgateBinary(t)
	strace := e2e.RequireProgram(t, "strace", "strace")
	// Answers NXDOMAIN to every name: SPF, iprev, DKIM, DMARC and the DNS
	// list count their outcomes without a timeout per message.
	dns := dnstest.Start(t)
	live.once.Do(func() { live.res, live.err = runLive(bin, strace, dns.Addr) })
	if live.err != nil {
		t.Fatal(live.err)
	}
	return live.res
}

const liveConfig = `
listen: unix:%[1]s/milter.sock
socket: {mode: "0660", group: "%[2]d"}
log: {format: text, level: info}
on_error: tempfail
drain_timeout: 5s
identity: {xclient_hosts: [127.0.0.1], xclient_daemons: [proxy-in]}
authserv_id: mx.example.org
dns: {server: "%[3]s", timeout: 1s}
arc:
  sign: [{domain: example.org, selector: live, key: %[1]s/arc.key}]
spf: {helo: true}
iprev: {}
dkim: {}
dmarc: {}
dkim_sign:
  keys: [{domain: example.org, selector: live, key: %[1]s/arc.key}]
srs:
  domain: fwd.example.org
  secrets_file: %[1]s/srs.secrets
  local_domains: [example.org]
%[4]s
dcc:
  address: "%[5]s"
  timeout: 5s
bmi:
  backend: {spamd: {address: "%[6]s", timeout: 5s}}
  spool: {memory: 2K, dir: %[1]s/no-such-spool}
  rules:
    - {id: 5, when: {is_spam: true}, outcome: alternate, alt_location: "header:X-Spam-Folder: Junk"}
acl:
  rcpt:
    - warn:   {name: listed, dnslists: [zen.example.org], log_message: "listed at $dnslist_domain"}
    - accept: {name: forward, recipients: ["*@forward.example.org"], control: [srs_forward, dkim_sign, arc_sign, bmi_run]}
    - accept: {}
  data:
    - accept: {name: stamp, add_header: "X-Live: 1"}
`

func runLive(bin, strace, dnsAddr string) (res *liveResult, err error) {
	dir, err := os.MkdirTemp("", "tollgate-live-") // short: unix socket paths
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if out, err := exec.Command(bin, "arc", "keygen", "--domain", "example.org", "--selector", "live",
		"--type", "ed25519", "--out", filepath.Join(dir, "arc.key")).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("arc keygen: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "srs.secrets"), []byte("live-secret\n"), 0o600); err != nil {
		return nil, err
	}
	dccd, err := dcctest.Start(dcctest.Config{AllowProtocolErrors: true, Handler: func(r *dcctest.Request) dcctest.Reply {
		if strings.HasPrefix(r.Sender, "dcc-close@") {
			return dcctest.Reply{Close: true}
		}
		return dcctest.Reply{Overall: 'A', Header: dcctest.DefaultHeader}
	}})
	if err != nil {
		return nil, err
	}
	defer dccd.Close()
	spamd, err := fakeSpamd()
	if err != nil {
		return nil, err
	}
	defer spamd.Close()
	// A Redis that hangs up at once (the SRS database is "down"), and a DNS
	// server that never answers (no message here needs one).
	redis, err := hangUp()
	if err != nil {
		return nil, err
	}
	defer redis.Close()
	db := fmt.Sprintf("  database: {use: long, redis: {address: %q, timeout: 1s}}\n  socketmap: {listen: \"unix:%s/srs.sock\"}", redis.Addr().String(), dir)
	write := func(name, database string) (string, error) {
		p := filepath.Join(dir, name)
		cfg := fmt.Sprintf(liveConfig, dir, os.Getgid(), dnsAddr, database, dccd.DCCAddress(), spamd.Addr())
		return p, os.WriteFile(p, []byte(cfg), 0o644)
	}
	config, err := write("tollgate.yaml", db)
	if err != nil {
		return nil, err
	}
	noDB, err := write("no-db.yaml", "")
	if err != nil {
		return nil, err
	}
	// A database-mode address, signed with the secret: its key is not in
	// any store, but reversing it must ask the store first.
	out, err := exec.Command(bin, "srs", "forward", "--config", noDB, "abcdefgh23@_db").Output()
	if err != nil {
		return nil, fmt.Errorf("srs forward: %v", err)
	}
	dbAddr := strings.TrimSpace(string(out))

	res = &liveResult{syscalls: map[string]bool{}, sockets: map[string]bool{}}
	if res.described, err = describe(config); err != nil {
		return nil, err
	}

	// systemd runs "tollgate check" first (ExecStartPre), then the daemon.
	checkTrace := filepath.Join(dir, "strace-check.txt")
	if out, err := exec.Command(strace, "-f", "-qq", "-C", "-s", "0", "-e", "signal=none", "-o", checkTrace, bin, "check", "--config", config).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("tollgate check under strace: %v\n%s", err, out)
	}
	runTrace := filepath.Join(dir, "strace-run.txt")
	var log lockedBuffer
	cmd := exec.Command(strace, "-f", "-qq", "-C", "-s", "0", "-e", "signal=none", "-o", runTrace, bin, "run", "--config", config, "--metrics-listen", "127.0.0.1:0")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	pid := 0
	defer func() {
		if pid != 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		cmd.Process.Kill()
		<-exited
		if err != nil {
			err = fmt.Errorf("%w\ndaemon log:\n%s", err, log.String())
		}
	}()
	started := regexp.MustCompile(`msg="tollgate started".* metrics=(\S+)`)
	var m []string
	if !waitFor(30*time.Second, func() bool { m = started.FindStringSubmatch(log.String()); return m != nil }) {
		return nil, fmt.Errorf("the daemon did not start")
	}
	metricsURL := "http://" + m[1] + "/metrics"
	// strace's child is the daemon: signals go to it, not to strace.
	children := fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid)
	if !waitFor(5*time.Second, func() bool {
		b, _ := os.ReadFile(children)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return pid != 0
	}) {
		return nil, fmt.Errorf("no daemon process under strace")
	}

	sock := filepath.Join(dir, "milter.sock")
	body := "Hello.\r\n"
	// Sealed (ARC), forwarded (SRS), scanned (BMI: a rule fires), checked by dccifd.
	r, err := deliver(sock, liveMsg{from: "alice@example.net", rcpts: []string{"bob@forward.example.org"}, body: body})
	if err != nil {
		return nil, fmt.Errorf("message 1: %w", err)
	}
	if !r.accepted() || !r.hasHeader("ARC-Seal") || !r.hasHeader("X-Brightmail-Verdict") || !strings.HasPrefix(r.newFrom, "<SRS0=") {
		return nil, fmt.Errorf("message 1: want accepted, sealed, scanned and forwarded; got %s", r)
	}
	// dccifd hangs up.
	if r, err = deliver(sock, liveMsg{from: "dcc-close@example.net", rcpts: []string{"carol@example.org"}, body: body}); err != nil || !r.accepted() {
		return nil, fmt.Errorf("message 2 (dccifd hangs up): %v %s", err, r)
	}
	// The BMI spool cannot spill to disk: a module failure, on_error tempfail.
	if r, err = deliver(sock, liveMsg{from: "alice@example.net", rcpts: []string{"bob@forward.example.org"}, body: strings.Repeat("x", 8000) + "\r\n"}); err != nil || !r.tempfailed() {
		return nil, fmt.Errorf("message 3 (spool fails): want a tempfail, got %v %s", err, r)
	}
	// A bounce to an SRS database address while the database is down.
	if r, err = deliver(sock, liveMsg{from: "", rcpts: []string{dbAddr}, body: body}); err != nil || len(r.rcptReplies) != 1 || !strings.HasPrefix(r.rcptReplies[0], "451") {
		return nil, fmt.Errorf("message 4 (SRS database down): want 451 at RCPT, got %v %s", err, r)
	}
	// The MTA hangs up before the changes are sent.
	deliver(sock, liveMsg{from: "alice@example.net", rcpts: []string{"carol@example.org"}, body: body, hangUpAfterEOM: true})
	if !waitFor(10*time.Second, func() bool { return strings.Contains(log.String(), "sending changes to the MTA failed") }) {
		return nil, fmt.Errorf("message 5: the daemon did not see the MTA hang up")
	}

	// The SRS socketmap gets a malformed netstring: answered, counted.
	if reply, err := socketmapGarbage(filepath.Join(dir, "srs.sock")); err != nil || !strings.Contains(reply, "PERM") {
		return nil, fmt.Errorf("socketmap: a malformed request got %q, %v", reply, err)
	}

	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return nil, err
	}
	if !waitFor(10*time.Second, func() bool { return strings.Contains(log.String(), "configuration reloaded") }) {
		return nil, fmt.Errorf("no reload after SIGHUP")
	}
	if res.families, err = scrape(metricsURL); err != nil {
		return nil, err
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return nil, err
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			return nil, fmt.Errorf("the daemon (under strace) exited with %v", err)
		}
	case <-time.After(15 * time.Second):
		return nil, fmt.Errorf("the daemon did not stop on SIGTERM")
	}
	pid = 0
	for _, f := range []string{checkTrace, runTrace} {
		if err := readStrace(f, res.syscalls, res.sockets); err != nil {
			return nil, err
		}
	}
	res.log = log.String()
	return res, nil
}

// describe lists every metric name the daemon's registry code registers for
// this configuration, as the daemon builds it (cmd/tollgate/daemon.go).
func describe(config string) (map[string]bool, error) {
	p, err := policy.LoadFile(config, features...)
	if err != nil {
		return nil, err
	}
	rec := &descRecorder{Registerer: prometheus.NewRegistry(), names: map[string]bool{}}
	env := policy.NewEnv(slog.New(slog.NewTextHandler(io.Discard, nil)), rec)
	defer env.Close()
	if _, err := env.Runtime(p); err != nil {
		return nil, err
	}
	return rec.names, nil
}

// descRecorder notes the names of the metrics registered through it.
type descRecorder struct {
	prometheus.Registerer
	names map[string]bool
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *descRecorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			r.names[m[1]] = true
		}
	}
	return r.Registerer.Register(c)
}

func (r *descRecorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// scrape reads the metric families and their types from /metrics.
func scrape(url string) (map[string]string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	families := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			families[f[2]] = f[3]
		}
	}
	return families, sc.Err()
}

// readStrace reads an "strace -f -C" file: the calls as they happened, then
// the summary table. It adds the system calls of the table, and the address
// families of the sockets opened.
func readStrace(path string, calls, families map[string]bool) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	lines := strings.Split(string(b), "\n")
	table := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "% time") })
	if table < 0 {
		return fmt.Errorf("%s: no summary table from strace", path)
	}
	af := regexp.MustCompile(`\bsocket\((AF_[A-Z0-9]+)`)
	for _, l := range lines[:table] {
		if m := af.FindStringSubmatch(l); m != nil {
			families[m[1]] = true
		}
	}
	n := 0
	for _, l := range lines[table+1:] {
		f := strings.Fields(l)
		if len(f) < 5 || strings.HasPrefix(f[0], "-") || f[len(f)-1] == "total" {
			continue
		}
		calls[f[len(f)-1]] = true
		n++
	}
	if n == 0 {
		return fmt.Errorf("%s: no system calls in strace's summary:\n%s", path, strings.Join(lines[table:], "\n"))
	}
	return nil
}

type liveMsg struct {
	client         string // default 192.0.2.7 (mail.example.net); 127.0.0.1 is localhost
	from           string
	rcpts          []string
	body           string
	hangUpAfterEOM bool
}

type delivery struct {
	rcptReplies []string // "" for an accepted recipient
	final       *gomilter.Action
	mods        []gomilter.ModifyAction
	newFrom     string
}

func (d *delivery) accepted() bool {
	return d.final != nil && (d.final.Type == gomilter.ActionAccept || d.final.Type == gomilter.ActionContinue)
}

func (d *delivery) tempfailed() bool {
	return d.final != nil && (d.final.Type == gomilter.ActionTempFail || strings.HasPrefix(d.final.SMTPReply, "4"))
}

func (d *delivery) hasHeader(name string) bool {
	for _, m := range d.mods {
		if (m.Type == gomilter.ActionAddHeader || m.Type == gomilter.ActionInsertHeader) && strings.EqualFold(m.HeaderName, name) {
			return true
		}
	}
	return false
}

func (d *delivery) String() string {
	if d == nil {
		return "<nothing>"
	}
	s := fmt.Sprintf("rcpts %q", d.rcptReplies)
	if d.final != nil {
		s += fmt.Sprintf(", final %v %q", d.final.Type, d.final.SMTPReply)
	}
	for _, m := range d.mods {
		s += fmt.Sprintf(", %v %s %s %s", m.Type, m.HeaderName, m.HeaderValue, m.From)
	}
	return s
}

// deliver plays one SMTP transaction to the milter the way Postfix does.
func deliver(sock string, m liveMsg) (*delivery, error) {
	client, name := "192.0.2.7", "mail.example.net"
	if m.client != "" {
		client, name = m.client, "localhost"
	}
	macros := gomilter.NewMacroBag()
	for k, v := range map[string]string{"j": "mx.example.org", "{daemon_name}": "smtpd", "{client_addr}": client,
		"{client_name}": name, "{client_ptr}": name, "i": "LIVE1", "{mail_addr}": m.from} {
		macros.Set(k, v)
	}
	dialer := &hangUpDialer{armed: m.hangUpAfterEOM}
	mc := mta.NewClient("unix", sock, gomilter.WithDialer(dialer))
	s, err := mc.Session(macros)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	d := &delivery{}
	step := func(act *gomilter.Action, err error) (bool, error) {
		if err != nil {
			return true, err
		}
		if act.StopProcessing() {
			d.final = act
			return true, nil
		}
		return false, nil
	}
	if stop, err := step(s.Conn(name, gomilter.FamilyInet, 40000, client)); stop {
		return d, err
	}
	if stop, err := step(s.Helo(name)); stop {
		return d, err
	}
	if stop, err := step(s.Mail(m.from, "")); stop {
		return d, err
	}
	accepted := 0
	for _, r := range m.rcpts {
		act, err := s.Rcpt(r, "")
		if err != nil {
			return d, err
		}
		if act.StopProcessing() {
			d.rcptReplies = append(d.rcptReplies, act.SMTPReply)
			continue
		}
		d.rcptReplies = append(d.rcptReplies, "")
		accepted++
	}
	if accepted == 0 {
		return d, nil
	}
	if stop, err := step(s.DataStart()); stop {
		return d, err
	}
	for _, h := range [][2]string{{"From", " <" + m.from + ">"}, {"To", " <" + m.rcpts[0] + ">"}, {"Subject", " live"},
		{"Date", " Mon, 02 Mar 2026 10:00:00 +0000"}, {"Message-ID", " <live@example.net>"}} {
		v := h[1]
		if !s.ProtocolOption(gomilter.OptHeaderLeadingSpace) {
			v = strings.TrimPrefix(v, " ")
		}
		if stop, err := step(s.HeaderField(h[0], v, nil)); stop {
			return d, err
		}
	}
	if stop, err := step(s.HeaderEnd()); stop {
		return d, err
	}
	if stop, err := step(s.BodyChunk([]byte(m.body))); stop {
		return d, err
	}
	mods, act, err := s.End()
	if err != nil {
		return d, err
	}
	d.final, d.mods = act, mods
	for _, mod := range mods {
		if mod.Type == gomilter.ActionChangeFrom {
			d.newFrom = mod.From
		}
	}
	return d, nil
}

// hangUpDialer's connection closes right after it has sent end of message
// (a milter packet with command 'E'): an MTA gone before the changes.
type hangUpDialer struct{ armed bool }

func (h *hangUpDialer) Dial(network, addr string) (net.Conn, error) {
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil || !h.armed {
		return c, err
	}
	return &hangUpConn{Conn: c}, nil
}

type hangUpConn struct {
	net.Conn
	head []byte // the current packet's length and command, as written
	left int    // bytes of the current packet still to come
}

func (c *hangUpConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	for q := p[:n]; len(q) > 0; {
		if c.left > 0 {
			k := min(c.left, len(q))
			c.left -= k
			q = q[k:]
		} else {
			k := min(5-len(c.head), len(q))
			c.head = append(c.head, q[:k]...)
			q = q[k:]
			if len(c.head) == 5 {
				c.left = int(uint32(c.head[0])<<24|uint32(c.head[1])<<16|uint32(c.head[2])<<8|uint32(c.head[3])) - 1
			}
		}
		if len(c.head) == 5 && c.left == 0 {
			eom := c.head[4] == 'E'
			c.head = c.head[:0]
			if eom {
				c.Conn.Close()
				return n, err
			}
		}
	}
	return n, err
}

// fakeSpamd answers every SYMBOLS request: spam, score 20 of 5, GTUBE.
func fakeSpamd() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				length := -1
				for {
					l, err := br.ReadString('\n')
					if err != nil {
						return
					}
					l = strings.TrimRight(l, "\r\n")
					if l == "" {
						break
					}
					if v, ok := strings.CutPrefix(strings.ToLower(l), "content-length:"); ok {
						length, _ = strconv.Atoi(strings.TrimSpace(v))
					}
				}
				if length < 0 || int64(length) != must(io.Copy(io.Discard, io.LimitReader(br, int64(length)))) {
					return
				}
				fmt.Fprint(c, "SPAMD/1.1 0 EX_OK\r\nContent-length: 5\r\nSpam: True ; 20.0 / 5.0\r\n\r\nGTUBE")
			}(c)
		}
	}()
	return ln, nil
}

func must(n int64, _ error) int64 { return n }

// hangUp accepts connections and closes them at once.
func hangUp() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln, nil
}

// Every metric the dashboard and the alert rules use is one the daemon
// exposes, and every tollgate metric the daemon has is on the dashboard.
func TestDashboardAndRulesUseRealMetrics(t *testing.T) {
	live := liveDaemon(t)
	exposed := map[string]bool{}
	for name, typ := range live.families {
		exposed[name] = true
		switch typ {
		case "histogram":
			exposed[name+"_bucket"], exposed[name+"_sum"], exposed[name+"_count"] = true, true, true
		case "summary":
			exposed[name+"_sum"], exposed[name+"_count"] = true, true
		}
	}
	for name, why := range notOnMetrics {
		if !live.described[name] {
			t.Errorf("%s is allowed off /metrics (only after %s) but the daemon does not register it", name, why)
		}
		if exposed[name] {
			t.Errorf("%s showed on /metrics after all: take it off notOnMetrics", name)
		}
	}

	used := map[string][]string{} // metric -> where
	for where, expr := range dashboardExprs(t) {
		for _, name := range promqlMetrics(expr) {
			used[name] = append(used[name], where)
		}
	}
	for where, expr := range ruleExprs(t) {
		for _, name := range promqlMetrics(expr) {
			used[name] = append(used[name], where)
		}
	}
	if len(used) < 30 {
		t.Fatalf("only %d metric names found in the dashboard and rules: is the expression parser broken? %v", len(used), used)
	}
	for name, where := range used {
		if !exposed[name] && !fromPrometheus[name] && notOnMetrics[name] == "" {
			sort.Strings(where)
			t.Errorf("%s is not a metric the daemon exposes (used in %s)", name, strings.Join(where, ", "))
		}
	}

	// The other way: every tollgate metric has its panel.
	onDashboard := map[string]bool{}
	for _, expr := range dashboardExprs(t) {
		for _, name := range promqlMetrics(expr) {
			onDashboard[strings.TrimSuffix(name, "_bucket")] = true
		}
	}
	all := map[string]bool{}
	for name := range live.described {
		all[name] = true
	}
	for name := range live.families {
		all[name] = true
	}
	for name := range all {
		if strings.HasPrefix(name, "tollgate_") && !onDashboard[name] {
			t.Errorf("the daemon's metric %s is on no dashboard panel", name)
		}
	}
}

// socketmapGarbage sends a request that is no netstring to the SRS
// socketmap and returns the answer.
func socketmapGarbage(sock string) (string, error) {
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return "", err
	}
	if _, err := c.Write([]byte("no netstring,")); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}
