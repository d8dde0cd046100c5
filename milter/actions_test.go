package milter

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// recorder is an MTA that writes down what it was told.
type recorder struct {
	calls []string
	fail  string
}

func (r *recorder) do(call string) error {
	r.calls = append(r.calls, call)
	if r.fail != "" && strings.HasPrefix(call, r.fail) {
		return errors.New("connection broken")
	}
	return nil
}
func (r *recorder) ChangeHeader(i int, n, v string) error {
	return r.do(fmt.Sprintf("chg %s[%d]=%q", n, i, v))
}
func (r *recorder) InsertHeader(i int, n, v string) error {
	return r.do(fmt.Sprintf("ins %d %s=%q", i, n, v))
}
func (r *recorder) ChangeFrom(v, a string) error   { return r.do("from " + v + " " + a) }
func (r *recorder) AddRecipient(v, a string) error { return r.do("addrcpt " + v + " " + a) }
func (r *recorder) DeleteRecipient(v string) error { return r.do("delrcpt " + v) }
func (r *recorder) Quarantine(v string) error      { return r.do("quarantine " + v) }

func TestApplyOrder(t *testing.T) {
	received := []Header{
		{"Received", " from a"}, {"Authentication-Results", " mx.example.org; spf=pass"},
		{"Subject", " hi"}, {"Authentication-Results", " other; dkim=pass"},
		{"X-Spam", " yes"}, {"Authentication-Results", " mx.example.org; forged"}, {"x-spam", " again"},
	}
	m := Mutations{
		Changes:       []HeaderChange{{HeaderRef{"Subject", 1}, "[ext] hi"}, {HeaderRef{"X-Spam", 2}, "changed but removed"}},
		RemoveHeaders: []HeaderRef{{"Authentication-Results", 1}, {"Authentication-Results", 3}},
		RemoveAll:     []string{"X-SPAM"},
		ARCSet:        []HeaderField{{"ARC-Seal", "i=1"}, {"ARC-Message-Signature", "i=1"}, {"ARC-Authentication-Results", "i=1"}},
		AuthResults:   []HeaderField{{"Authentication-Results", "mx.example.org; arc=none"}},
		Prepend:       []HeaderField{{"X-First", "1"}, {"X-Second", "2"}},
		Append:        []HeaderField{{"X-Last", "z"}},
		Quarantine:    "held",
	}
	rcpts := []*Recipient{{Addr: "a@example.org"}}
	if err := m.Envelope.ChangeSender("SRS0=x@fwd.example.org", "", "srs"); err != nil {
		t.Fatal(err)
	}
	m.Envelope.Redirect(rcpts[0], "b@example.org", "bmi")
	var r recorder
	if err := m.Apply(&r, received, rcpts, true); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`chg Subject[1]=" [ext] hi"`,
		// deletions: highest index first, so earlier indexes stay valid on Postfix
		`chg Authentication-Results[3]=""`,
		`chg X-SPAM[2]=""`,
		`chg Authentication-Results[1]=""`,
		`chg X-SPAM[1]=""`,
		// top inserts: final order from the top is ARC set, A-R, :at_start: headers
		`ins 0 X-Second=" 2"`, `ins 0 X-First=" 1"`,
		`ins 0 Authentication-Results=" mx.example.org; arc=none"`,
		`ins 0 ARC-Authentication-Results=" i=1"`, `ins 0 ARC-Message-Signature=" i=1"`, `ins 0 ARC-Seal=" i=1"`,
		`ins 2147483647 X-Last=" z"`,
		"from <SRS0=x@fwd.example.org> ", "delrcpt <a@example.org>", "addrcpt <b@example.org> ", "quarantine held",
	}
	// RemoveAll uses the name as received; compare case-insensitively there.
	got := make([]string, len(r.calls))
	for i, c := range r.calls {
		got[i] = strings.Replace(c, "x-spam[2]", "X-SPAM[2]", 1)
		got[i] = strings.Replace(got[i], "X-Spam[1]", "X-SPAM[1]", 1)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestApplyWithoutLeadingSpace(t *testing.T) {
	m := Mutations{Append: []HeaderField{{"X-A", "v"}}}
	var r recorder
	if err := m.Apply(&r, nil, nil, false); err != nil {
		t.Fatal(err)
	}
	if want := []string{`ins 2147483647 X-A="v"`}; !reflect.DeepEqual(r.calls, want) {
		t.Errorf("got %q want %q", r.calls, want)
	}
}

func TestApplyRefusesInjection(t *testing.T) {
	for _, f := range []HeaderField{{"X-A", "v\r\nBcc: victim@example.org"}, {"X-A", "v\nInjected: 1"}, {"Bad Name", "v"}, {"", "v"}, {"X:A", "v"}} {
		m := Mutations{Append: []HeaderField{f}}
		var r recorder
		if err := m.Apply(&r, nil, nil, true); err == nil {
			t.Errorf("%q accepted", f)
		}
		if len(r.calls) != 0 {
			t.Errorf("%q: sent %v before refusing", f, r.calls)
		}
	}
	ok := Mutations{Append: []HeaderField{{"X-Folded", "a\r\n\tb"}}}
	if err := ok.Apply(&recorder{}, nil, nil, true); err != nil {
		t.Errorf("folded value refused: %v", err)
	}
}

func TestApplyStopsAtMTAError(t *testing.T) {
	m := Mutations{Append: []HeaderField{{"X-A", "1"}}, Quarantine: "q"}
	rcpts := []*Recipient{{Addr: "a@b"}}
	m.Envelope.Drop(rcpts[0], "test")
	r := recorder{fail: "delrcpt"}
	if err := m.Apply(&r, nil, rcpts, true); err == nil {
		t.Fatal("no error")
	}
	if last := r.calls[len(r.calls)-1]; !strings.HasPrefix(last, "delrcpt") {
		t.Errorf("went on after the error: %v", r.calls)
	}
}

func TestMutationsNeeds(t *testing.T) {
	m := Mutations{Append: []HeaderField{{"X", "1"}}, RemoveAll: []string{"Y"}}
	rcpts := []*Recipient{{Addr: "a"}}
	m.Envelope.Drop(rcpts[0], "test")
	if got, want := m.Needs(rcpts), ActAddHeader|ActChangeHeader|ActDelRcpt; got != want {
		t.Errorf("needs %b want %b", got, want)
	}
	if !(&Mutations{}).Empty() || m.Empty() {
		t.Error("Empty wrong")
	}
}

func TestParseReply(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Reply
		err  bool
	}{
		{"550 5.7.1 relay not permitted", Reply{550, "5.7.1", "relay not permitted"}, false},
		{"5.7.1 relay not permitted", Reply{0, "5.7.1", "relay not permitted"}, false},
		{"relay not permitted", Reply{0, "", "relay not permitted"}, false},
		{"451 greylisted", Reply{451, "", "greylisted"}, false},
		{"550 4.7.1 mismatch", Reply{}, true},
		{"250 ok", Reply{}, true},
		{"5.7 incomplete", Reply{0, "", "5.7 incomplete"}, false},
		{"9.9.9 bad class", Reply{}, true},
		{"550", Reply{550, "", ""}, false},
		{"5501 not a code", Reply{0, "", "5501 not a code"}, false},
	} {
		got, err := ParseReply(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("%q: err %v", tc.in, err)
			continue
		}
		if !tc.err && got != tc.want {
			t.Errorf("%q: got %+v want %+v", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct {
		v   Verdict
		r   Reply
		err bool
	}{
		{Reject, Reply{Code: 550}, false}, {Reject, Reply{Code: 450}, true}, {TempFail, Reply{Code: 451, Enhanced: "4.7.1"}, false},
		{TempFail, Reply{Code: 550}, true}, {Drop, Reply{Code: 421}, false}, {Drop, Reply{Code: 554}, true},
		{Reject, Reply{Code: 550, Enhanced: "4.7.1"}, true}, {Accept, Reply{Code: 250}, true},
	} {
		if err := CheckReply(tc.v, tc.r); (err != nil) != tc.err {
			t.Errorf("CheckReply(%v, %+v) = %v", tc.v, tc.r, err)
		}
	}
}

func TestIdentityNormalisation(t *testing.T) {
	var id Identity
	id.fromConnect("[UNAVAILABLE]", "tcp6", 2525, "IPv6:2001:db8::1")
	if id.ClientAddr.String() != "2001:db8::1" || id.ClientName != "" || id.ClientPort != 2525 {
		t.Errorf("%+v", id)
	}
	id.fromConnect("[192.0.2.1]", "tcp4", 1, "::ffff:192.0.2.1")
	if id.ClientAddr.String() != "192.0.2.1" || id.ClientName != "" {
		t.Errorf("%+v", id)
	}
	id.fromConnect("mail.example.com.", "tcp4", 1, "192.0.2.1")
	if id.ClientName != "mail.example.com" || id.Client() != "mail.example.com [192.0.2.1]" {
		t.Errorf("%+v", id)
	}
	id.fromMacros(mapMacros{"{auth_authen}": "alice", "{auth_type}": "PLAIN", "{client_name}": "unknown", "{daemon_addr}": "IPv6:::1"})
	if !id.Authenticated() || id.AuthMechanism != "PLAIN" || id.ClientName != "" || id.DaemonAddr.String() != "::1" {
		t.Errorf("%+v", id)
	}
}

type mapMacros map[string]string

func (m mapMacros) GetEx(n string) (string, bool) { v, ok := m[n]; return v, ok }

func TestFinalHeadersMatchApply(t *testing.T) {
	received := []Header{{"Received", " from a"}, {"Authentication-Results", " mx.example.org; forged"}, {"Subject", " hi"}, {"X-Spam", " yes"}}
	m := Mutations{
		Changes:       []HeaderChange{{HeaderRef{"subject", 1}, "[ext] hi"}},
		RemoveHeaders: []HeaderRef{{"Authentication-Results", 1}},
		RemoveAll:     []string{"x-spam"},
		AuthResults:   []HeaderField{{"Authentication-Results", "mx.example.org; arc=none"}},
		Prepend:       []HeaderField{{"X-Top", "1"}},
		Append:        []HeaderField{{"X-Last", "z"}},
	}
	got := m.FinalHeaders(received, true)
	want := []Header{{"Authentication-Results", " mx.example.org; arc=none"}, {"X-Top", " 1"}, {"Received", " from a"},
		{"Subject", " [ext] hi"}, {"X-Last", " z"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	// Without the leading-space option the MTA dropped one space; it is back on the wire.
	if got := (&Mutations{}).FinalHeaders([]Header{{"Subject", "hi"}}, false); got[0].Value != " hi" {
		t.Errorf("%q", got)
	}
}
