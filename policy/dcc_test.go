package policy

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/dcc/dcctest"
	"github.com/tollgate/tollgate/milter"
)

// serve runs a configuration behind a real milter socket.
func serve(t *testing.T, yml string) string {
	t.Helper()
	p := mustParse(t, yml)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	env := NewEnv(log, prometheus.NewRegistry())
	rt, err := env.Runtime(p)
	if err != nil {
		t.Fatal(err)
	}
	srv := milter.NewServer(rt, milter.ServerOptions{Logger: log, Metrics: env.Metrics})
	sock := filepath.Join(t.TempDir(), "m.sock")
	ln, err := milter.Listen(milter.Address{Network: "unix", Addr: sock}, milter.SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		env.Close()
	})
	return sock
}

type mtaMessage struct {
	helo, from string
	rcpts      []string
	headers    [][2]string
	body       string
	abort      bool
}

// deliver plays an MTA: connect from 198.51.100.7, then the message.
func deliver(t *testing.T, sock string, msg mtaMessage) ([]gomilter.ModifyAction, *gomilter.Action) {
	t.Helper()
	c := gomilter.NewClient("unix", sock, gomilter.WithAction(gomilter.AllClientSupportedActionMasks))
	bag := gomilter.NewMacroBag()
	bag.Set("{client_name}", "mail.example.net")
	s, err := c.Session(bag)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	steps := []func() (*gomilter.Action, error){
		func() (*gomilter.Action, error) {
			return s.Conn("mail.example.net", gomilter.FamilyInet, 40000, "198.51.100.7")
		},
		func() (*gomilter.Action, error) { return s.Helo(msg.helo) },
		func() (*gomilter.Action, error) { return s.Mail(msg.from, "") },
	}
	for _, r := range msg.rcpts {
		steps = append(steps, func() (*gomilter.Action, error) { return s.Rcpt(r, "") })
	}
	steps = append(steps, s.DataStart)
	for _, step := range steps {
		if act, err := step(); err != nil || act.StopProcessing() {
			t.Fatalf("%v %v", act, err)
		}
	}
	for _, h := range msg.headers {
		if _, err := s.HeaderField(h[0], h[1], nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.HeaderEnd(); err != nil {
		t.Fatal(err)
	}
	if msg.abort {
		s.BodyChunk([]byte("partial"))
		if err := s.Abort(nil); err != nil {
			t.Fatal(err)
		}
		return nil, nil
	}
	mods, act, err := s.BodyReadFrom(strings.NewReader(msg.body))
	if err != nil {
		t.Fatal(err)
	}
	return mods, act
}

var plainMessage = mtaMessage{helo: "mail.example.net", from: "alice@example.net", rcpts: []string{"bob@example.org", "carol@example.org"},
	headers: [][2]string{{"Subject", " hello"}, {"From", " alice@example.net"}}, body: "hi\r\n"}

const dccTestPolicy = `
dcc: {address: %s, timeout: 3s, direct_add_header: true}
acl:
  rcpt:
    - warn:   {recipients: [carol@example.org], control: [dcc_grey_off]}
    - accept: {}
  data:
    - defer:  {name: greylist, dcc: "!accept", message: "451 4.7.1 greylisted, try again later"}
    - accept: {}
`

func dccConfig(addr string) string { return strings.Replace(dccTestPolicy, "%s", addr, 1) }

func TestDCCGreylistThenAccept(t *testing.T) {
	letter := byte('G')
	dccd := dcctest.New(t, dcctest.Config{Handler: func(*dcctest.Request) dcctest.Reply {
		return dcctest.Reply{Overall: letter, Header: "X-DCC-test-Metrics: dcc.example 1201; Body=1 Fuz1=many Fuz2=many"}
	}})
	sock := serve(t, dccConfig(dccd.DCCAddress()))

	_, act := deliver(t, sock, plainMessage)
	if act.SMTPCode != 451 || !strings.Contains(act.SMTPReply, "4.7.1 greylisted") {
		t.Fatalf("first attempt %+v", act)
	}
	req := dccd.WaitRequests(1, 5*time.Second)[0]
	wantMsg := "Subject: hello\r\nFrom: alice@example.net\r\n\r\nhi\r\n"
	if req.ClientIP.String() != "198.51.100.7" || req.ClientName != "mail.example.net" || req.Helo != "mail.example.net" ||
		req.Sender != "alice@example.net" || len(req.Rcpts) != 2 || req.Rcpts[1].Addr != "carol@example.org" ||
		!req.HasOption("header") || !req.HasOption("grey-off") || req.MessageLen != int64(len(wantMsg)) || !req.HalfClosed {
		t.Errorf("dccifd received %+v", req)
	}
	if !strings.HasSuffix(string(req.Raw), wantMsg) {
		t.Errorf("message bytes:\n%q", req.Raw)
	}

	letter = 'A'
	mods, act := deliver(t, sock, plainMessage)
	if act.Type != gomilter.ActionAccept || len(mods) != 1 || mods[0].HeaderName != "X-DCC-test-Metrics" ||
		!strings.Contains(mods[0].HeaderValue, "dcc.example 1201; Body=1") {
		t.Errorf("retry: %+v %+v", act, mods)
	}
}

func TestDCCDownDefersUnlessDeferOK(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-dccifd")
	sock := serve(t, dccConfig(missing))
	if _, act := deliver(t, sock, plainMessage); act.SMTPCode != 451 || !strings.Contains(act.SMTPReply, "4.3.0") {
		t.Errorf("dccifd down: %+v", act)
	}
	ok := strings.Replace(dccConfig(missing), `"!accept"`, `"!accept/defer_ok"`, 1)
	if _, act := deliver(t, serve(t, ok), plainMessage); act.Type != gomilter.ActionAccept {
		t.Errorf("defer_ok: %+v", act)
	}
}

func TestDCCClientOverrideAndAbort(t *testing.T) {
	dccd := dcctest.New(t, dcctest.Config{})
	heloMap := filepath.Join(t.TempDir(), "helo-map")
	os.WriteFile(heloMap, []byte("# cluster\nout1.cluster.example 192.0.2.10\n"), 0o644)
	sock := serve(t, `
dcc: {address: `+dccd.DCCAddress()+`, client_ip_map: `+heloMap+`}
acl:
  rcpt:
    - warn:   {senders: ["*@override.example"], set: {acl_m_dcc_override_client_ip: "2001:db8::25"}}
    - accept: {}
  data:
    - accept: {dcc: "*"}
`)
	cluster := plainMessage
	cluster.helo = "out1.cluster.example"
	deliver(t, sock, cluster)
	override := plainMessage
	override.from = "x@override.example"
	deliver(t, sock, override)
	aborted := plainMessage
	aborted.abort = true
	deliver(t, sock, aborted)
	reqs := dccd.WaitRequests(3, 5*time.Second)
	if len(reqs) != 3 || reqs[0].ClientIP.String() != "192.0.2.10" || reqs[1].ClientIP.String() != "2001:db8::25" || reqs[1].HasClientName {
		t.Errorf("requests %+v", reqs)
	}
	// The aborted message's request ended (WaitRequests saw it finish) without
	// the message: dccifd cannot be told of an abort, so nothing buffered is
	// flushed to it.
	if len(reqs) == 3 && (reqs[2].MessageLen != 0 || reqs[2].Replied) {
		t.Errorf("aborted request: %d bytes, replied %v", reqs[2].MessageLen, reqs[2].Replied)
	}
}

func TestDCCConfigErrors(t *testing.T) {
	for _, tc := range []struct{ yml, want string }{
		{"dcc: {address: /var/dcc/dccifd, options: [header, bogus]}\n", "t.yaml:1: dcc:"},
		{"acl:\n  data:\n    - defer: {dcc: \"!accept\"}\n", "t.yaml:3: dcc: the condition needs a valid dcc: section"},
		{"dcc: {}\nacl:\n  data:\n    - defer: {dcc: \"maybe\"}\n", `t.yaml:4: dcc: "maybe"`},
		{"dcc: {}\nacl:\n  rcpt:\n    - defer: {dcc: \"*\"}\n", "acl.rcpt: dcc is not available at rcpt"},
		{"dcc: {}\nacl:\n  data:\n    - accept: {control: [dcc_grey_off]}\n", "control: dcc_grey_off is not available at data (only at mail, rcpt)"},
		{"dcc: {client_ip_map: /nonexistent/map}\n", "t.yaml:1: dcc.client_ip_map"},
	} {
		if _, err := Parse("t.yaml", []byte(tc.yml), testFeatures...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yml, err, tc.want)
		}
	}
}
