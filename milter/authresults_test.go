package milter

import (
	"context"
	"strings"
	"testing"

	gomilter "github.com/d--j/go-milter"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tollgate/tollgate/internal/authres"
)

// arRuntime is a fakeRuntime that writes Authentication-Results.
type arRuntime struct {
	fakeRuntime
	cfg AuthResultsConfig
}

func (r *arRuntime) AuthResults() AuthResultsConfig { return r.cfg }

// resultModule records a method's result at end of message, as SPF, DKIM,
// DMARC and ARC do.
type resultModule struct {
	name string
	r    authres.Result
}

func (m resultModule) Name() string { return m.name }
func (m resultModule) EndOfMessage(_ context.Context, t *Txn) error {
	t.AddAuthResult(m.r)
	return nil
}

// Every method's result goes into one Authentication-Results field, in
// method order whatever the module order; the data ACL sees the same text as
// $authresults; a forged field of our authserv-id is removed, another's kept.
func TestOneAuthenticationResults(t *testing.T) {
	var seen string
	rt := &arRuntime{cfg: AuthResultsConfig{AuthServID: "mx.example.org", Add: true, RemoveForged: true}}
	rt.needs = Needs{Headers: true, Actions: ActAddHeader | ActChangeHeader}
	rt.mods = []Module{
		resultModule{"arc", authres.Result{Method: "arc", Result: "none"}},
		resultModule{"dkim", authres.Result{Method: "dkim", Result: "pass", Props: []authres.Prop{{Type: "header", Property: "d", Value: "example.net"}}}},
		resultModule{"spf", authres.Result{Method: "spf", Result: "pass", Props: []authres.Prop{{Type: "smtp", Property: "mailfrom", Value: "alice@example.net"}}}},
	}
	rt.decide = func(stage Stage, _ *Session, tx *Txn, _ *Recipient) Decision {
		if stage == StageData {
			seen = tx.AuthResultsValue()
		}
		return Decision{}
	}
	ts := startServer(t, rt)
	s := ts.session(t, nil)
	envelope(t, s, "alice@example.net", "bob@example.org")
	mods, act := sendMessage(t, s, [][2]string{
		{"Authentication-Results", " other.example; spf=pass"},
		{"Authentication-Results", " MX.example.org; dkim=pass (forged)"},
		{"Subject", " hi"},
	}, "body\r\n")
	if act.Type != gomilter.ActionAccept {
		t.Fatalf("action %+v", act)
	}
	want := "mx.example.org;\r\n\tspf=pass smtp.mailfrom=alice@example.net;\r\n\tdkim=pass header.d=example.net;\r\n\tarc=none"
	if seen != want {
		t.Errorf("$authresults %q\nwant          %q", seen, want)
	}
	got := strings.Join(describe(mods), "|")
	if !strings.Contains(got, `change Authentication-Results[2] ""`) || strings.Contains(got, `Authentication-Results[1]`) {
		t.Errorf("forged field not removed (or the other's touched): %s", got)
	}
	if strings.Count(got, "Authentication-Results \" mx.example.org;") != 1 {
		t.Errorf("want one Authentication-Results of ours: %s", got)
	}
	if n := testutil.ToFloat64(ts.metrics.ForgedAuthResults); n != 1 {
		t.Errorf("forged removed = %v", n)
	}
}

// Without an authserv-id nothing is written or removed; with
// add_authresults off the value is still there for $authresults.
func TestAuthenticationResultsSwitches(t *testing.T) {
	for _, tc := range []struct {
		cfg            AuthResultsConfig
		wantVar, added bool
	}{
		{AuthResultsConfig{}, false, false},
		{AuthResultsConfig{AuthServID: "mx.example.org", Add: false, RemoveForged: false}, true, false},
		{AuthResultsConfig{AuthServID: "mx.example.org", Add: true}, true, true},
	} {
		var seen string
		rt := &arRuntime{cfg: tc.cfg}
		rt.needs = Needs{Headers: true, Actions: ActAddHeader | ActChangeHeader}
		rt.mods = []Module{resultModule{"spf", authres.Result{Method: "spf", Result: "fail"}}}
		rt.decide = func(stage Stage, _ *Session, tx *Txn, _ *Recipient) Decision {
			if stage == StageData {
				seen = tx.AuthResultsValue()
			}
			return Decision{}
		}
		ts := startServer(t, rt)
		s := ts.session(t, nil)
		envelope(t, s, "a@example.net", "b@example.org")
		mods, _ := sendMessage(t, s, [][2]string{{"Authentication-Results", " mx.example.org; spf=pass"}}, "x\r\n")
		got := strings.Join(describe(mods), "|")
		if (seen != "") != tc.wantVar || strings.Contains(got, "spf=fail") != tc.added || strings.Contains(got, "change") {
			t.Errorf("%+v: $authresults %q, mods %s", tc.cfg, seen, got)
		}
	}
}

func TestWriteAuthResultsAuth(t *testing.T) {
	spf := authres.Result{Method: "spf", Result: "pass", Props: []authres.Prop{{Type: "smtp", Property: "mailfrom", Value: "a@example.org"}}}
	cfg := AuthResultsConfig{AuthServID: "mx.example.org", Add: true}
	for _, tc := range []struct {
		name    string
		login   string
		results []authres.Result
		cfg     AuthResultsConfig
		want    string
	}{
		{"login and spf", "alice", []authres.Result{spf}, cfg,
			"mx.example.org;\r\n\tauth=pass smtp.auth=alice;\r\n\tspf=pass smtp.mailfrom=a@example.org"},
		{"login alone", "alice@example.org", nil, cfg, "mx.example.org;\r\n\tauth=pass smtp.auth=alice@example.org"},
		{"odd login is quoted", `bob "the" builder`, nil, cfg, "mx.example.org;\r\n\tauth=pass smtp.auth=\"bob \\\"the\\\" builder\""},
		{"no login", "", []authres.Result{spf}, cfg, "mx.example.org;\r\n\tspf=pass smtp.mailfrom=a@example.org"},
		{"nothing ran", "", nil, cfg, ""},
		{"no authserv_id", "alice", []authres.Result{spf}, AuthResultsConfig{Add: true}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx := &Txn{Session: &Session{Identity: Identity{AuthLogin: tc.login, AuthMechanism: "PLAIN"}}}
			for _, r := range tc.results {
				tx.AddAuthResult(r)
			}
			WriteAuthResults(tx, tc.cfg)
			if got := tx.AuthResultsValue(); got != tc.want {
				t.Errorf("got %q\nwant %q", got, tc.want)
			}
			if added := len(tx.Mutations.AuthResults); (tc.want != "") != (added == 1) || added > 1 {
				t.Errorf("%d fields added", added)
			}
			if len(tx.AuthResults()) != len(tc.results) {
				t.Errorf("the recorded results changed: %+v", tx.AuthResults())
			}
		})
	}
}

// An XCLIENT LOGIN that arrived off the proxy path is no authentication:
// it never becomes auth=pass.
func TestWriteAuthResultsUntrustedLogin(t *testing.T) {
	id := Identity{AuthLogin: "mallory", AuthMechanism: "XCLIENT"}
	id.checkLogin()
	tx := &Txn{Session: &Session{Identity: id}}
	WriteAuthResults(tx, AuthResultsConfig{AuthServID: "mx.example.org", Add: true})
	if tx.AuthResultsValue() != "" {
		t.Errorf("%q", tx.AuthResultsValue())
	}
}
