package milter

import (
	"strings"

	"github.com/tollgate/tollgate/internal/authres"
)

// AuthResultsConfig is how the one Authentication-Results header field of
// this host is written (top-level authserv_id, add_authresults,
// remove_forged_authresults).
type AuthResultsConfig struct {
	AuthServID   string // "" writes and removes nothing
	Add          bool   // add the header field when a method ran
	RemoveForged bool   // remove inbound fields that claim our authserv-id
}

// AuthResultsRuntime is implemented by a Runtime that writes
// Authentication-Results. Optional, so that test runtimes need not.
type AuthResultsRuntime interface {
	AuthResults() AuthResultsConfig
}

func authResultsConfig(rt Runtime) AuthResultsConfig {
	if a, ok := rt.(AuthResultsRuntime); ok {
		return a.AuthResults()
	}
	return AuthResultsConfig{}
}

// AddAuthResult records a method's result for the message's
// Authentication-Results. Each method's module adds its own; the milter
// writes them all in one header field after the end-of-message hooks, before
// the data ACL (which reads it as $authresults), so that ARC seals it.
func (t *Txn) AddAuthResult(r authres.Result) {
	t.authResults = append(t.authResults, r)
}

// AuthResults returns the results recorded so far, in header order.
func (t *Txn) AuthResults() []authres.Result { return authres.Sort(t.authResults) }

// AuthResultsValue is the value of the Authentication-Results header field
// the milter wrote for this message ("" before the end of message or when
// none is written): Exim's ${authresults}.
func (t *Txn) AuthResultsValue() string { return t.authResultsValue }

// removeForgedAuthResults marks an inbound Authentication-Results that
// claims our authserv-id for removal: nobody else may speak for us, and a
// copy from outside would be taken for our own verdict downstream.
func (c *connection) removeForgedAuthResults(t *Txn, h Header) {
	if RemoveForgedAuthResults(t, authResultsConfig(c.sess.runtime), h) {
		c.srv.metrics.ForgedAuthResults.Inc()
	}
}

// RemoveForgedAuthResults is what the milter does with every header field
// as it arrives (exported for module tests that play the milter): it reports
// whether h is an Authentication-Results that claims cfg's authserv-id,
// which it then marks for removal.
func RemoveForgedAuthResults(t *Txn, cfg AuthResultsConfig, h Header) bool {
	if !strings.EqualFold(h.Name, "Authentication-Results") {
		return false
	}
	t.nAuthResults++
	if !cfg.RemoveForged || cfg.AuthServID == "" {
		return false
	}
	if id, err := authres.AuthServID(h.Value); err == nil && strings.EqualFold(id, cfg.AuthServID) {
		t.Mutations.RemoveHeaders = append(t.Mutations.RemoveHeaders, HeaderRef{Name: h.Name, Index: t.nAuthResults})
		return true
	}
	return false
}

// WriteAuthResults turns the recorded results into the message's one
// Authentication-Results header field; the milter calls it after the
// end-of-message hooks (exported for module tests that play the milter).
func WriteAuthResults(t *Txn, cfg AuthResultsConfig) {
	if cfg.AuthServID == "" {
		return
	}
	results := t.authResults
	if r, ok := smtpAuthResult(t); ok {
		results = append([]authres.Result{r}, results...)
	}
	if len(results) == 0 {
		return
	}
	t.authResultsValue = authres.Format(cfg.AuthServID, authres.Sort(results))
	if cfg.Add {
		t.Mutations.AuthResults = append(t.Mutations.AuthResults, HeaderField{Name: "Authentication-Results", Value: t.authResultsValue})
	}
}

// smtpAuthResult is the auth method of RFC 8601 §2.7.4: the client logged
// in with SMTP AUTH (or a trusted XCLIENT proxy said it did), so the
// message's results say who. It is the milter's own, not a feature's: the
// login is an identity fact every session has. An XCLIENT LOGIN off the
// proxy path never gets here (Identity.checkLogin drops it).
func smtpAuthResult(t *Txn) (authres.Result, bool) {
	if t.Session == nil || t.Session.Identity.AuthLogin == "" {
		return authres.Result{}, false
	}
	return authres.Result{Method: "auth", Result: "pass",
		Props: []authres.Prop{{Type: "smtp", Property: "auth", Value: t.Session.Identity.AuthLogin}}}, true
}
