package dcc

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseAddress(t *testing.T) {
	for _, c := range []struct{ in, network, addr string }{
		{"/var/dcc/dccifd", "unix", "/var/dcc/dccifd"},
		{"./dccifd", "unix", "./dccifd"},
		{"unix:/var/dcc/dccifd", "unix", "/var/dcc/dccifd"},
		{"UNIX:/run/dccifd", "unix", "/run/dccifd"},
		{"127.0.0.1,10045", "tcp", "127.0.0.1:10045"},
		{"dcc.example.org,10045", "tcp", "dcc.example.org:10045"},
		{"::1,10045", "tcp", "[::1]:10045"},
		{"[2001:db8::1],10045", "tcp", "[2001:db8::1]:10045"},
		{" 127.0.0.1, 10045 ", "tcp", "127.0.0.1:10045"},
		{"127.0.0.1 10045", "tcp", "127.0.0.1:10045"},
		{"127.0.0.1:10045", "tcp", "127.0.0.1:10045"},
		{"[::1]:10045", "tcp", "[::1]:10045"},
		{"localhost:10045", "tcp", "localhost:10045"},
		{"inet:127.0.0.1:10045", "tcp", "127.0.0.1:10045"},
		{"inet6:[::1]:10045", "tcp", "[::1]:10045"},
		{"tcp:dcc.example.org:10045", "tcp", "dcc.example.org:10045"},
	} {
		n, a, err := ParseAddress(c.in)
		if c.network == "" {
			if err == nil {
				t.Errorf("ParseAddress(%q) = %s %s, want an error", c.in, n, a)
			}
			continue
		}
		if err != nil || n != c.network || a != c.addr {
			t.Errorf("ParseAddress(%q) = %q %q %v, want %q %q", c.in, n, a, err, c.network, c.addr)
		}
	}
	for _, in := range []string{
		"", "  ", "dccifd", "unix:", "127.0.0.1,", ",10045", "127.0.0.1,0", "127.0.0.1,65536",
		"127.0.0.1,port", "::1:10045", "inet:127.0.0.1", "a b c", "1:2:3,10045", "host/x,10045",
		"/var/dcc/\ndccifd", "127.0.0.1:-1",
	} {
		if n, a, err := ParseAddress(in); !errors.Is(err, ErrConfig) {
			t.Errorf("ParseAddress(%q) = %q %q %v, want ErrConfig", in, n, a, err)
		}
	}
}

func TestLoadHeloMap(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	os.WriteFile(good, []byte(`# HELO name -> the address DCC should see
mail.cluster.example      192.0.2.10
Out.Bulk.Example.:        2001:db8::25   # lsearch style
	mapped.example ::ffff:198.51.100.1

hash#in.name.example 192.0.2.11
`), 0o600)
	m, err := LoadHeloMap(good)
	if err != nil {
		t.Fatal(err)
	}
	for helo, want := range map[string]string{
		"mail.cluster.example":  "192.0.2.10",
		"MAIL.CLUSTER.EXAMPLE.": "192.0.2.10",
		"out.bulk.example":      "2001:db8::25",
		"mapped.example":        "198.51.100.1",
		"hash#in.name.example":  "192.0.2.11",
	} {
		if ip, ok := LookupHelo(m, helo); !ok || ip.String() != want {
			t.Errorf("LookupHelo(%q) = %v %v, want %s", helo, ip, ok, want)
		}
	}
	if _, ok := LookupHelo(m, "other.example"); ok {
		t.Error("found an unlisted name")
	}
	if _, ok := LookupHelo(nil, "x"); ok {
		t.Error("found a name in a nil map")
	}

	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("ok.example 192.0.2.1\nno-ip.example\nbad-ip.example 192.0.2.300\nok.example 192.0.2.2\n[x] 192.0.2.3\nzone.example fe80::1%eth0\n"), 0o600)
	_, err = LoadHeloMap(bad)
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("err %v", err)
	}
	for _, want := range []string{bad + ":2:", bad + ":3:", bad + ":4: duplicate", "first at line 1", bad + ":5:", bad + ":6:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := LoadHeloMap(filepath.Join(dir, "missing")); !errors.Is(err, ErrConfig) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}
