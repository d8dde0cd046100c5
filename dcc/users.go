package dcc

import (
	"fmt"
	"strings"

	"github.com/tollgate/tollgate/milter"
)

// LocalPart is the local_user mode that sends a recipient's local part as
// its dccifd user.
const LocalPart = "local_part"

// LocalUsers chooses the local user sent after CR on a recipient line
// (dccif.h: "optional local user name for per-user logging"; without it
// dccifd logs "addr= dir=" and applies no per-user whitelist).
type LocalUsers struct {
	Mode    string            // LocalPart or "none"
	Map     map[string]string // lower-cased address -> user; wins over Mode
	Domains func(string) bool // Mode applies to these recipient domains; nil: all
}

// User returns the local user for addr, the address the message would go
// to, or "" to send none.
func (u *LocalUsers) User(addr string) string {
	if user, ok := u.Map[strings.ToLower(addr)]; ok {
		return user
	}
	if u.Mode != LocalPart || u.Domains != nil && !u.Domains(milter.Domain(addr)) {
		return ""
	}
	user := milter.LocalPart(addr)
	if ValidLocalUser(user) != nil {
		return ""
	}
	return user
}

// ValidLocalUser refuses what cannot go on a recipient line (line breaks,
// NUL, a second CR) and what dccifd would turn into a path outside its
// per-user directories ("/", a leading dot).
func ValidLocalUser(user string) error {
	switch {
	case user == "":
		return fmt.Errorf("dcc: empty local user")
	case strings.ContainsAny(user, "\r\n\x00/\\"), strings.HasPrefix(user, "."):
		return fmt.Errorf("dcc: local user %q cannot be sent to dccifd", user)
	}
	for _, c := range user {
		if c < ' ' || c == 0x7f {
			return fmt.Errorf("dcc: control character in local user %q", user)
		}
	}
	return nil
}
