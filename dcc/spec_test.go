package dcc_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/tollgate/tollgate/dcc"
	"github.com/tollgate/tollgate/dcc/dcctest"
	"github.com/tollgate/tollgate/policy"
)

// Every new key and word is checked when the policy loads, at its line.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ yml, want string }{
		{"dcc: {local_user: everyone}\n", `dcc.yaml:1: dcc.local_user: "everyone"`},
		{"dcc:\n  local_users:\n    bob@example.org: ../etc\n", "dcc.yaml:3: dcc.local_users: bob@example.org"},
		{"dcc:\n  local_users:\n    bob: bob\n", "dcc.yaml:3: dcc.local_users: bob"},
		{"dcc: {brand: \"a b\"}\n", `dcc.yaml:1: dcc.brand: "a b"`},
		{"dcc: {}\nacl:\n  data:\n    - defer: {dcc_result: [X]}\n", `dcc.yaml:4: dcc_result: "X" is not one of dccifd's letters A, R, G, T, S`},
		{"dcc: {}\nacl:\n  data:\n    - defer: {dcc_recipient_result: [T]}\n", `dcc.yaml:4: dcc_recipient_result: "T" is not one of dccifd's letters A, R, G`},
		{"dcc: {}\nacl:\n  data:\n    - defer: {dcc_every_recipient_result: []}\n", "dcc.yaml:4: dcc_every_recipient_result: give at least one letter"},
		{"dcc: {}\nacl:\n  rcpt:\n    - defer: {dcc_result: [G]}\n", "dcc_result is not available at rcpt"},
		{"dcc: {}\nacl:\n  rcpt:\n    - warn: {set: {acl_m_x: $dcc_recipient_results}}\n", "dcc_recipient_results"},
		{"dcc: {}\nacl:\n  connect:\n    - warn: {control: [dcc_drop_rejected]}\n", "dcc_drop_rejected"},
	} {
		if _, err := policy.Parse("dcc.yaml", []byte(tc.yml), dcc.Spec); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yml, err, tc.want)
		}
	}
	ok := "dcc: {local_user: none, local_users: {bob@example.org: bob}, local_user_domains: [\"*.example.org\"], brand: example}\n" +
		"acl:\n  mail:\n    - warn: {control: [dcc_drop_rejected]}\n    - accept: {}\n  data:\n    - defer: {dcc_result: [\"!A\", \"!S\"]}\n    - accept: {dcc_every_recipient_result: [a, r]}\n"
	if _, err := policy.Parse("dcc.yaml", []byte(ok), dcc.Spec); err != nil {
		t.Errorf("valid configuration: %v", err)
	}
}

// Exim list semantics for the letter conditions: the first item that
// matches decides, and a list that ends negated matches the rest.
func TestLetterLists(t *testing.T) {
	var mu sync.Mutex
	letter := byte('A')
	srv := dcctest.New(t, dcctest.Config{Handler: func(*dcctest.Request) dcctest.Reply {
		mu.Lock()
		defer mu.Unlock()
		return dcctest.Reply{Overall: letter}
	}})
	pl := serve(t, `
dcc: {address: "`+srv.DCCAddress()+`"}
acl:
  data:
    - deny:   {dcc_result: ["!A", "!S"], message: "550 5.7.1 not A or S: $dcc_result"}
    - accept: {}
`)
	for _, l := range []byte("ASRGT") {
		want := "accept"
		if l != 'A' && l != 'S' {
			want = "550 5.7.1 not A or S: " + string(l)
		}
		mu.Lock()
		letter = l
		mu.Unlock()
		if got := send(t, pl, []string{"bob@example.org"}); got.action != want {
			t.Errorf("%c: %s, want %s", l, got.action, want)
		}
	}
}

// dccifd's T comes with an R for every recipient it had read: those are no
// verdicts, and the drop control must not discard the message on them.
func TestTempFailLettersAreNoVerdict(t *testing.T) {
	srv := dcctest.New(t, dcctest.Config{Handler: dcctest.Fixed(dcctest.Reply{Overall: 'T', Rcpts: "RR"})})
	pl := serve(t, `
dcc: {address: "`+srv.DCCAddress()+`"}
acl:
  rcpt:
    - accept: {control: [dcc_drop_rejected]}
  data:
    - deny:   {dcc_recipient_result: [R], message: "550 5.7.1 per-recipient R seen"}
    - accept: {add_header: "X-Letters: $dcc_result [$dcc_recipient_results]"}
`)
	got := send(t, pl, []string{"bob@example.org", "carol@example.org"})
	if got.action != "accept" || len(got.deletes) != 0 || got.added["X-Letters"] != "T []" {
		t.Errorf("%+v", got)
	}
}
