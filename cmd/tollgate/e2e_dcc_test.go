//go:build e2e

package main

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/dcc/dcctest"
)

func TestPostfixDCCGreylist(t *testing.T) {
	var greylist atomic.Bool
	greylist.Store(true)
	dccd := dcctest.New(t, dcctest.Config{Handler: func(*dcctest.Request) dcctest.Reply {
		if greylist.Load() {
			return dcctest.Reply{Overall: 'G', Header: "X-DCC-test-Metrics: dccifd.test 1201; Body=1 Fuz1=1 Fuz2=1"}
		}
		return dcctest.Reply{Overall: 'A', Header: "X-DCC-test-Metrics: dccifd.test 1201; Body=2 Fuz1=2 Fuz2=2"}
	}})
	pf, d := startPostfixWithTollgate(t, `
dcc: {address: `+dccd.DCCAddress()+`, timeout: 10s, direct_add_header: true}
acl:
  data:
    - defer:  {name: greylist, dcc: "!accept", message: "451 4.7.1 greylisted, try again later"}
    - accept: {}
`)
	send := func() (int, string) {
		res := pf.Swaks(t, "--from", "alice@example.net", "--to", "bob@example.org", "--header", "Subject: greylist me")
		return res.ExitCode, res.Output
	}
	code, out := send()
	if code == 0 || !strings.Contains(out, "<** 451 4.7.1 greylisted, try again later") {
		t.Fatalf("first attempt: exit %d\n%s", code, out)
	}
	greylist.Store(false)
	if code, out := send(); code != 0 {
		t.Fatalf("retry: exit %d\n%s", code, out)
	}
	msgs := pf.WaitMessages(t, 1, 30*time.Second)
	if v := msgs[0].Header("X-DCC-test-Metrics"); len(v) != 1 || v[0] != "dccifd.test 1201; Body=2 Fuz1=2 Fuz2=2" {
		t.Errorf("X-DCC header %q", v)
	}
	reqs := dccd.WaitRequests(2, 5*time.Second)
	if len(reqs) != 2 || reqs[1].ClientIP.String() != "127.0.0.1" || reqs[1].Sender != "alice@example.net" || reqs[1].MessageLen == 0 {
		t.Errorf("dccifd requests %+v", reqs)
	}
	if !d.waitMetric(t, `tollgate_dcc_requests_total{result="fail"} 1`) || !d.waitMetric(t, `tollgate_dcc_requests_total{result="accept"} 1`) {
		_, body := d.get(t, "/metrics")
		t.Errorf("metrics:\n%s", grepLines(body, "tollgate_dcc"))
	}
}
