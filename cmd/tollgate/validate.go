package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"

	"go.yaml.in/yaml/v3"

	"github.com/tollgate/tollgate/milter"
	"github.com/tollgate/tollgate/policy"
)

// runChecks collects the problems validateForRun finds, at the lines of
// the keys they concern.
type runChecks struct {
	p     *policy.Policy
	lines map[string]int // dotted key -> line in the file
	errs  policy.ErrorList
}

// unitRuntimeDir is the systemd unit's RuntimeDirectory=.
const unitRuntimeDir = "/run/tollgate"

// validateForRun checks what "run" needs from the host before it serves,
// beyond what loading the configuration checks: the socket's owner and group
// exist and this user may hand the socket to them, the socket's directory is
// usable, listen addresses belong to this host, and the SRS database's
// directory (run opens the database) exists and is writable. "check" and
// "run" both call it, so that a configuration "check" passes does not fail
// at start (the unit runs "check" first). listenFlag and metricsFlag are
// run's overrides ("" for none); what they replace is not checked.
func validateForRun(p *policy.Policy, listenFlag, metricsFlag string) policy.ErrorList {
	c := &runChecks{p: p, lines: keyLines(p.File)}
	if listenFlag == "" {
		c.listen(p.Listen)
	}
	if metricsFlag == "" && p.MetricsListen != "off" {
		c.tcpAddress("metrics_listen", p.MetricsListen)
	}
	if bolt := c.value("srs.database.bolt"); bolt != "" {
		c.writableDir("srs.database.bolt", filepath.Dir(bolt))
	}
	return c.errs
}

func (c *runChecks) errorf(key, format string, args ...any) {
	c.errs = append(c.errs, policy.Error{File: c.p.File, Line: c.lines[key], Msg: key + ": " + fmt.Sprintf(format, args...)})
}

func (c *runChecks) listen(a milter.Address) {
	if a.Network == "tcp" {
		c.tcpAddress("listen", a.Addr)
		return
	}
	dir := filepath.Dir(a.Addr)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist) && dir == unitRuntimeDir:
		// systemd makes it (RuntimeDirectory=) just before the unit's
		// "check"; by hand, while the service is stopped, it is missing.
	case errors.Is(err, os.ErrNotExist):
		c.errorf("listen", "the socket's directory %s does not exist", dir)
	case err != nil:
		c.errorf("listen", "the socket's directory: %v", err)
	case !fi.IsDir():
		c.errorf("listen", "%s is not a directory", dir)
	case syscall.Access(dir, 0o3) != nil: // W_OK|X_OK
		c.errorf("listen", "%s: this user (%s) cannot create the socket there", dir, whoami())
	}
	if fi, err := os.Lstat(a.Addr); err == nil && fi.Mode()&os.ModeSocket == 0 {
		c.errorf("listen", "%s exists and is not a socket", a.Addr)
	}
	if u := c.p.Socket.User; u != "" {
		uid, err := lookupAccount(u, false)
		switch {
		case err != nil:
			c.errorf("socket.user", "%v", err)
		case os.Geteuid() != 0 && uid != os.Geteuid():
			c.errorf("socket.user", "only root can give the socket to %s; this user is %s", u, whoami())
		}
	}
	if g := c.p.Socket.Group; g != "" {
		gid, err := lookupAccount(g, true)
		if err != nil {
			c.errorf("socket.group", "%v", err)
		} else if os.Geteuid() != 0 && !memberOf(gid) {
			c.errorf("socket.group", "this user (%s) is not in the group %s, so it cannot give the socket to it", whoami(), g)
		}
	}
}

// tcpAddress checks that host:port is one this host can listen on: an
// address of one of its interfaces, or the wildcard.
func (c *runChecks) tcpAddress(key, hostport string) {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		c.errorf(key, "%v", err)
		return
	}
	if host == "" {
		return
	}
	ips := []net.IP{net.ParseIP(host)}
	if ips[0] == nil {
		ips, err = net.LookupIP(host)
		if err != nil {
			c.errorf(key, "cannot resolve %s: %v", host, err)
			return
		}
	}
	for _, ip := range ips {
		if ip.IsUnspecified() || isLocal(ip) {
			return
		}
	}
	c.errorf(key, "%s is not an address of this host: nothing can listen on it", host)
}

// isLocal reports whether ip is an address of this host, by binding a
// port the system chooses: listing the interfaces would need a netlink
// socket, which the unit's RestrictAddressFamilies= refuses (check runs
// in the unit's sandbox, and a port the daemon holds must not matter).
func isLocal(ip net.IP) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

func (c *runChecks) writableDir(key, dir string) {
	if dir == "" {
		return
	}
	fi, err := os.Stat(dir)
	switch {
	case err != nil:
		c.errorf(key, "%v", err)
	case !fi.IsDir():
		c.errorf(key, "%s is not a directory", dir)
	case syscall.Access(dir, 0o3) != nil:
		c.errorf(key, "%s: this user (%s) cannot write there", dir, whoami())
	}
}

// value is a scalar of the file by its dotted key, "" if absent.
func (c *runChecks) value(key string) string {
	return scalarValues(c.p.File)[key]
}

// lookupAccount resolves a user or group name or number as milter.Listen does.
func lookupAccount(name string, group bool) (int, error) {
	if n, err := strconv.Atoi(name); err == nil {
		return n, nil
	}
	var id string
	if group {
		g, err := user.LookupGroup(name)
		if err != nil {
			return -1, err
		}
		id = g.Gid
	} else {
		u, err := user.Lookup(name)
		if err != nil {
			return -1, err
		}
		id = u.Uid
	}
	return strconv.Atoi(id)
}

func memberOf(gid int) bool {
	if os.Getegid() == gid {
		return true
	}
	groups, err := os.Getgroups()
	return err == nil && slices.Contains(groups, gid)
}

func whoami() string {
	if u, err := user.LookupId(strconv.Itoa(os.Geteuid())); err == nil {
		return u.Username
	}
	return "uid " + strconv.Itoa(os.Geteuid())
}

// keyLines maps the dotted keys of a YAML file's mappings to their lines,
// for messages about values the policy keeps without positions.
func keyLines(file string) map[string]int {
	lines := map[string]int{}
	walkYAML(file, func(key string, k, _ *yaml.Node) { lines[key] = k.Line })
	return lines
}

func scalarValues(file string) map[string]string {
	values := map[string]string{}
	walkYAML(file, func(key string, _, v *yaml.Node) {
		if v.Kind == yaml.ScalarNode {
			values[key] = v.Value
		}
	})
	return values
}

func walkYAML(file string, visit func(key string, k, v *yaml.Node)) {
	data, err := os.ReadFile(file)
	if err != nil {
		return
	}
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return
	}
	var walk func(prefix string, n *yaml.Node)
	walk = func(prefix string, n *yaml.Node) {
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			if prefix != "" {
				key = prefix + "." + key
			}
			visit(key, n.Content[i], n.Content[i+1])
			walk(key, n.Content[i+1])
		}
	}
	walk("", doc.Content[0])
}
