// Package seamtest tests where features meet: several modules acting on one
// message through the real pipeline (policy, modules, milter server, the
// envelope owner), driven over the milter protocol by go-milter's client.
package seamtest

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/dcc/dcctest"
	"github.com/tollgate/tollgate/internal/miltertest"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/srs"
)

// spamdStandIn answers every scan as spam (20 / 5): the BMI rules then
// decide per recipient. The real spamd plays this part in the Postfix test
// (cmd/tollgate, e2e tag); here the point is the envelope, not the scanner.
func spamdStandIn(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				length := 0
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if line == "\r\n" {
						break
					}
					if v, ok := strings.CutPrefix(line, "Content-length: "); ok {
						length, _ = strconv.Atoi(strings.TrimSpace(v))
					}
				}
				if _, err := io.CopyN(io.Discard, br, int64(length)); err != nil {
					return
				}
				io.WriteString(c, "SPAMD/1.1 0 EX_OK\r\nContent-length: 9\r\nSpam: True ; 20.0 / 5.0\r\n\r\nGTUBE,X_Y")
			}()
		}
	}()
	return ln.Addr().String()
}

const secret = "s3cret"

// bounceTo is the SRS address a bounce to orig comes back to.
func bounceTo(t *testing.T, orig string) string {
	t.Helper()
	s, err := srs.New(srs.Options{Domain: "fwd.example.org", Secrets: []string{secret}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Forward(orig)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// message is one SMTP transaction as the MTA reports it to the milter.
type message struct {
	sender string
	rcpts  []string
}

// outcome is what the MTA was told: the final envelope, whether a
// recipient was deleted twice, the end-of-message action and quarantine.
type outcome struct {
	sender     string
	rcpts      []string
	deletes    []string
	action     string
	quarantine string
}

func send(t *testing.T, config string, m message) outcome {
	t.Helper()
	p, err := policy.Parse("seam.yaml", []byte(config), features...)
	if err != nil {
		t.Fatal(err)
	}
	env := policy.NewEnv(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	t.Cleanup(env.Close)
	rt, err := env.Runtime(p)
	if err != nil {
		t.Fatal(err)
	}
	sock := miltertest.Serve(t, rt, 0, 0)
	c, macros := miltertest.Client(sock)
	s, err := c.Session(macros)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	step := func(act *gomilter.Action, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if act.Type != gomilter.ActionContinue && act.Type != gomilter.ActionAccept && act.Type != gomilter.ActionDiscard {
			t.Fatalf("action %v", act)
		}
	}
	step(s.Conn("mail.example.net", gomilter.FamilyInet, 40000, "203.0.113.5"))
	step(s.Helo("mail.example.net"))
	step(s.Mail(m.sender, ""))
	var kept []string
	for _, r := range m.rcpts {
		act, err := s.Rcpt(r, "")
		step(act, err)
		if act.Type != gomilter.ActionDiscard {
			kept = append(kept, r)
		}
	}
	step(s.DataStart())
	step(s.HeaderField("Subject", " test", nil))
	step(s.HeaderEnd())
	step(s.BodyChunk([]byte("hello\r\n")))
	mods, act, err := s.End()
	if err != nil {
		t.Fatal(err)
	}
	out := outcome{sender: m.sender, action: fmt.Sprintf("action %c", act.Type)}
	switch act.Type {
	case gomilter.ActionDiscard:
		out.action = "discard"
	case gomilter.ActionAccept, gomilter.ActionContinue:
		out.action = "accept"
	}
	final := slices.Clone(kept)
	for _, mod := range mods {
		switch mod.Type {
		case gomilter.ActionChangeFrom:
			out.sender = strings.Trim(mod.From, "<>")
		case gomilter.ActionDelRcpt:
			addr := strings.Trim(mod.Rcpt, "<>")
			out.deletes = append(out.deletes, addr)
			final = slices.DeleteFunc(final, func(a string) bool { return strings.EqualFold(a, addr) })
		case gomilter.ActionAddRcpt:
			final = append(final, strings.Trim(mod.Rcpt, "<>"))
		case gomilter.ActionQuarantine:
			out.quarantine = mod.Reason
		}
	}
	out.rcpts = final
	return out
}

func config(spamd, bmiRule, rcptACL string, extra string) string {
	c := "srs: {domain: fwd.example.org, secrets: [" + secret + "], local_domains: [example.org]}\n" + extra
	if bmiRule != "" {
		c += "bmi:\n  backend: {spamd: {address: " + spamd + "}}\n  rules:\n    - " + bmiRule + "\n"
	}
	return c + "acl:\n  rcpt:\n" + rcptACL + "    - accept: {}\n  data:\n    - accept: {}\n"
}

// Every pair of modules acting on one recipient, through the real
// pipeline: the final envelope, and no recipient deleted twice.
func TestEnvelopeMatrix(t *testing.T) {
	spamd := spamdStandIn(t)
	bounce := bounceTo(t, "alice@example.net")
	bmiRun := "    - warn: {control: [bmi_run]}\n"
	// BMI judges the reversed address: its rules name alice, not the SRS
	// address the bounce came to.
	forAlice := "when: {recipients: [alice@example.net]}"
	forBob := "when: {recipients: [bob@example.org]}"
	for _, tc := range []struct {
		name   string
		config string
		msg    message
		want   outcome
	}{
		{"SRS reverse alone", config(spamd, "", "", ""), message{"", []string{bounce}},
			outcome{rcpts: []string{"alice@example.net"}, deletes: []string{bounce}, action: "accept"}},
		{"SRS reverse x BMI drop", config(spamd, "{id: 1, "+forAlice+", outcome: drop}", bmiRun, ""), message{"", []string{bounce, "bob@example.org"}},
			outcome{rcpts: []string{"bob@example.org"}, deletes: []string{bounce}, action: "accept"}},
		{"SRS reverse x BMI drop of the only recipient", config(spamd, "{id: 1, "+forAlice+", outcome: drop}", bmiRun, ""), message{"", []string{bounce}},
			outcome{rcpts: []string{bounce}, action: "discard"}},
		{"SRS reverse x BMI redirect", config(spamd, "{id: 1, "+forAlice+", outcome: alternate, alt_location: \"redirect:spam@example.org\"}", bmiRun, ""),
			message{"", []string{bounce}},
			outcome{rcpts: []string{"spam@example.org"}, deletes: []string{bounce}, action: "accept"}},
		{"SRS reverse x BMI quarantine", config(spamd, "{id: 1, "+forAlice+", outcome: alternate, alt_location: \"quarantine:held\"}", bmiRun, ""),
			message{"", []string{bounce}},
			outcome{rcpts: []string{"alice@example.net"}, deletes: []string{bounce}, action: "accept", quarantine: "held"}},
		{"SRS reverse x BMI deliver", config(spamd, "{id: 1, "+forAlice+", outcome: deliver}", bmiRun, ""), message{"", []string{bounce}},
			outcome{rcpts: []string{"alice@example.net"}, deletes: []string{bounce}, action: "accept"}},
		{"SRS reverse x rcpt discard", config(spamd, "", "    - discard: {srs: [valid]}\n", ""), message{"", []string{bounce, "bob@example.org"}},
			outcome{rcpts: []string{"bob@example.org"}, deletes: []string{bounce}, action: "accept"}},
		{"BMI drop x rcpt discard", config(spamd, "{id: 1, "+forBob+", outcome: drop}", "    - discard: {recipients: [bob@example.org]}\n"+bmiRun, ""),
			message{"carol@example.net", []string{"bob@example.org", "dave@example.org"}},
			outcome{sender: "carol@example.net", rcpts: []string{"dave@example.org"}, deletes: []string{"bob@example.org"}, action: "accept"}},
		{"BMI redirect x rcpt discard", config(spamd, "{id: 1, "+forBob+", outcome: alternate, alt_location: \"redirect:spam@example.org\"}", "    - discard: {recipients: [bob@example.org]}\n"+bmiRun, ""),
			message{"carol@example.net", []string{"bob@example.org", "dave@example.org"}},
			outcome{sender: "carol@example.net", rcpts: []string{"dave@example.org"}, deletes: []string{"bob@example.org"}, action: "accept"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := send(t, tc.config, tc.msg)
			if tc.want.sender == "" {
				tc.want.sender = tc.msg.sender
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// SRS forward x BMI redirect: the sender and the recipients change together.
func TestEnvelopeSenderAndRedirect(t *testing.T) {
	spamd := spamdStandIn(t)
	got := send(t, config(spamd, "{id: 1, when: {recipients: [bob@example.org]}, outcome: alternate, alt_location: \"redirect:spam@example.org\"}",
		"    - warn: {control: [bmi_run, srs_forward]}\n", ""), message{"carol@example.net", []string{"bob@example.org"}})
	if !strings.HasPrefix(got.sender, "SRS0=") || !strings.HasSuffix(got.sender, "=example.net=carol@fwd.example.org") ||
		fmt.Sprint(got.rcpts) != "[spam@example.org]" || fmt.Sprint(got.deletes) != "[bob@example.org]" {
		t.Errorf("%+v", got)
	}
}

// SRS x DCC per recipient: dccifd is asked about the address the bounce
// really goes to, and DCC's header rides along with the replaced recipient.
func TestEnvelopeSRSAndDCC(t *testing.T) {
	srv := dcctest.New(t, dcctest.Config{Network: "tcp"})
	bounce := bounceTo(t, "alice@example.net")
	extra := "dcc: {address: \"" + srv.DCCAddress() + "\", direct_add_header: true}\n"
	got := send(t, config("", "", "", extra), message{"", []string{bounce, "bob@example.org"}})
	if fmt.Sprint(got.rcpts) != "[bob@example.org alice@example.net]" || fmt.Sprint(got.deletes) != "["+bounce+"]" || got.action != "accept" {
		t.Errorf("%+v", got)
	}
	reqs := srv.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d dccifd requests", len(reqs))
	}
	var seen []string
	for _, r := range reqs[0].Rcpts {
		seen = append(seen, r.Addr)
	}
	if fmt.Sprint(seen) != "[alice@example.net bob@example.org]" {
		t.Errorf("dccifd was asked about %v", seen)
	}
}
