package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
)

// TestMain lets the test binary stand in for the bench binary when the bench
// starts a null milter baseline as a child (os.Executable() null ...).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "null" {
		ctx, stop := signalContext()
		code := cmdNull(ctx, os.Args[2:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

func TestParseOptionsDefaults(t *testing.T) {
	o, err := parseOptions([]string{"--target", "unix:/tmp/x.sock"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.messages != 1000 || o.duration != 30*time.Second || o.size != 4096 || o.headers != 10 || o.rcpts != 1 ||
		o.perSession != 1 || !reflect.DeepEqual(o.concurrency, []int{16}) || o.helo != "mail.example.net" ||
		o.client != netip.MustParseAddr("203.0.113.5") || o.baseline || len(o.baselineProtocols) != 0 {
		t.Errorf("defaults: %+v", o)
	}
	if len(o.subjects) != 1 || o.subjects[0].label != "target" || o.subjects[0].target != "unix:/tmp/x.sock" {
		t.Errorf("subjects: %+v", o.subjects)
	}
}

func TestParseOptions(t *testing.T) {
	o, err := parseOptions([]string{
		"--exec", "./tollgate run --listen unix:{socket} --metrics-listen {metrics}",
		"--exec", "'/opt/other milter' -p unix:{socket}",
		"--label", "example", "--label", "other",
		"--concurrency", "1, 16,64", "--size", "64K", "--rcpts", "10", "--macro", "{daemon_name}=proxy-in",
		"--macro", "v=", "--baseline", "--baseline-protocol", "full,mirror", "--login", "alice", "--messages-per-session", "3",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(o.concurrency, []int{1, 16, 64}) || o.size != 64<<10 || o.rcpts != 10 || o.perSession != 3 || o.login != "alice" {
		t.Errorf("options: %+v", o)
	}
	if want := []macroSetting{{"{daemon_name}", "proxy-in"}, {"v", ""}}; !reflect.DeepEqual(o.macros, want) {
		t.Errorf("macros %v", o.macros)
	}
	if len(o.subjects) != 2 || o.subjects[0].label != "example" || !o.subjects[0].metrics || o.subjects[1].metrics ||
		o.subjects[1].exec[0] != "/opt/other milter" || o.subjects[1].label != "other" {
		t.Errorf("subjects %+v", o.subjects)
	}
	if !reflect.DeepEqual(o.baselineProtocols, []string{"full", "mirror"}) {
		t.Errorf("baselines %v", o.baselineProtocols)
	}
}

func TestParseOptionsErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--target", "unix:relative.sock"},
		{"--target", "inet:192.0.2.1:8891"},
		{"--target", "inet:127.0.0.1:99999"},
		{"--target", "unix:/x", "--concurrency", "0"},
		{"--target", "unix:/x", "--concurrency", "a"},
		{"--target", "unix:/x", "--messages", "0"},
		{"--target", "unix:/x", "--duration", "11m"},
		{"--target", "unix:/x", "--size", "4X"},
		{"--target", "unix:/x", "--macro", "novalue"},
		{"--target", "unix:/x", "--rcpt", "nobody"},
		{"--target", "unix:/x", "--baseline-protocol", "NoSuchFlag"},
		{"--exec", "a {socket}", "--exec", "b"},
		{"--target", "unix:/x", "--target", "unix:/y", "--exec", "z"},
		{"--target", "unix:/x", "--label", "a", "--label", "b"},
		{"--exec", "'unterminated {socket}"},
		{"--baseline", "--baseline-protocol", "mirror"},
		{"--target", "unix:/x", "stray"},
	} {
		if _, err := parseOptions(args, io.Discard); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
	if _, err := parseOptions([]string{"--target", "inet:192.0.2.1:8891", "--allow-remote"}, io.Discard); err != nil {
		t.Errorf("--allow-remote: %v", err)
	}
	if _, err := parseOptions([]string{"--target", "inet:8891@[::1]"}, io.Discard); err != nil {
		t.Errorf("inet:port@[::1]: %v", err)
	}
	if _, err := parseOptions([]string{"--help"}, io.Discard); err != errHelp {
		t.Errorf("--help: %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int{"4096": 4096, "4K": 4096, "4k": 4096, "64KB": 65536, "1M": 1 << 20, "1.5M": 3 << 19, "0": 0} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "K", "-1", "1T", "4X", "99G"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q): no error", in)
		}
	}
}

func TestSplitCommand(t *testing.T) {
	for in, want := range map[string][]string{
		`a b  c`:                 {"a", "b", "c"},
		`a 'b c' "d \"e\"" f\ g`: {"a", "b c", `d "e"`, "f g"},
		`x --k=''`:               {"x", "--k="},
	} {
		if got, err := splitCommand(in); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("splitCommand(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "  ", `"open`, `'open`} {
		if _, err := splitCommand(in); err == nil {
			t.Errorf("splitCommand(%q): no error", in)
		}
	}
}

func TestPercentile(t *testing.T) {
	var hundred []int64
	for i := int64(1); i <= 100; i++ {
		hundred = append(hundred, i)
	}
	for _, c := range []struct {
		data []int64
		p    float64
		want int64
	}{
		{hundred, 50, 50}, {hundred, 90, 90}, {hundred, 99, 99}, {hundred, 99.9, 100}, {hundred, 100, 100}, {hundred, 0.5, 1},
		{[]int64{7}, 50, 7}, {[]int64{7}, 99, 7},
		{[]int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 99, 10}, {[]int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 50, 5},
		{[]int64{1, 2}, 50, 1}, {nil, 50, 0},
	} {
		if got := percentile(c.data, c.p); got != c.want {
			t.Errorf("percentile(%d values, %v) = %d, want %d", len(c.data), c.p, got, c.want)
		}
	}
	// summarize sorts its input and reports milliseconds.
	s := samples{int64(3 * time.Millisecond), int64(1 * time.Millisecond), int64(2 * time.Millisecond), int64(10 * time.Millisecond)}
	got := summarize(s)
	want := LatencySummary{Count: 4, Mean: 4, P50: 2, P90: 10, P99: 10, Max: 10}
	if got != want {
		t.Errorf("summarize = %+v, want %+v", got, want)
	}
	if s[0] != int64(3*time.Millisecond) {
		t.Error("summarize changed its input")
	}
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median odd = %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("median even = %v", m)
	}
	if r := ratio(1, 0); r != 0 {
		t.Errorf("ratio by zero = %v", r)
	}
}

func TestProcParsing(t *testing.T) {
	stat := []byte("1234 (tollgate (x) y) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 8 0 100 0 0\n")
	if cpu, err := parseStatCPU(stat); err != nil || cpu != 3.0 {
		t.Errorf("parseStatCPU = %v, %v; want 3", cpu, err)
	}
	if _, err := parseStatCPU([]byte("1 (x) S 1")); err == nil {
		t.Error("short stat: no error")
	}
	status := "Name:\ttollgate\nVmPeak:\t  800000 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10000 kB\n"
	if hwm, err := parseStatusHWM(strings.NewReader(status)); err != nil || hwm != 20480*1024 {
		t.Errorf("parseStatusHWM = %d, %v", hwm, err)
	}
	metrics := "# HELP go_memstats_alloc_bytes_total x\n# TYPE go_memstats_alloc_bytes_total counter\ngo_memstats_alloc_bytes_total 1.2345e+06\ngo_memstats_alloc_bytes 5\ngo_memstats_mallocs_total 678\n"
	if a, m, err := parseGoMem(strings.NewReader(metrics)); err != nil || a != 1234500 || m != 678 {
		t.Errorf("parseGoMem = %v, %v, %v", a, m, err)
	}
	if _, _, err := parseGoMem(strings.NewReader("go_memstats_alloc_bytes 5\n")); err == nil {
		t.Error("parseGoMem without the counters: no error")
	}
	// The bench's own process is a fine live subject.
	if cpu, err := cpuSeconds(os.Getpid()); err != nil || cpu < 0 {
		t.Errorf("cpuSeconds(self) = %v, %v", cpu, err)
	}
	if rss, err := peakRSS(os.Getpid()); err != nil || rss <= 0 {
		t.Errorf("peakRSS(self) = %v, %v", rss, err)
	}
}

func TestGenerateMessage(t *testing.T) {
	for _, c := range []struct{ size, headers int }{{4096, 10}, {65536, 10}, {4096, 100}, {4096, 3}, {200, 10}, {1 << 20, 10}} {
		m := generateMessage(c.size, c.headers)
		if len(m.fields) != c.headers {
			t.Errorf("%+v: %d headers", c, len(m.fields))
		}
		if c.size > 3000 && c.headers <= 10 && (m.size < c.size-2 || m.size > c.size) {
			t.Errorf("%+v: size %d", c, m.size)
		}
		if !bytes.HasSuffix(m.body, []byte("\r\n")) && len(m.body) > 0 {
			t.Errorf("%+v: body does not end in CRLF", c)
		}
		names := map[string]bool{}
		for _, f := range m.fields {
			names[f.name] = true
			if f.spaced != " "+f.value {
				t.Errorf("%+v: spaced value %q of %q", c, f.spaced, f.value)
			}
		}
		if c.headers >= 3 && (!names["From"] || !names["To"] || !names["Subject"]) {
			t.Errorf("%+v: the first headers kept are From, To, Subject: %v", c, names)
		}
		if c.headers >= 10 && m.msgIDAt < 0 {
			t.Errorf("%+v: no Message-ID", c)
		}
	}
}

func TestParseMessage(t *testing.T) {
	raw := "From mbox-line\nReceived: from a\n\tby b\r\nSubject:  hello\r\nX-Empty:\r\nMessage-ID: <1@x>\r\n\r\nline 1\nline 2\r\n"
	m, err := parseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	want := []field{
		{"Received", "from a\n\tby b", " from a\n\tby b"},
		{"Subject", "hello", " hello"},
		{"X-Empty", "", " "},
		{"Message-ID", "<1@x>", " <1@x>"},
	}
	if !reflect.DeepEqual(m.fields, want) {
		t.Errorf("fields %q", m.fields)
	}
	if string(m.body) != "line 1\r\nline 2\r\n" || m.msgIDAt != 3 {
		t.Errorf("body %q msgIDAt %d", m.body, m.msgIDAt)
	}
	if _, err := parseMessage([]byte(" continuation first\r\n\r\n")); err == nil {
		t.Error("leading continuation: no error")
	}
	if _, err := parseMessage([]byte("no colon here\r\n\r\n")); err == nil {
		t.Error("bad header: no error")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "b.eml"), []byte(raw), 0o644)
	os.WriteFile(filepath.Join(dir, "a.eml"), []byte("Subject: a\r\n\r\nbody\r\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "ignored.txt"), []byte("x"), 0o644)
	msgs, err := loadCorpus(dir)
	if err != nil || len(msgs) != 2 || msgs[0].name != "a.eml" || msgs[1].name != "b.eml" {
		t.Fatalf("loadCorpus: %v %v", msgs, err)
	}
	if _, err := loadCorpus(t.TempDir()); err == nil {
		t.Error("empty corpus: no error")
	}
}

func TestParseProtocol(t *testing.T) {
	for in, want := range map[string]gomilter.OptProtocol{
		"full": 0, "lean": leanProtocol, "0x30": gomilter.OptNoBody | gomilter.OptNoHeaders,
		"NoHeaders|OptNoBody": gomilter.OptNoBody | gomilter.OptNoHeaders, "noreplies": gomilter.OptNoReplies,
	} {
		if got, err := parseProtocol(in); err != nil || got != want {
			t.Errorf("parseProtocol(%q) = %v, %v", in, got, err)
		}
	}
	if a, err := parseActions("AddHeader|ChangeHeader"); err != nil || a != gomilter.OptAddHeader|gomilter.OptChangeHeader {
		t.Errorf("parseActions = %v, %v", a, err)
	}
	if _, err := parseActions("Bogus"); err == nil {
		t.Error("parseActions(Bogus): no error")
	}
}

// startTestNull serves a null milter on a fresh unix socket in this process.
func startTestNull(t *testing.T, protocol gomilter.OptProtocol, m gomilter.Milter) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "null.sock")
	ln, err := listen("unix:" + sock)
	if err != nil {
		t.Fatal(err)
	}
	var n *nullServer
	if m == nil {
		n = startNull(ln, protocol, 0)
	} else {
		srv := gomilter.NewServer(gomilter.WithMilter(func() gomilter.Milter { return m }), gomilter.WithProtocols(protocol))
		n = &nullServer{srv: srv, ln: ln, done: make(chan error, 1)}
		go func() { n.done <- srv.Serve(ln) }()
	}
	t.Cleanup(func() { n.Close() })
	return sock
}

func testSpec(sock string, messages, concurrency int) loadSpec {
	return loadSpec{
		network: "unix", addr: sock, concurrency: concurrency, messages: messages, duration: 20 * time.Second,
		perSession: 1, timeout: 5 * time.Second, msgs: []*message{generateMessage(4096, 10)},
		env: envelope{from: "sender@example.net", rcpt: "user{n}@example.org", rcpts: 1,
			client: netip.MustParseAddr("203.0.113.5"), clientName: "mail.example.net", helo: "mail.example.net"},
	}
}

// A short real run against the null milter: every message accepted, and
// every count in the result agrees.
func TestRunAgainstNullMilter(t *testing.T) {
	for _, proto := range []gomilter.OptProtocol{0, leanProtocol} {
		sock := startTestNull(t, proto, nil)
		r := runLoad(context.Background(), testSpec(sock, 200, 4))
		if r.Messages != 200 || r.Sessions != 200 || r.Outcomes["accept"] != 200 || len(r.Outcomes) != 1 || len(r.Errors) != 0 {
			t.Fatalf("protocol %v: %+v", proto, r)
		}
		for _, stage := range stageNames {
			if c := r.Latency[stage].Count; c != 200 {
				t.Errorf("protocol %v: %s has %d samples", proto, stage, c)
			}
		}
		m := r.Latency["message"]
		if !(m.P50 > 0 && m.P50 <= m.P90 && m.P90 <= m.P99 && m.P99 <= m.Max) {
			t.Errorf("protocol %v: message latency %+v", proto, m)
		}
		if r.MessagesPerSec <= 0 || r.Failed() {
			t.Errorf("protocol %v: %+v", proto, r)
		}
	}
}

func TestRunSeveralMessagesPerSession(t *testing.T) {
	sock := startTestNull(t, 0, nil)
	spec := testSpec(sock, 50, 3)
	spec.perSession = 5
	spec.env.rcpts = 3
	spec.env.rcpt = "u{n}.{m}@example.org"
	r := runLoad(context.Background(), spec)
	if r.Messages != 50 || r.Outcomes["accept"] != 50 || r.Sessions > 12 || r.Sessions < 10 {
		t.Errorf("%+v", r)
	}
	if c := r.Latency["connect"].Count; c != r.Sessions {
		t.Errorf("connect samples %d, sessions %d", c, r.Sessions)
	}
}

// refusingMilter rejects recipients at example.com and tempfails messages
// whose sender is tempfail@... at end of message.
type refusingMilter struct {
	gomilter.NoOpMilter
	from string
}

func (m *refusingMilter) MailFrom(from, _ string, _ gomilter.Modifier) (*gomilter.Response, error) {
	m.from = from
	return gomilter.RespContinue, nil
}

func (m *refusingMilter) RcptTo(rcpt, _ string, _ gomilter.Modifier) (*gomilter.Response, error) {
	if strings.HasSuffix(rcpt, "@example.com") {
		return gomilter.RejectWithCodeAndReason(550, "5.7.1 relay not permitted")
	}
	return gomilter.RespContinue, nil
}

func (m *refusingMilter) EndOfMessage(mod gomilter.Modifier) (*gomilter.Response, error) {
	if strings.HasPrefix(m.from, "tempfail@") {
		return gomilter.RespTempFail, nil
	}
	mod.AddHeader("X-Checked", "yes")
	return gomilter.RespAccept, nil
}

func TestRunCountsRefusals(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "r.sock")
	ln, err := listen("unix:" + sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := gomilter.NewServer(gomilter.WithMilter(func() gomilter.Milter { return &refusingMilter{} }), gomilter.WithAction(gomilter.OptAddHeader))
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	spec := testSpec(sock, 20, 2)
	spec.env.rcpt = "user@example.com"
	r := runLoad(context.Background(), spec)
	if r.Outcomes["reject"] != 20 || r.Errors["rcpt_reject"] != 20 || r.Errors["reject"] != 20 || r.Failed() ||
		!strings.Contains(r.FirstError, "550 5.7.1 relay not permitted") {
		t.Errorf("rejected recipients: %+v", r)
	}
	spec.env.rcpt, spec.env.from = "user@example.org", "tempfail@example.net"
	r = runLoad(context.Background(), spec)
	if r.Outcomes["tempfail"] != 20 || r.Errors["tempfail"] != 20 {
		t.Errorf("tempfail: %+v", r)
	}
	spec.env.from = "ok@example.net"
	r = runLoad(context.Background(), spec)
	if r.Outcomes["accept"] != 20 || r.Modifications["add_header"] != 20 {
		t.Errorf("accept: %+v", r)
	}
}

func TestRunCountsConnectErrors(t *testing.T) {
	spec := testSpec(filepath.Join(t.TempDir(), "nobody.sock"), 5, 2)
	r := runLoad(context.Background(), spec)
	if r.Errors["connect"] != 5 || r.Outcomes["error"] != 5 || !r.Failed() {
		t.Errorf("%+v", r)
	}
}

// The whole command: a target, baselines in process and as children (the
// test binary stands in for the bench), ratios and both report formats.
func TestBenchWithBaseline(t *testing.T) {
	sock := startTestNull(t, leanProtocol, nil)
	o, err := parseOptions([]string{"--target", "unix:" + sock, "--label", "lean", "--baseline", "--baseline-protocol", "full,mirror",
		"--messages", "100", "--warmup", "10", "--concurrency", "1,4", "--rounds", "2"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	b := &benchRun{o: o, log: io.Discard, nullInProcess: true}
	rep, err := b.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Subjects) != 3 || rep.Subjects[2].Name != "lean" || len(rep.Levels) != 2 {
		t.Fatalf("report %+v", rep)
	}
	lv := rep.Levels[1]
	if lv.Concurrency != 4 || len(lv.Results) != 3 || lv.Results[0].Subject != "null(full)" ||
		lv.Results[1].Subject != "null(mirror lean)" || lv.Results[2].Subject != "lean" {
		t.Fatalf("level %+v", lv)
	}
	target := lv.Results[2]
	if len(target.Rounds) != 2 || target.Summary.Messages != 200 || target.Summary.Outcomes["accept"] != 200 || len(target.Versus) != 2 {
		t.Fatalf("target %+v", target)
	}
	if c := target.Versus[0]; c.Baseline != "null(full)" || c.Throughput <= 0 || c.P99 <= 0 {
		t.Errorf("comparison %+v", c)
	}
	if rep.Subjects[1].Protocol != rep.Subjects[2].Protocol || !strings.Contains(rep.Subjects[2].Protocol, "NoBody") {
		t.Errorf("mirror negotiates %q, target %q", rep.Subjects[1].Protocol, rep.Subjects[2].Protocol)
	}
	var text bytes.Buffer
	writeText(&text, rep)
	for _, want := range []string{"concurrency 1\n", "concurrency 4\n", "lean / null(full): msg/s x", "null(mirror lean)", "p99 ms", "latency by stage", "message"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	var js bytes.Buffer
	if err := writeJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Levels[1].Results[2].Summary.Messages != 200 ||
		back.Levels[1].Results[2].Versus[0].Throughput != c0(rep) {
		t.Errorf("JSON round trip: %v", err)
	}
}

func c0(rep *Report) float64 { return rep.Levels[1].Results[2].Versus[0].Throughput }

// Children: the baseline null milter and an --exec target are started,
// measured (CPU, RSS, allocation through /metrics) and stopped.
func TestBenchChildren(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"--exec", exe + " null --listen unix:{socket} --protocol lean --metrics-listen {metrics}",
		"--label", "child", "--baseline", "--messages", "60", "--warmup", "5", "--concurrency", "2", "--json"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, r := range rep.Levels[0].Results {
		p := r.Summary.Process
		if r.Summary.Outcomes["accept"] != 60 || p == nil || p.PeakRSSMiB <= 0 || p.CPUSeconds < 0 || p.AllocPerMsgKiB <= 0 {
			t.Errorf("%s: %+v %+v", r.Subject, r.Summary, p)
		}
	}
}

func TestCmdNull(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "n.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	var out bytes.Buffer
	go func() {
		done <- cmdNull(ctx, []string{"--listen", "unix:" + sock, "--protocol", "NoHeaders|NoBody"}, &out, io.Discard)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the null milter does not listen")
		}
		time.Sleep(10 * time.Millisecond)
	}
	p, _, err := probe("unix", sock, time.Second)
	if err != nil || p != gomilter.OptNoHeaders|gomilter.OptNoBody {
		t.Errorf("probe: %v %v", p, err)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exit %d", code)
	}
	if !strings.HasPrefix(out.String(), "listening unix:"+sock) {
		t.Errorf("output %q", out.String())
	}
	if code := cmdNull(context.Background(), []string{"--listen", "unix:" + sock, "--protocol", "bogus"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("bad protocol: exit %d", code)
	}
}
