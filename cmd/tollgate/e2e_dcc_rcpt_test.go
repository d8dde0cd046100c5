//go:build e2e

package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/dcc/dcctest"
	"github.com/tollgate/tollgate/internal/e2e"
)

// Issue 17 through a real Postfix: dccifd (the stand-in, playing a whiteclnt
// "many env_To carol@example.org") answers A / AR for two recipients; the
// policy drops carol through the envelope owner and bob gets the mail, with
// dccifd's header folded as dccifd folds it and the forged copy gone.
// Bulk mail (R for both) is refused as bulk, not greylisted, and a greylist
// embargo (G) is deferred.
func TestPostfixDCCPerRecipient(t *testing.T) {
	dccd := perRecipientDCC(t)
	pf, d := startPostfixWithTollgate(t, perRecipientPolicy(dccd))
	res := pf.Swaks(t, "--from", "alice@example.net", "--to", "bob@example.org,carol@example.org",
		"--header", "Subject: two recipients", "--header", "X-DCC-tollgate-Metrics: forged 1; Body=0")
	if res.ExitCode != 0 {
		t.Fatalf("swaks exit %d:\n%s", res.ExitCode, res.Output)
	}
	checkPerRecipientDelivery(t, pf.WaitMessages(t, 1, 30*time.Second)[0], dccd)

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

// The same drop through Sendmail, configured by the documented sendmail.mc
// lines: carol deleted, bob delivered with dccifd's header as dccifd folds it.
func TestSendmailDCCPerRecipient(t *testing.T) {
	dccd := perRecipientDCC(t)
	milterAddr, _ := startTollgateInet(t, perRecipientPolicy(dccd))
	host, port, _ := strings.Cut(milterAddr, ":")
	flags, macros := sendmailSnippet(t, "../../deploy/sendmail/sendmail.mc")
	sm := e2e.StartSendmail(t, e2e.SendmailOptions{Milter: "inet:" + port + "@" + host, MilterFlags: flags, MilterMacros: macros})
	res := e2e.SwaksFrom(t, "127.0.0.2", "--server", sm.Addr, "--from", "alice@example.net", "--to", "bob@example.org,carol@example.org",
		"--header", "Subject: two recipients", "--header", "X-DCC-tollgate-Metrics: forged 1; Body=0")
	if res.ExitCode != 0 {
		t.Fatalf("exit %d:\n%s\n%s", res.ExitCode, res.Output, sm.Log())
	}
	checkPerRecipientDelivery(t, sm.WaitMessages(t, 1, 30*time.Second)[0], dccd)
}

const longDCCHeader = "X-DCC-tollgate-Metrics: dccifd.test.example.org 1085; bulk rep Body=many Fuz1=many Fuz2=many rep=97%"

// perRecipientDCC plays dccifd with a whiteclnt "many env_To
// carol@example.org" (A / AR, with a header long enough to fold), bulk mail
// for a HELO with "bulk" (R / RR) and a greylist embargo for "grey".
func perRecipientDCC(t *testing.T) *dcctest.Server {
	users := dcctest.Users{Many: []string{"carol@example.org"}}.Handler()
	return dcctest.New(t, dcctest.Config{Handler: func(req *dcctest.Request) dcctest.Reply {
		switch {
		case strings.Contains(req.Helo, "bulk"):
			return dcctest.Users{Bulk: true}.Handler()(req)
		case strings.Contains(req.Helo, "grey"):
			return dcctest.Reply{Overall: 'G', Header: dcctest.DefaultHeader}
		}
		rep := users(req)
		rep.Header = longDCCHeader
		return rep
	}})
}

func perRecipientPolicy(dccd *dcctest.Server) string {
	return `
dcc: {address: ` + dccd.DCCAddress() + `, timeout: 10s, direct_add_header: true, local_users: {bob@example.org: bobby}}
acl:
  data:
    - defer:  {name: greylist, dcc_result: [G], message: "451 4.7.1 greylisted, please try again later"}
    - deny:   {name: dcc-bulk, dcc_every_recipient_result: [R], message: "550 5.7.1 bulk mail refused"}
    - accept: {name: dcc-per-rcpt, dcc_recipient_result: [R], control: [dcc_drop_rejected], log_message: "dropped $dcc_rejected_recipients"}
    - accept: {}
`
}

func checkPerRecipientDelivery(t *testing.T, got e2e.Message, dccd *dcctest.Server) {
	t.Helper()
	long := longDCCHeader
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
}
