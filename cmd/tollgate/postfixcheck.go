package main

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/tollgate/tollgate/milter"
	"github.com/tollgate/tollgate/policy"
)

// postconfProgram is Postfix's configuration tool; on a host without
// Postfix check says nothing about it.
const postconfProgram = "/usr/sbin/postconf"

// postfixWarnings compares the socket tollgate listens on with where this
// host's Postfix looks for milters (smtpd_milters, seen through smtpd's
// chroot), so that a configuration that Postfix cannot reach is not
// silently OK. Postfix's own configuration is what postconf reads
// (MAIL_CONFIG selects another instance). Nothing is said without Postfix.
func postfixWarnings(p *policy.Policy) policy.ErrorList {
	if _, err := exec.LookPath(postconfProgram); err != nil {
		return nil
	}
	out, err := exec.Command(postconfProgram, "-hx", "smtpd_milters", "queue_directory").Output()
	if err != nil {
		return nil
	}
	values := strings.SplitN(strings.TrimSuffix(string(out), "\n"), "\n", 2)
	if len(values) != 2 {
		return nil
	}
	milters, queueDir := values[0], values[1]
	chrooted := false
	if svc, err := exec.Command(postconfProgram, "-M", "smtp/inet").Output(); err == nil {
		f := strings.Fields(string(svc))
		chrooted = len(f) >= 5 && f[4] == "y"
	}
	line := keyLines(p.File)["listen"]
	warn := func(format string, args ...any) policy.ErrorList {
		return policy.ErrorList{{File: p.File, Line: line, Msg: "listen: " + fmt.Sprintf(format, args...)}}
	}
	name, ok := postfixName(p.Listen, chrooted, queueDir)
	if !ok {
		return warn("this host's Postfix runs smtpd chrooted in %s and cannot reach %s: listen on a socket inside (unix:%s/tollgate/tollgate.sock, named smtpd_milters = unix:/tollgate/tollgate.sock) or on inet:127.0.0.1:8891",
			queueDir, p.Listen.Addr, queueDir)
	}
	if strings.TrimSpace(milters) == "" {
		return warn("this host's Postfix has no smtpd_milters, so mail does not pass through tollgate; add to main.cf: smtpd_milters = %s", name)
	}
	for _, entry := range strings.FieldsFunc(milters, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		if reaches(entry, p.Listen, chrooted, queueDir) {
			return nil
		}
	}
	where := ""
	if chrooted {
		where = fmt.Sprintf(" (smtpd runs chrooted in %s)", queueDir)
	}
	return warn("this host's Postfix looks for milters at %s%s, not at %s: it would name this socket smtpd_milters = %s",
		milters, where, p.Listen, name)
}

// reaches reports whether a smtpd_milters entry names the address a.
func reaches(entry string, a milter.Address, chrooted bool, queueDir string) bool {
	kind, rest, ok := strings.Cut(entry, ":")
	if !ok {
		return false
	}
	switch kind {
	case "unix", "local":
		path := rest
		if chrooted {
			path = filepath.Join(queueDir, rest)
		}
		return a.Network == "unix" && filepath.Clean(path) == filepath.Clean(a.Addr)
	case "inet", "inet6":
		_, port, err := net.SplitHostPort(rest)
		_, ourPort, err2 := net.SplitHostPort(a.Addr)
		return a.Network == "tcp" && err == nil && err2 == nil && port == ourPort
	}
	return false
}

// postfixName is how this host's Postfix names the address in
// smtpd_milters; false when its chrooted smtpd cannot reach it.
func postfixName(a milter.Address, chrooted bool, queueDir string) (string, bool) {
	if a.Network != "unix" {
		return "inet:" + a.Addr, true
	}
	if !chrooted {
		return "unix:" + a.Addr, true
	}
	rel, err := filepath.Rel(queueDir, a.Addr)
	if err != nil || strings.HasPrefix(rel, "..") {
		return "", false
	}
	return "unix:/" + rel, true
}
