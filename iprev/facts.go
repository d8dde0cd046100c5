package iprev

import "github.com/tollgate/tollgate/milter"

// Facts is the iprev check of a session's client. Read it with FactsOf.
type Facts struct {
	Checked bool
	Addr    string // the client checked
	Outcome
}

// name is the feature's name: its section, module and facts.
const name = "iprev"

// FactsOf returns the iprev facts of a session: empty when iprev did not
// run (not configured, no client address, the proxy's own session).
func FactsOf(s *milter.Session) *Facts {
	if s != nil {
		if f, ok := s.Fact(name).(*Facts); ok {
			return f
		}
	}
	return &Facts{}
}
