package milter

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"
)

// SocketOptions set who may connect to a unix socket.
type SocketOptions struct {
	Mode  os.FileMode // default 0660
	User  string      // owner name or number; empty keeps the daemon's
	Group string      // group name or number, e.g. postfix; empty keeps the daemon's
}

// Address is a parsed listen address.
type Address struct {
	Network string // unix or tcp
	Addr    string // path or host:port
}

func (a Address) String() string {
	if a.Network == "unix" {
		return "unix:" + a.Addr
	}
	return "inet:" + a.Addr
}

// ParseAddress reads the socket spellings of Postfix and Sendmail:
// unix:/path, local:/path, /path, inet:host:port, inet:port@host, inet6:port@host,
// inet:[::1]:port.
func ParseAddress(spec string) (Address, error) {
	kind, rest, found := strings.Cut(spec, ":")
	if !found || strings.HasPrefix(spec, "/") {
		if strings.HasPrefix(spec, "/") {
			return Address{Network: "unix", Addr: spec}, nil
		}
		return Address{}, fmt.Errorf("listen address %q: want unix:/path or inet:host:port", spec)
	}
	switch strings.ToLower(kind) {
	case "unix", "local":
		if !strings.HasPrefix(rest, "/") {
			return Address{}, fmt.Errorf("listen address %q: the socket path must be absolute", spec)
		}
		return Address{Network: "unix", Addr: rest}, nil
	case "inet", "inet6", "tcp":
		hostport := rest
		if port, host, ok := strings.Cut(rest, "@"); ok {
			hostport = net.JoinHostPort(strings.Trim(host, "[]"), port)
		}
		host, port, err := net.SplitHostPort(hostport)
		if err != nil {
			return Address{}, fmt.Errorf("listen address %q: %v", spec, err)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			return Address{}, fmt.Errorf("listen address %q: bad port %q", spec, port)
		}
		return Address{Network: "tcp", Addr: net.JoinHostPort(host, port)}, nil
	}
	return Address{}, fmt.Errorf("listen address %q: unknown kind %q (use unix: or inet:)", spec, kind)
}

// Listen opens the milter socket. A unix socket left behind by a dead daemon is
// replaced; one that still answers is an error, so two daemons never share it.
func Listen(a Address, opts SocketOptions) (net.Listener, error) {
	if a.Network != "unix" {
		return net.Listen("tcp", a.Addr)
	}
	if fi, err := os.Lstat(a.Addr); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("listen %s: the path exists and is not a socket", a.Addr)
		}
		if c, err := net.DialTimeout("unix", a.Addr, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen %s: another process is serving this socket", a.Addr)
		}
		if err := os.Remove(a.Addr); err != nil {
			return nil, fmt.Errorf("listen %s: removing the stale socket: %w", a.Addr, err)
		}
	}
	ln, err := net.Listen("unix", a.Addr)
	if err != nil {
		return nil, err
	}
	if err := applySocketOptions(a.Addr, opts); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

func applySocketOptions(path string, opts SocketOptions) error {
	mode := opts.Mode
	if mode == 0 {
		mode = 0o660
	}
	if err := os.Chmod(path, mode); err != nil {
		return fmt.Errorf("socket %s: %w", path, err)
	}
	uid, gid := -1, -1
	if opts.User != "" {
		id, err := lookupID(opts.User, func(n string) (string, error) {
			u, err := user.Lookup(n)
			if err != nil {
				return "", err
			}
			return u.Uid, nil
		})
		if err != nil {
			return fmt.Errorf("socket owner %q: %w", opts.User, err)
		}
		uid = id
	}
	if opts.Group != "" {
		id, err := lookupID(opts.Group, func(n string) (string, error) {
			g, err := user.LookupGroup(n)
			if err != nil {
				return "", err
			}
			return g.Gid, nil
		})
		if err != nil {
			return fmt.Errorf("socket group %q: %w", opts.Group, err)
		}
		gid = id
	}
	if uid >= 0 || gid >= 0 {
		if err := os.Lchown(path, uid, gid); err != nil {
			return fmt.Errorf("socket %s: %w", path, err)
		}
	}
	return nil
}

func lookupID(name string, lookup func(string) (string, error)) (int, error) {
	if n, err := strconv.Atoi(name); err == nil {
		return n, nil
	}
	s, err := lookup(name)
	if err != nil {
		return -1, err
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1, errors.New("not a numeric id: " + s)
	}
	return n, nil
}
