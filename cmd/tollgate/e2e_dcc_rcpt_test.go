//go:build e2e

package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/dcc/dcctest"
)

// Issue 17 through a real Postfix: dccifd (the stand-in, playing a whiteclnt
// "many env_To carol@example.org") answers A / AR for two recipients; the
// policy drops carol through the envelope owner and bob gets the mail, with
// dccifd's header folded as dccifd folds it and the forged copy gone.
// Bulk mail (R for both) is refused as bulk, not greylisted, and a greylist
// embargo (G) is deferred.
func TestPostfixDCCPerRecipient(t *testing.T) {
	const long = "X-DCC-tollgate-Metrics: dccifd.test.example.org 1085; bulk rep Body=many Fuz1=many Fuz2=many rep=97%"
	users := dcctest.Users{Many: []string{"carol@example.org"}}.Handler()
	dccd := dcctest.New(t, dcctest.Config{Handler: func(req *dcctest.Request) dcctest.Reply {
		switch {
		case strings.Contains(req.Helo, "bulk"):
			return dcctest.Users{Bulk: true}.Handler()(req)
		case strings.Contains(req.Helo, "grey"):
			return dcctest.Reply{Overall: 'G', Header: dcctest.DefaultHeader}
		}
		rep := users(req)
		rep.Header = long
		return rep
	}})
	pf, d := startPostfixWithTollgate(t, `
dcc: {address: `+dccd.DCCAddress()+`, timeout: 10s, direct_add_header: true, local_users: {bob@example.org: bobby}}
acl:
  data:
    - defer:  {name: greylist, dcc_result: [G], message: "451 4.7.1 greylisted, please try again later"}
    - deny:   {name: dcc-bulk, dcc_every_recipient_result: [R], message: "550 5.7.1 bulk mail refused"}
    - accept: {name: dcc-per-rcpt, dcc_recipient_result: [R], control: [dcc_drop_rejected], log_message: "dropped $dcc_rejected_recipients"}
    - accept: {}
`)
	res := pf.Swaks(t, "--from", "alice@example.net", "--to", "bob@example.org,carol@example.org",
		"--header", "Subject: two recipients", "--header", "X-DCC-tollgate-Metrics: forged 1; Body=0")
	if res.ExitCode != 0 {
		t.Fatalf("swaks exit %d:\n%s", res.ExitCode, res.Output)
	}
	msgs := pf.WaitMessages(t, 1, 30*time.Second)
	got := msgs[0]
	if fmt.Sprint(got.Envelope.To()) != "[bob@example.org]" {
		t.Errorf("delivered to %v, want bob only", got.Envelope.To())
	}
	// One X-DCC header, ours (unfolding keeps the tab of each fold).
	if v := got.Header("X-DCC-tollgate-Metrics"); len(v) != 1 || strings.ReplaceAll(v[0], "\t", " ") != strings.TrimPrefix(long, "X-DCC-tollgate-Metrics: ") {
		t.Errorf("X-DCC headers %q", v)
	}
	// Byte for byte what dccifd writes (smtp-sink stores LF line ends).
	if !strings.Contains(string(got.Raw), "\n"+dcctest.Fold(long)) {
		t.Errorf("X-DCC not folded as dccifd folds it:\n%s\nwant\n%s", got.Raw, dcctest.Fold(long))
	}
	reqs := dccd.WaitRequests(1, 5*time.Second)
	if len(reqs) != 1 || fmt.Sprint(reqs[0].Rcpts) != fmt.Sprint([]dcctest.Rcpt{{Addr: "bob@example.org", User: "bobby", HasUser: true}, {Addr: "carol@example.org", User: "carol", HasUser: true}}) {
		t.Errorf("dccifd requests %+v", reqs)
	}

	bulk := pf.Swaks(t, "--helo", "bulk.example.net", "--from", "alice@example.net", "--to", "bob@example.org,carol@example.org")
	if bulk.ExitCode == 0 || !strings.Contains(bulk.Output, "<** 550 5.7.1 bulk mail refused") {
		t.Errorf("bulk: exit %d\n%s", bulk.ExitCode, bulk.Output)
	}
	grey := pf.Swaks(t, "--helo", "grey.example.net", "--from", "alice@example.net", "--to", "bob@example.org,carol@example.org")
	if grey.ExitCode == 0 || !strings.Contains(grey.Output, "<** 451 4.7.1 greylisted, please try again later") {
		t.Errorf("greylist: exit %d\n%s", grey.ExitCode, grey.Output)
	}
	if !d.waitMetric(t, `tollgate_dcc_recipients_dropped_total 1`) || !d.waitMetric(t, `tollgate_dcc_forged_headers_removed_total 1`) {
		_, body := d.get(t, "/metrics")
		t.Errorf("metrics:\n%s", grepLines(body, "tollgate_dcc"))
	}
}
