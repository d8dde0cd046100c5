package milter

import (
	"testing"

	"github.com/tollgate/tollgate/internal/authres"
)

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
