package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Bounds: every run ends, whatever the flags say.
const (
	maxMessages    = 5_000_000
	maxDuration    = 10 * time.Minute
	maxConcurrency = 4096
	maxRounds      = 20
	maxSize        = 64 << 20
	maxRcpts       = 1000
	maxHeaders     = 10000
)

var errHelp = errors.New("help requested")

// subjectSpec is one milter to measure: an address, and the command that
// starts it when the bench runs it as a child.
type subjectSpec struct {
	label   string
	target  string // unix:/path or inet:host:port; empty with an exec that uses {socket}
	exec    []string
	metrics bool // exec uses {metrics}: allocation is scraped from its /metrics
}

type options struct {
	subjects    []subjectSpec
	concurrency []int
	messages    int
	duration    time.Duration
	warmup      int
	rounds      int

	size       int
	headers    int
	corpus     string
	rcpts      int
	from       string
	rcpt       string
	client     netip.Addr
	clientName string
	helo       string
	login      string
	macros     []macroSetting
	perSession int
	timeout    time.Duration

	baseline          bool
	baselineProtocols []string // full, lean, mirror, or flag lists

	startupTimeout time.Duration
	execLog        string
	allowRemote    bool
	json           bool
}

// macroSetting is one --macro name=value; an empty value removes a default.
type macroSetting struct{ name, value string }

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func parseOptions(args []string, out io.Writer) (*options, error) {
	fs := flag.NewFlagSet("tollgate-bench", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, usage)
		fmt.Fprintln(out, "\noptions:")
		fs.PrintDefaults()
	}
	var targets, execs, labels, macros stringList
	fs.Var(&targets, "target", "milter address `unix:/path|inet:host:port` (repeatable; with one --exec: where it listens)")
	fs.Var(&execs, "exec", "start the milter under test as a child: `\"CMD ARGS...\"` (repeatable); {socket} is replaced by a fresh unix socket path, {metrics} by a free 127.0.0.1 port whose /metrics is scraped for allocation")
	fs.Var(&labels, "label", "name of the subjects, in the order of --target/--exec (repeatable)")
	concurrency := fs.String("concurrency", "16", "milter sessions in parallel; a comma list runs each level (e.g. 1,16,64)")
	messages := fs.Int("messages", 1000, fmt.Sprintf("messages per subject per round and level (at most %d)", maxMessages))
	duration := fs.Duration("duration", 30*time.Second, fmt.Sprintf("time limit per subject per round and level (at most %s); the run stops at whichever of --messages and --duration comes first", maxDuration))
	warmup := fs.Int("warmup", 100, "messages sent (and not measured) before each measurement")
	rounds := fs.Int("rounds", 1, "rounds; each runs every subject once, baselines first; figures are medians over rounds, ratios medians of per-round ratios")
	size := fs.String("size", "4K", "size of generated messages, headers included (K, M: powers of 1024)")
	headers := fs.Int("headers", 10, "header fields of generated messages (realistic ones first, then Received lines)")
	corpus := fs.String("corpus", "", "directory of .eml files to send instead of generated messages (round robin)")
	rcpts := fs.Int("rcpts", 1, "recipients per message")
	from := fs.String("from", "sender@example.net", "envelope sender (\"\" for the null sender)")
	rcpt := fs.String("rcpt", "user{n}@example.org", "recipient pattern: {n} is the recipient number (1..), {m} the message number")
	client := fs.String("client", "203.0.113.5", "SMTP client address the MTA reports")
	clientName := fs.String("client-name", "mail.example.net", "SMTP client host name the MTA reports")
	helo := fs.String("helo", "", "HELO name (default: --client-name)")
	login := fs.String("login", "", "SASL login: sets {auth_type}=PLAIN and {auth_authen}")
	fs.Var(&macros, "macro", "macro `name=value` sent in every stage that asks for it (repeatable; name= removes a default)")
	perSession := fs.Int("messages-per-session", 1, "messages per milter connection (Postfix opens one per SMTP connection)")
	timeout := fs.Duration("timeout", 10*time.Second, "read, write and connect timeout of each milter operation")
	baseline := fs.Bool("baseline", false, "measure the null milter first, under the same load in the same run, and print ratios to it")
	baselineProtocol := fs.String("baseline-protocol", "full", "what the null milter negotiates: full (every event, every reply), lean (events to end of envelope without replies, reply at end of message), mirror (what each target negotiates), or OptNo...|... flags; a comma list runs several baselines (implies --baseline)")
	startup := fs.Duration("startup-timeout", 10*time.Second, "how long a child may take until its socket accepts")
	execLog := fs.String("exec-log", "", "file for the children's standard output and error (default: discarded)")
	allowRemote := fs.Bool("allow-remote", false, "allow inet targets that are not loopback addresses")
	jsonOut := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errHelp
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	o := &options{
		messages: *messages, duration: *duration, warmup: *warmup, rounds: *rounds,
		headers: *headers, corpus: *corpus, rcpts: *rcpts, from: *from, rcpt: *rcpt,
		clientName: *clientName, helo: *helo, login: *login, perSession: *perSession, timeout: *timeout,
		baseline: *baseline, startupTimeout: *startup, execLog: *execLog, allowRemote: *allowRemote, json: *jsonOut,
	}
	if o.helo == "" {
		o.helo = o.clientName
	}
	var err error
	if o.concurrency, err = parseIntList(*concurrency); err != nil {
		return nil, fmt.Errorf("--concurrency: %w", err)
	}
	for _, c := range o.concurrency {
		if c < 1 || c > maxConcurrency {
			return nil, fmt.Errorf("--concurrency: %d is not between 1 and %d", c, maxConcurrency)
		}
	}
	if o.size, err = parseSize(*size); err != nil {
		return nil, fmt.Errorf("--size: %w", err)
	}
	if o.size > maxSize {
		return nil, fmt.Errorf("--size: at most %d bytes", maxSize)
	}
	if o.client, err = netip.ParseAddr(*client); err != nil {
		return nil, fmt.Errorf("--client: %w", err)
	}
	for _, m := range macros {
		name, value, ok := strings.Cut(m, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--macro %q: want name=value", m)
		}
		o.macros = append(o.macros, macroSetting{name, value})
	}
	switch {
	case o.messages < 1 || o.messages > maxMessages:
		return nil, fmt.Errorf("--messages: between 1 and %d", maxMessages)
	case o.duration <= 0 || o.duration > maxDuration:
		return nil, fmt.Errorf("--duration: between 0 and %s", maxDuration)
	case o.warmup < 0 || o.warmup > maxMessages:
		return nil, fmt.Errorf("--warmup: between 0 and %d", maxMessages)
	case o.rounds < 1 || o.rounds > maxRounds:
		return nil, fmt.Errorf("--rounds: between 1 and %d", maxRounds)
	case o.rcpts < 1 || o.rcpts > maxRcpts:
		return nil, fmt.Errorf("--rcpts: between 1 and %d", maxRcpts)
	case o.headers < 0 || o.headers > maxHeaders:
		return nil, fmt.Errorf("--headers: between 0 and %d", maxHeaders)
	case o.perSession < 1:
		return nil, errors.New("--messages-per-session: at least 1")
	case o.timeout <= 0:
		return nil, errors.New("--timeout: must be positive")
	}
	if !strings.Contains(o.rcpt, "@") {
		return nil, fmt.Errorf("--rcpt %q: not an address", o.rcpt)
	}

	// Subjects: each --exec is one; a --target alone is one; with a single
	// --exec without {socket}, the single --target says where it listens.
	switch {
	case len(execs) == 0:
		for _, t := range targets {
			o.subjects = append(o.subjects, subjectSpec{target: t})
		}
	case len(execs) == 1 && len(targets) == 1:
		argv, err := splitCommand(execs[0])
		if err != nil {
			return nil, fmt.Errorf("--exec: %w", err)
		}
		o.subjects = append(o.subjects, subjectSpec{target: targets[0], exec: argv})
	case len(targets) == 0:
		for _, e := range execs {
			argv, err := splitCommand(e)
			if err != nil {
				return nil, fmt.Errorf("--exec: %w", err)
			}
			if !strings.Contains(e, "{socket}") {
				return nil, fmt.Errorf("--exec %q: with several --exec (or none --target), each command must listen on {socket}", e)
			}
			o.subjects = append(o.subjects, subjectSpec{exec: argv})
		}
	default:
		return nil, errors.New("--target with --exec: give one of each, or --exec commands that listen on {socket}")
	}
	for i := range o.subjects {
		s := &o.subjects[i]
		for _, a := range s.exec {
			s.metrics = s.metrics || strings.Contains(a, "{metrics}")
		}
		if s.target != "" {
			if err := checkTarget(s.target, o.allowRemote); err != nil {
				return nil, err
			}
		}
		switch {
		case i < len(labels):
			s.label = labels[i]
		case len(o.subjects) == 1:
			s.label = "target"
		default:
			s.label = fmt.Sprintf("target%d", i+1)
		}
	}
	if len(labels) > len(o.subjects) {
		return nil, errors.New("--label: more labels than subjects")
	}
	for _, p := range strings.Split(*baselineProtocol, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if p != "mirror" {
			if _, err := parseProtocol(p); err != nil {
				return nil, fmt.Errorf("--baseline-protocol: %w", err)
			}
		} else if len(o.subjects) == 0 {
			return nil, errors.New("--baseline-protocol mirror needs a target to mirror")
		}
		o.baselineProtocols = append(o.baselineProtocols, p)
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "baseline-protocol" })
	switch {
	case explicit:
		o.baseline = len(o.baselineProtocols) > 0
	case !o.baseline:
		o.baselineProtocols = nil
	}
	if len(o.subjects) == 0 && !o.baseline {
		return nil, errors.New("nothing to measure: give --target, --exec or --baseline")
	}
	return o, nil
}

// checkTarget accepts unix sockets and loopback inet addresses.
func checkTarget(spec string, allowRemote bool) error {
	network, addr, err := parseTarget(spec)
	if err != nil {
		return err
	}
	if network == "unix" || allowRemote {
		return nil
	}
	host, _, _ := net.SplitHostPort(addr)
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("target %q is not a loopback address (--allow-remote to measure it anyway)", spec)
	}
	return nil
}

// parseTarget reads unix:/path, local:/path, /path, inet:host:port,
// inet:port@host and inet6:port@host into a network and address for net.Dial.
func parseTarget(spec string) (network, addr string, err error) {
	if strings.HasPrefix(spec, "/") {
		return "unix", spec, nil
	}
	kind, rest, ok := strings.Cut(spec, ":")
	if !ok {
		return "", "", fmt.Errorf("target %q: want unix:/path or inet:host:port", spec)
	}
	switch strings.ToLower(kind) {
	case "unix", "local":
		if !strings.HasPrefix(rest, "/") {
			return "", "", fmt.Errorf("target %q: the socket path must be absolute", spec)
		}
		return "unix", rest, nil
	case "inet", "inet6", "tcp":
		hostport := rest
		if port, host, found := strings.Cut(rest, "@"); found {
			hostport = net.JoinHostPort(strings.Trim(host, "[]"), port)
		}
		host, port, err := net.SplitHostPort(hostport)
		if err != nil {
			return "", "", fmt.Errorf("target %q: %v", spec, err)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return "", "", fmt.Errorf("target %q: bad port %q", spec, port)
		}
		return "tcp", net.JoinHostPort(host, port), nil
	}
	return "", "", fmt.Errorf("target %q: unknown kind %q (use unix: or inet:)", spec, kind)
}

// parseSize reads 4096, 4K, 64K, 1M, 1.5M (K, M, G are powers of 1024; a
// trailing B is allowed).
func parseSize(s string) (int, error) {
	t := strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B")
	mult := 1.0
	switch {
	case strings.HasSuffix(t, "K"):
		mult, t = 1<<10, t[:len(t)-1]
	case strings.HasSuffix(t, "M"):
		mult, t = 1<<20, t[:len(t)-1]
	case strings.HasSuffix(t, "G"):
		mult, t = 1<<30, t[:len(t)-1]
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("bad size %q", s)
	}
	v := f * mult
	if v > math.MaxInt32 {
		return 0, fmt.Errorf("size %q too large", s)
	}
	return int(v), nil
}

func parseIntList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("bad number %q", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

// splitCommand splits a command line into words the way a shell would for
// plain words, 'single' and "double" quotes and backslash escapes; nothing
// else (no variables, globs or redirections).
func splitCommand(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated ' quote")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New("unterminated \" quote")
			}
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c < 128 && unicode.IsSpace(rune(c)):
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	if len(words) == 0 {
		return nil, errors.New("empty command")
	}
	return words, nil
}
