package dcc

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// LoadHeloMap reads a client IP override map, as in the seed's "multiple-IP
// sending clusters" example: the hosts of a cluster that sends from many
// addresses under one HELO name are all reported to dccifd as one address,
// so greylisting sees one client instead of a new one at every retry.
//
// One entry per line: a HELO name and an IP address, separated by white
// space or by a colon and white space (Exim's lsearch form):
//
//	# comment
//	mail.cluster.example      192.0.2.10
//	out.bulk.example:         2001:db8::25
//
// Blank lines and lines starting with # are skipped; a # after white space
// starts a comment. Names are matched case-insensitively and without a
// trailing dot (see LookupHelo). Every error is reported, as "file:line:
// message", and matches ErrConfig.
func LoadHeloMap(path string) (map[string]netip.Addr, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, newErr(ErrConfig, "helo map", "", err)
	}
	defer f.Close()
	m := make(map[string]netip.Addr)
	first := make(map[string]int)
	var errs []error
	bad := func(n int, format string, args ...any) {
		errs = append(errs, newErr(ErrConfig, fmt.Sprintf("%s:%d", path, n), fmt.Sprintf(format, args...), nil))
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 64<<10)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if i := commentStart(line); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 {
			bad(n, "want \"helo.name ip\", got %d fields", len(fields))
			continue
		}
		name := normHelo(strings.TrimSuffix(fields[0], ":"))
		if name == "" || strings.ContainsAny(name, ":[]/\\\"") {
			bad(n, "bad HELO name %q", fields[0])
			continue
		}
		ip, err := netip.ParseAddr(fields[1])
		if err != nil || ip.Zone() != "" {
			bad(n, "bad IP address %q", fields[1])
			continue
		}
		if l, dup := first[name]; dup {
			bad(n, "duplicate HELO name %q (first at line %d)", name, l)
			continue
		}
		first[name] = n
		m[name] = ip.Unmap()
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, newErr(ErrConfig, fmt.Sprintf("%s:%d", path, n+1), "", err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return m, nil
}

// commentStart is the index of a # that starts a comment (at the start of
// the line or after white space), or -1.
func commentStart(line string) int {
	for i := 0; i < len(line); i++ {
		if line[i] == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t') {
			return i
		}
	}
	return -1
}

func normHelo(s string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(s), "."))
}

// LookupHelo finds the override for a HELO name in a map from LoadHeloMap
// (case-insensitive, trailing dot ignored).
func LookupHelo(m map[string]netip.Addr, helo string) (netip.Addr, bool) {
	if len(m) == 0 {
		return netip.Addr{}, false
	}
	ip, ok := m[normHelo(helo)]
	return ip, ok
}
