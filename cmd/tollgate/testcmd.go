package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	gomilter "github.com/d--j/go-milter"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/message"
	"github.com/tollgate/tollgate/internal/mta"
	"github.com/tollgate/tollgate/milter"
	"github.com/tollgate/tollgate/policy"
)

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// testInput is one message and its SMTP envelope, as an MTA would present it.
type testInput struct {
	client     netip.Addr
	clientPort int
	clientName string
	helo       string
	login      string
	mechanism  string
	from       string
	rcpts      []string
	queueID    string
	message    []byte
	daemonName string
	proxy      netip.AddrPort // zero: a direct session
	proxyDest  netip.AddrPort // XCLIENT DESTADDR/DESTPORT
}

// testReport is what tollgate test prints (and --json writes).
type testReport struct {
	Stages     []stageReport  `json:"stages"`
	Decision   string         `json:"decision"`
	Reply      string         `json:"reply,omitempty"`
	Recipients []rcptReport   `json:"recipients"`
	Sender     string         `json:"sender"`
	Changes    []changeReport `json:"changes"`
	Log        []string       `json:"log"`
}

type stageReport struct {
	Stage  string   `json:"stage"`
	Input  string   `json:"input,omitempty"`
	Result string   `json:"result"`
	Reply  string   `json:"reply,omitempty"`
	Rules  []string `json:"rules,omitempty"`
}

type rcptReport struct {
	Address string `json:"address"`
	Result  string `json:"result"`
	Reply   string `json:"reply,omitempty"`
}

type changeReport struct {
	Action string `json:"action"`
	Index  *int   `json:"index,omitempty"`
	Name   string `json:"name,omitempty"`
	Value  string `json:"value,omitempty"`
}

func cmdTest(args []string, stdout, stderr io.Writer) int {
	fs := newCommand("test", "[--config FILE] --client IP --from ADDR --rcpt ADDR [--rcpt ADDR ...] [options] MESSAGE_FILE",
		"Runs one message (MESSAGE_FILE, or - for standard input) through the daemon's pipeline,\ndriven the way the MTA drives it, and prints each stage, the decision and the changes.")
	config := fs.String("config", defaultConfig, "configuration file")
	client := fs.String("client", "", "client IP address (required)")
	clientPort := fs.Int("client-port", 0, "client TCP port")
	clientName := fs.String("client-name", "", "client host name as the MTA verified it (default: unknown)")
	helo := fs.String("helo", "", "HELO/EHLO name (default: the client name or [address])")
	login := fs.String("login", "", "SMTP AUTH login of the client")
	mech := fs.String("auth-mechanism", "PLAIN", "SMTP AUTH mechanism, with --login")
	from := fs.String("from", "", "envelope sender (required; \"\" or <> for the null sender)")
	queueID := fs.String("queue-id", "TESTQUEUEID", "queue id the simulated MTA assigns")
	daemonName := fs.String("daemon-name", "", "MTA listener name ({daemon_name}); default: the first identity.xclient_daemons with --proxy, else smtpd")
	proxy := fs.String("proxy", "", "simulate a session through an XCLIENT proxy at ADDR[:PORT]: first the proxy's own session, then the client's")
	proxyDest := fs.String("proxy-dest", "", "with --proxy: the address:port the client connected to on the proxy (XCLIENT DESTADDR/DESTPORT)")
	var rcpts stringList
	fs.Var(&rcpts, "rcpt", "envelope recipient (repeat for several; at least one)")
	asJSON := fs.Bool("json", false, "write the report as JSON")
	emit := fs.String("emit", "", "write the message as it would leave (header changes applied) to this file")
	if code, done := fs.parse(args, stdout, stderr); done {
		return code
	}
	var problems []string
	addr, err := netip.ParseAddr(strings.Trim(strings.TrimPrefix(*client, "IPv6:"), "[]"))
	if err != nil {
		problems = append(problems, fmt.Sprintf("--client: %q is not an IP address", *client))
	}
	isSet := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { isSet[f.Name] = true })
	if !isSet["from"] {
		problems = append(problems, "--from is required (use --from '' for the null sender)")
	}
	if len(rcpts) == 0 {
		problems = append(problems, "at least one --rcpt is required")
	}
	if fs.NArg() != 1 {
		problems = append(problems, "give exactly one MESSAGE_FILE (- for standard input)")
	}
	var proxyAP, destAP netip.AddrPort
	if *proxy != "" {
		if proxyAP, err = parseAddrPort(*proxy); err != nil {
			problems = append(problems, "--proxy: "+err.Error())
		}
	}
	if *proxyDest != "" {
		if *proxy == "" {
			problems = append(problems, "--proxy-dest needs --proxy")
		} else if destAP, err = parseAddrPort(*proxyDest); err != nil {
			problems = append(problems, "--proxy-dest: "+err.Error())
		}
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(stderr, "tollgate test:", p)
		}
		return 2
	}
	var msg []byte
	if fs.Arg(0) == "-" {
		msg, err = io.ReadAll(os.Stdin)
	} else {
		msg, err = os.ReadFile(fs.Arg(0))
	}
	if err != nil {
		fmt.Fprintln(stderr, "tollgate test:", err)
		return 1
	}
	p, err := policy.LoadFile(*config, features...)
	if err != nil {
		printConfigErrors(stderr, err)
		return 1
	}
	in := testInput{client: addr, clientPort: *clientPort, clientName: *clientName, helo: *helo, login: *login,
		mechanism: *mech, from: strings.Trim(*from, "<>"), rcpts: rcpts, queueID: *queueID, message: msg,
		daemonName: *daemonName, proxy: proxyAP, proxyDest: destAP}
	if in.daemonName == "" {
		in.daemonName = "smtpd"
		if in.proxy.IsValid() {
			in.daemonName = "proxy"
			if ds := p.XClientDaemons(); len(ds) > 0 {
				in.daemonName = ds[0]
			}
		}
	}
	if in.proxy.IsValid() && in.login != "" {
		in.mechanism = "XCLIENT" // how Postfix reports a LOGIN given by XCLIENT
	}
	if in.helo == "" {
		in.helo = in.clientName
		if in.helo == "" {
			in.helo = "[" + addr.String() + "]"
		}
	}
	report, out, err := runTest(p, in)
	if err != nil {
		fmt.Fprintln(stderr, "tollgate test:", err)
		return 1
	}
	if *emit != "" {
		if err := os.WriteFile(*emit, out, 0o644); err != nil {
			fmt.Fprintln(stderr, "tollgate test:", err)
			return 1
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		// Addresses in angle brackets stay readable: "<a@b>", not "\u003ca@b\u003e".
		enc.SetEscapeHTML(false)
		_ = enc.Encode(report) // like the text report: a failed write to stdout has no one to tell
	} else {
		printReport(stdout, report)
	}
	return 0
}

// runTest starts the daemon's own milter server on a private unix socket and
// plays the MTA's part with go-milter's client, so the message takes exactly
// the path it would take in production.
func runTest(p *policy.Policy, in testInput) (*testReport, []byte, error) {
	dir, err := os.MkdirTemp("", "tollgate-test-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	capture := &captureHandler{}
	logger := slog.New(capture)
	env := policy.NewEnv(logger, prometheus.NewRegistry())
	defer env.Close()
	rt, err := env.Runtime(p)
	if err != nil {
		return nil, nil, err
	}
	srv := milter.NewServer(rt, milter.ServerOptions{Logger: logger, Metrics: env.Metrics})
	sock := filepath.Join(dir, "milter.sock")
	ln, err := milter.Listen(milter.Address{Network: "unix", Addr: sock}, milter.SocketOptions{Mode: 0o600})
	if err != nil {
		return nil, nil, err
	}
	go srv.Serve(ln)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()

	var handoff []stageReport
	if in.proxy.IsValid() {
		if handoff, err = driveHandoff(sock, in, capture); err != nil {
			return nil, nil, err
		}
	}
	report, mods, leadingSpace, err := drive(sock, in, capture)
	if report != nil {
		report.Stages = append(handoff, report.Stages...)
	}
	if err != nil {
		return nil, nil, err
	}
	// The summary line is written when the session ends.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	srv.Shutdown(ctx)
	cancel()
	report.Log = capture.lines()
	out := applyToMessage(in.message, mods, leadingSpace)
	return report, out, nil
}

func parseAddrPort(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not an address or address:port", s)
	}
	return netip.AddrPortFrom(a, 0), nil
}

// driveHandoff plays the milter session Postfix opens for the proxy itself,
// which it closes when the proxy sends XCLIENT.
func driveHandoff(sock string, in testInput, capture *captureHandler) ([]stageReport, error) {
	macros := gomilter.NewMacroBag()
	for k, v := range map[string]string{"j": "tollgate-test.invalid", "{daemon_name}": in.daemonName,
		"{client_addr}": in.proxy.Addr().String(), "{client_name}": "unknown", "{client_ptr}": "unknown"} {
		macros.Set(k, v)
	}
	if in.proxy.Port() != 0 {
		macros.Set("{client_port}", strconv.Itoa(int(in.proxy.Port())))
	}
	client := mta.NewClient("unix", sock)
	s, err := client.Session(macros)
	if err != nil {
		return nil, fmt.Errorf("milter session: %w", err)
	}
	defer s.Close()
	var out []stageReport
	act, err := s.Conn("unknown", mta.Family(in.proxy.Addr()), in.proxy.Port(), in.proxy.Addr().String())
	if err != nil {
		return nil, fmt.Errorf("proxy connect: %w", err)
	}
	out = append(out, stageReport{Stage: "proxy-connect", Input: "[" + in.proxy.Addr().String() + "] (" + in.daemonName + ")",
		Result: actionName(act), Reply: replyOf(act), Rules: capture.take()})
	act, err = s.Helo("proxy")
	if err != nil {
		return nil, fmt.Errorf("proxy helo: %w", err)
	}
	out = append(out, stageReport{Stage: "proxy-helo", Input: "proxy (XCLIENT follows)", Result: actionName(act), Reply: replyOf(act), Rules: capture.take()})
	return out, nil
}

func drive(sock string, in testInput, capture *captureHandler) (*testReport, []gomilter.ModifyAction, bool, error) {
	macros := gomilter.NewMacroBag()
	for k, v := range map[string]string{
		"j": "tollgate-test.invalid", "v": "tollgate test", "{daemon_name}": in.daemonName,
		"{client_addr}": in.client.String(), "{client_name}": orUnknown(in.clientName),
		"{client_ptr}": orUnknown(in.clientName), "i": in.queueID, "{mail_addr}": in.from,
	} {
		macros.Set(k, v)
	}
	if in.proxyDest.IsValid() {
		macros.Set("{daemon_addr}", in.proxyDest.Addr().String())
		macros.Set("{daemon_port}", strconv.Itoa(int(in.proxyDest.Port())))
	}
	if in.clientPort != 0 {
		macros.Set("{client_port}", strconv.Itoa(in.clientPort))
	}
	if in.login != "" {
		macros.Set("{auth_authen}", in.login)
		macros.Set("{auth_type}", in.mechanism)
	}
	client := mta.NewClient("unix", sock)
	s, err := client.Session(macros)
	if err != nil {
		return nil, nil, false, fmt.Errorf("milter session: %w", err)
	}
	defer s.Close()

	r := &testReport{Sender: "<" + in.from + ">"}
	step := func(stage, input string, act *gomilter.Action, err error) (bool, error) {
		if err != nil {
			return false, fmt.Errorf("%s: %w", stage, err)
		}
		sr := stageReport{Stage: stage, Input: input, Result: actionName(act), Reply: replyOf(act), Rules: capture.take()}
		if stage == "rcpt" && sr.Result == "continue" {
			sr.Result = "accept"
		}
		r.Stages = append(r.Stages, sr)
		return act.StopProcessing() || act.Type == gomilter.ActionDiscard, nil
	}
	final := func(act *gomilter.Action) {
		r.Decision, r.Reply = actionName(act), replyOf(act)
	}
	name := orUnknown(in.clientName)
	act, err := s.Conn(name, mta.Family(in.client), uint16(in.clientPort), in.client.String())
	if stop, err := step("connect", name+" ["+in.client.String()+"]", act, err); err != nil || stop {
		final(act)
		return r, nil, false, err
	}
	act, err = s.Helo(in.helo)
	if stop, err := step("helo", in.helo, act, err); err != nil || stop {
		final(act)
		return r, nil, false, err
	}
	act, err = s.Mail(in.from, "")
	if stop, err := step("mail", "<"+in.from+">", act, err); err != nil || stop {
		final(act)
		return r, nil, false, err
	}
	accepted := 0
	var lastRefusal *gomilter.Action
	for _, rcpt := range in.rcpts {
		act, err = s.Rcpt(strings.Trim(rcpt, "<>"), "")
		if _, err := step("rcpt", "<"+strings.Trim(rcpt, "<>")+">", act, err); err != nil {
			return r, nil, false, err
		}
		rr := rcptReport{Address: strings.Trim(rcpt, "<>"), Result: "accept"}
		switch {
		case act.Type == gomilter.ActionDiscard:
			final(act)
			return r, nil, false, nil
		case act.StopProcessing():
			rr.Result, rr.Reply = actionName(act), replyOf(act)
			lastRefusal = act
		default:
			accepted++
		}
		r.Recipients = append(r.Recipients, rr)
	}
	if accepted == 0 {
		final(lastRefusal)
		return r, nil, false, nil
	}
	headers, body, _ := message.Split(in.message)
	leadingSpace := s.ProtocolOption(gomilter.OptHeaderLeadingSpace)
	if _, err := s.DataStart(); err != nil {
		return r, nil, false, fmt.Errorf("data: %w", err)
	}
	for _, h := range headers {
		if _, err := mta.Header(s, h.Name, h.Value); err != nil {
			return r, nil, false, fmt.Errorf("header: %w", err)
		}
	}
	if _, err := s.HeaderEnd(); err != nil {
		return r, nil, false, fmt.Errorf("end of headers: %w", err)
	}
	var mods []gomilter.ModifyAction
	act, err = mta.Body(s, toCRLF(body))
	if err == nil && act == nil {
		mods, act, err = s.End()
	}
	if _, err := step("data", fmt.Sprintf("%d bytes", len(in.message)), act, err); err != nil {
		return r, nil, false, err
	}
	final(act)
	for _, m := range mods {
		r.Changes = append(r.Changes, describeChange(m))
	}
	for i := range r.Recipients {
		for _, m := range mods {
			if m.Type == gomilter.ActionDelRcpt && strings.EqualFold(strings.Trim(m.Rcpt, "<>"), r.Recipients[i].Address) {
				r.Recipients[i].Result = "discard"
			}
		}
	}
	if act.Type == gomilter.ActionDiscard {
		for i := range r.Recipients {
			if r.Recipients[i].Result == "accept" {
				r.Recipients[i].Result = "discard"
			}
		}
	}
	return r, mods, leadingSpace, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func actionName(a *gomilter.Action) string {
	if a == nil {
		return ""
	}
	switch a.Type {
	case gomilter.ActionAccept:
		return "accept"
	case gomilter.ActionContinue, gomilter.ActionSkip:
		return "continue"
	case gomilter.ActionDiscard:
		return "discard"
	case gomilter.ActionReject:
		return "reject"
	case gomilter.ActionTempFail:
		return "tempfail"
	case gomilter.ActionRejectWithCode:
		switch {
		case a.SMTPCode == 421:
			return "drop"
		case a.SMTPCode >= 500:
			return "reject"
		}
		return "tempfail"
	}
	return fmt.Sprintf("action(%d)", a.Type)
}

func replyOf(a *gomilter.Action) string {
	if a == nil || a.SMTPReply == "" || !a.StopProcessing() {
		return ""
	}
	return strings.TrimSpace(strings.ReplaceAll(a.SMTPReply, "\r\n", " "))
}

func describeChange(m gomilter.ModifyAction) changeReport {
	idx := int(m.HeaderIndex)
	switch m.Type {
	case gomilter.ActionAddHeader:
		return changeReport{Action: "add_header", Name: m.HeaderName, Value: strings.TrimPrefix(m.HeaderValue, " ")}
	case gomilter.ActionInsertHeader:
		return changeReport{Action: "insert_header", Index: &idx, Name: m.HeaderName, Value: strings.TrimPrefix(m.HeaderValue, " ")}
	case gomilter.ActionChangeHeader:
		if m.HeaderValue == "" {
			return changeReport{Action: "delete_header", Index: &idx, Name: m.HeaderName}
		}
		return changeReport{Action: "change_header", Index: &idx, Name: m.HeaderName, Value: strings.TrimPrefix(m.HeaderValue, " ")}
	case gomilter.ActionChangeFrom:
		return changeReport{Action: "change_sender", Value: m.From}
	case gomilter.ActionAddRcpt:
		return changeReport{Action: "add_recipient", Value: m.Rcpt}
	case gomilter.ActionDelRcpt:
		return changeReport{Action: "delete_recipient", Value: m.Rcpt}
	case gomilter.ActionQuarantine:
		return changeReport{Action: "quarantine", Value: m.Reason}
	case gomilter.ActionReplaceBody:
		return changeReport{Action: "replace_body"}
	}
	return changeReport{Action: fmt.Sprintf("modify(%d)", m.Type)}
}

func printReport(w io.Writer, r *testReport) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, s := range r.Stages {
		line := s.Stage + "\t" + s.Input + "\t" + s.Result
		if s.Reply != "" {
			line += " " + s.Reply
		}
		if len(s.Rules) > 0 {
			line += "\t[" + strings.Join(s.Rules, ", ") + "]"
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	fmt.Fprintf(w, "\ndecision: %s", r.Decision)
	if r.Reply != "" {
		fmt.Fprintf(w, " %s", r.Reply)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "sender: %s\nrecipients:\n", r.Sender)
	for _, rc := range r.Recipients {
		fmt.Fprintf(w, "  <%s> %s", rc.Address, rc.Result)
		if rc.Reply != "" {
			fmt.Fprintf(w, " %s", rc.Reply)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "changes:")
	if len(r.Changes) == 0 {
		fmt.Fprintln(w, "  (none)")
	}
	for _, c := range r.Changes {
		fmt.Fprintf(w, "  %s", c.Action)
		if c.Index != nil {
			fmt.Fprintf(w, " [%d]", *c.Index)
		}
		if c.Name != "" {
			fmt.Fprintf(w, " %s:", c.Name)
		}
		if c.Value != "" {
			fmt.Fprintf(w, " %s", c.Value)
		}
		fmt.Fprintln(w)
	}
	if len(r.Log) > 0 {
		fmt.Fprintln(w, "log:")
		for _, l := range r.Log {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
}

// captureHandler collects the daemon's log records: "rule fired" records
// become the rules of a stage, everything from info up becomes the log.
type captureHandler struct {
	mu    sync.Mutex
	rules []string
	log   bytes.Buffer
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *captureHandler) Handle(_ context.Context, rec slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if rec.Message == "rule fired" {
		var rule, verb string
		rec.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "rule":
				rule = a.Value.String()
			case "verb":
				verb = a.Value.String()
			}
			return true
		})
		h.rules = append(h.rules, verb+" "+rule)
		return nil
	}
	if rec.Level < slog.LevelInfo {
		return nil
	}
	th := slog.NewTextHandler(&h.log, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey || a.Key == "duration_ms" || a.Key == "session" {
			return slog.Attr{}
		}
		return a
	}})
	return th.Handle(context.Background(), rec)
}

func (h *captureHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *captureHandler) WithGroup(string) slog.Handler      { return h }

func (h *captureHandler) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.rules
	h.rules = nil
	return out
}

func (h *captureHandler) lines() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(h.log.String()), "\n") {
		if l != "" && !strings.Contains(l, "msg=\"milter protocol:") {
			out = append(out, l)
		}
	}
	return out
}

func toCRLF(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

// applyToMessage applies header changes the way Postfix does and renders the
// message with the original line endings.
func applyToMessage(msg []byte, mods []gomilter.ModifyAction, leadingSpace bool) []byte {
	fields, body, _ := message.Split(msg)
	headers := mta.HeaderList{Fields: fields, LeadingSpace: leadingSpace}
	headers.Apply(mods)
	nl := "\n"
	if bytes.Contains(msg, []byte("\r\n")) {
		nl = "\r\n"
	}
	var b bytes.Buffer
	for _, h := range headers.Fields {
		b.WriteString(h.Name + ":" + strings.ReplaceAll(strings.ReplaceAll(h.Value, "\r\n", "\n"), "\n", nl) + nl)
	}
	b.WriteString(nl)
	b.Write(body)
	return b.Bytes()
}
