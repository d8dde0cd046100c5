package policy

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// compileTestList decodes src (with a "list:" and optionally a "lists:"
// key), compiles the list as kind and returns its Match on strings (hosts
// are parsed; one that does not parse is the invalid address) and the errors.
func compileTestList(t *testing.T, kind, src string) (func(string) bool, []string) {
	t.Helper()
	var cfg struct {
		List  StrList    `yaml:"list"`
		Lists namedLists `yaml:"lists"`
	}
	root, errs := parseYAML("t.yaml", []byte(src))
	if errs != nil {
		t.Fatalf("parse: %v", errs)
	}
	d := &decoder{file: "t.yaml"}
	d.decode(root, &cfg)
	if d.errs != nil {
		t.Fatalf("decode: %v", d.errs)
	}
	c := &listCompiler{named: cfg.Lists, d: d}
	var match func(string) bool
	switch kind {
	case "hosts":
		l := c.hosts(cfg.List)
		match = func(s string) bool {
			a, _ := netip.ParseAddr(s)
			return l.Match(a)
		}
	case "domains":
		match = c.domains(cfg.List).Match
	case "addresses":
		match = c.addresses(cfg.List).Match
	case "patterns":
		match = c.patterns(cfg.List).Match
	default:
		t.Fatalf("unknown kind %q", kind)
	}
	var msgs []string
	if err := d.errs.Err(); err != nil {
		msgs = strings.Split(err.Error(), "\n")
	}
	return match, msgs
}

type matchCase struct {
	list    string // YAML for the list: key
	match   []string
	noMatch []string
}

func runMatchCases(t *testing.T, kind, named string, tests []matchCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.list, func(t *testing.T) {
			match, errs := compileTestList(t, kind, "list: "+tt.list+"\n"+named)
			if errs != nil {
				t.Fatalf("errors: %q", errs)
			}
			for _, s := range tt.match {
				if !match(s) {
					t.Errorf("%q does not match", s)
				}
			}
			for _, s := range tt.noMatch {
				if match(s) {
					t.Errorf("%q matches", s)
				}
			}
		})
	}
}

type listErrorCase struct {
	name string
	src  string
	want []string
}

func runListErrorCases(t *testing.T, kind string, tests []listErrorCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := compileTestList(t, kind, tt.src)
			if !reflect.DeepEqual(errs, tt.want) {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(errs, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

func TestHostList(t *testing.T) {
	const named = `lists:
  internal: [10.0.0.0/8, 192.168.0.0/16]
  outer: [+internal, 172.16.0.0/12]
  not_internal: ["!+internal"]
`
	runMatchCases(t, "hosts", named, []matchCase{
		{"192.0.2.1", []string{"192.0.2.1", "::ffff:192.0.2.1"}, []string{"192.0.2.2", "2001:db8::1", "invalid"}},
		{"192.0.2.0/24", []string{"192.0.2.0", "192.0.2.255", "::ffff:192.0.2.7"}, []string{"192.0.3.1", "::c000:201"}},
		{"2001:db8::/32", []string{"2001:db8::1", "2001:db8:ffff::"}, []string{"2001:db9::1", "192.0.2.1"}},
		{"'::1'", []string{"::1"}, []string{"127.0.0.1", "::2"}},
		{"0.0.0.0/0", []string{"1.2.3.4", "::ffff:1.2.3.4"}, []string{"::1"}},
		{"::/0", []string{"::1", "2001:db8::1"}, []string{"1.2.3.4", "::ffff:1.2.3.4"}},
		{"fe80::/10", []string{"fe80::1%eth0", "fe80::1"}, []string{"fec0::1"}},
		{"'::ffff:192.0.2.1'", []string{"192.0.2.1", "::ffff:192.0.2.1"}, []string{"192.0.2.2"}},
		{"'::ffff:192.0.2.0/120'", []string{"192.0.2.5", "::ffff:192.0.2.5"}, []string{"192.0.3.5"}},
		{"'*'", []string{"1.2.3.4", "::1", "::ffff:1.2.3.4"}, []string{"invalid"}},
		{"[192.0.2.1, 2001:db8::1]", []string{"192.0.2.1", "2001:db8::1"}, []string{"192.0.2.2"}},
		// The first matching item decides.
		{"['!192.0.2.5', 192.0.2.0/24]", []string{"192.0.2.6"}, []string{"192.0.2.5", "10.0.0.1"}},
		{"[192.0.2.0/24, '!192.0.2.5']", []string{"192.0.2.5", "192.0.2.6", "10.0.0.1"}, nil},
		// A negated last item makes the list match what no item matched,
		// even an invalid address.
		{"['!192.0.2.0/24']", []string{"10.0.0.1", "invalid"}, []string{"192.0.2.1"}},
		{"['! 192.0.2.0/24']", []string{"10.0.0.1"}, []string{"192.0.2.1"}},
		{"['!192.0.2.1', '!192.0.2.2']", []string{"192.0.2.3"}, []string{"192.0.2.1", "192.0.2.2"}},
		{"+internal", []string{"10.1.2.3", "192.168.1.1", "::ffff:10.0.0.1"}, []string{"172.16.0.1", "invalid"}},
		{"'!+internal'", []string{"8.8.8.8", "172.16.0.1"}, []string{"10.1.2.3", "192.168.1.1"}},
		{"+outer", []string{"10.1.2.3", "172.16.0.1"}, []string{"8.8.8.8"}},
		{"['!+outer', '*']", []string{"8.8.8.8"}, []string{"10.1.2.3", "172.16.0.1"}},
		{"+not_internal", []string{"8.8.8.8"}, []string{"10.1.2.3"}},
		{"['!+not_internal', '*']", []string{"10.1.2.3"}, []string{"8.8.8.8"}},
	})
	runListErrorCases(t, "hosts", []listErrorCase{
		{"host bits", "list:\n  - 192.0.2.1\n  - 192.168.1.5/24\n  - 2001:db8::1/32\n", []string{
			"t.yaml:3: 192.168.1.5/24 has host bits set; did you mean 192.168.1.0/24?",
			"t.yaml:4: 2001:db8::1/32 has host bits set; did you mean 2001:db8::/32?"}},
		{"host names", "list: [mail.example.org, localhost]\n", []string{
			`t.yaml:1: host names are not supported in host lists: "mail.example.org"`,
			`t.yaml:1: host names are not supported in host lists: "localhost"`}},
		{"bad addresses", "list:\n  - 300.1.1.1\n  - 10.0.0.0/33\n  - 1.2.3\n  - fe80::1%eth0\n  - '::g'\n", []string{
			`t.yaml:2: invalid IP address "300.1.1.1"`,
			`t.yaml:3: invalid network "10.0.0.0/33": prefix length out of range`,
			`t.yaml:4: invalid IP address "1.2.3"`,
			`t.yaml:5: "fe80::1%eth0": zones are not supported in host lists`,
			`t.yaml:6: invalid IP address "::g"`}},
		{"empty and malformed items", "list:\n  - ''\n  - '!'\n  - '!!1.2.3.4'\n  - '+'\n  - ' '\n", []string{
			`t.yaml:2: empty item`,
			`t.yaml:3: nothing after "!"`,
			`t.yaml:4: "!!1.2.3.4": an item can be negated only once`,
			`t.yaml:5: missing list name after "+"`,
			`t.yaml:6: empty item`}},
		{"unknown list", "list: [+nope, '!+nope2']\n", []string{
			`t.yaml:1: unknown list "nope"`, `t.yaml:1: unknown list "nope2"`}},
		{"errors in a named list are reported once, at its lines", "lists:\n  bad: [300.1.1.1]\nlist: [+bad, '!+bad']\n", []string{
			`t.yaml:2: invalid IP address "300.1.1.1"`}},
	})
}

func TestDomainList(t *testing.T) {
	const named = `lists:
  ours: [example.org, "*.example.net"]
  all_ours: [+ours, example.com]
`
	runMatchCases(t, "domains", named, []matchCase{
		{"example.org", []string{"example.org", "EXAMPLE.ORG", "example.org."}, []string{"www.example.org", "xexample.org", "example.org.uk", ""}},
		{"Example.ORG.", []string{"example.org", "example.org."}, []string{"example.net"}},
		{"'*.example.org'", []string{"www.example.org", "a.b.example.org", "WWW.Example.Org."}, []string{"example.org", "badexample.org", ""}},
		{"'*example.org'", []string{"example.org", "www.example.org", "badexample.org"}, []string{"example.net", "example.org.uk"}},
		{"'*'", []string{"example.org", "x"}, []string{"", "."}},
		{`'^mail[0-9]+\.example\.org$'`, []string{"mail1.example.org", "MAIL22.example.org"}, []string{"mail.example.org", "xmail1.example.org", "mail1.example.org.uk"}},
		{"'^mail'", []string{"mail.example.org", "mailer.net"}, []string{"xmail.example.org"}},
		{"'^MAIL'", []string{"mail.example.org"}, nil},
		{"+ours", []string{"example.org", "www.example.net"}, []string{"example.net", "www.example.org"}},
		{"'!+ours'", []string{"other.com", "example.net", ""}, []string{"example.org", "a.example.net"}},
		{"+all_ours", []string{"example.org", "a.example.net", "example.com"}, []string{"other.com"}},
		{"['!*.example.org', '*example.org']", []string{"example.org", "myexample.org"}, []string{"www.example.org", "other.org"}},
	})
	runListErrorCases(t, "domains", []listErrorCase{
		{"bad items", "list:\n  - user@example.org\n  - mail.*.org\n  - ex ample.org\n  - '^('\n  - '.'\n  - '**'\n", []string{
			`t.yaml:2: "user@example.org" is an address, not a domain`,
			`t.yaml:3: "mail.*.org": "*" is allowed only at the start of a domain`,
			`t.yaml:4: "ex ample.org": a domain cannot contain spaces`,
			"t.yaml:5: invalid regular expression \"^(\": missing closing ): `(?i)^(`",
			`t.yaml:6: "." is not a domain`,
			`t.yaml:7: "**": "*" is allowed only at the start of a domain`}},
		{"unknown list", "list: [+nope]\n", []string{`t.yaml:1: unknown list "nope"`}},
	})
}

func TestAddressList(t *testing.T) {
	const named = `lists:
  ours: [example.org, example.net]
  senders: [john@example.org, "*@example.com"]
  all: [+senders, "<>"]
`
	runMatchCases(t, "addresses", named, []matchCase{
		{"john@example.org", []string{"john@example.org", "JOHN@Example.Org", "john@example.org."}, []string{"jane@example.org", "john@example.net", "john", "", "xjohn@example.org"}},
		{"'*@example.org'", []string{"john@example.org", "x@EXAMPLE.org"}, []string{"john@www.example.org", "john@example.net", "", "example.org"}},
		{"'@example.org'", []string{"john@example.org"}, []string{"john@example.net", ""}},
		{"'john@*'", []string{"john@example.org", "john@x"}, []string{"jane@example.org", "john", "john@", ""}},
		{"'*-bounces@example.org'", []string{"list-bounces@example.org", "-bounces@example.org"}, []string{"list@example.org", "list-bounces@example.net"}},
		{"'a*b*c@example.org'", []string{"abc@example.org", "aXbYc@example.org", "abbc@example.org"}, []string{"acb@example.org", "ab@example.org"}},
		{"'*@*.example.org'", []string{"a@www.example.org"}, []string{"a@example.org"}},
		{"'*@*example.org'", []string{"a@www.example.org", "a@example.org"}, []string{"a@example.net"}},
		{"'*@+ours'", []string{"a@example.org", "b@EXAMPLE.NET"}, []string{"a@example.com", ""}},
		{"'john@+ours'", []string{"john@example.org"}, []string{"jane@example.org"}},
		{`'*@^mail[0-9]\.example\.org$'`, []string{"a@mail1.example.org"}, []string{"a@mail.example.org"}},
		{"example.org", []string{"a@example.org", "a@Example.Org"}, []string{"a@www.example.org", "example.org", ""}},
		{"'*.example.org'", []string{"a@www.example.org"}, []string{"a@example.org"}},
		{"'*'", []string{"a@example.org", "postmaster"}, []string{""}},
		{"'<>'", []string{""}, []string{"a@example.org"}},
		{"'!<>'", []string{"a@example.org"}, []string{""}},
		{`'^[a-z]+@example\.org$'`, []string{"john@example.org", "John@Example.org"}, []string{"john1@example.org", ""}},
		{`'^$'`, nil, []string{""}},
		// Split at the last "@": a quoted local part may contain one.
		{"'*@example.org'", []string{`"a@b"@example.org`}, []string{`a@example.org@example.net`}},
		{"+senders", []string{"john@example.org", "x@example.com"}, []string{"jane@example.org", ""}},
		{"+all", []string{"john@example.org", ""}, []string{"jane@example.org"}},
		// The named list is compiled as addresses: its items are domains.
		{"'!+ours'", []string{"a@other.com", ""}, []string{"a@example.org", "b@example.net"}},
		{"['!john@example.org', '*@example.org']", []string{"jane@example.org"}, []string{"john@example.org", "a@example.net"}},
	})
	runListErrorCases(t, "addresses", []listErrorCase{
		{"bad items", "list:\n  - john@\n  - john@exa mple.org\n  - '*@mail.*.org'\n  - '*@+nope'\n  - '^('\n  - '@'\n  - '*@^('\n", []string{
			`t.yaml:2: "john@": missing domain after "@" (use *@* for any address)`,
			`t.yaml:3: "exa mple.org": a domain cannot contain spaces`,
			`t.yaml:4: "mail.*.org": "*" is allowed only at the start of a domain`,
			`t.yaml:5: unknown list "nope"`,
			"t.yaml:6: invalid regular expression \"^(\": missing closing ): `(?i)^(`",
			`t.yaml:7: "@": missing domain after "@" (use *@* for any address)`,
			"t.yaml:8: invalid regular expression \"^(\": missing closing ): `(?i)^(`"}},
		{"a list used as addresses and as domains is checked as both", "lists:\n  l: [a@b]\nlist: [+l, '*@+l']\n", []string{
			`t.yaml:2: "a@b" is an address, not a domain`}},
	})
}

func TestPatternList(t *testing.T) {
	const named = `lists:
  admins: [root, "admin*"]
`
	runMatchCases(t, "patterns", named, []matchCase{
		{"john", []string{"john", "JOHN"}, []string{"johnny", "xjohn", ""}},
		{"'*'", []string{"john", "x"}, []string{""}},
		{"'*@example.org'", []string{"john@example.org", "@example.org"}, []string{"john@example.net", ""}},
		{"'j*n'", []string{"john", "jn", "JN"}, []string{"jane", "johnx"}},
		{"'*a*'", []string{"a", "bab"}, []string{"b"}},
		{"'^[a-z]+$'", []string{"john", "JOHN"}, []string{"john1", ""}},
		{"+admins", []string{"root", "admin", "Administrator"}, []string{"john", ""}},
		{"'!+admins'", []string{"john", ""}, []string{"root", "admin2"}},
		{"['!root', '*']", []string{"john"}, []string{"root", ""}},
	})
	runListErrorCases(t, "patterns", []listErrorCase{
		{"bad items", "list: ['^(', +nope, '']\n", []string{
			"t.yaml:1: invalid regular expression \"^(\": missing closing ): `(?i)^(`",
			`t.yaml:1: unknown list "nope"`,
			`t.yaml:1: empty item`}},
	})
}

// TestListCycles checks that lists referring to themselves are reported, at
// the item that closes the cycle, for every kind, without looping.
func TestListCycles(t *testing.T) {
	const src = `lists:
  self: ["*", +self]
  a: ["*", +b]
  b: [+c]
  c: ["!+a"]
  d: [+self]
list: [+self, +a, +d, +b]
`
	for _, kind := range []string{"hosts", "domains", "addresses", "patterns"} {
		t.Run(kind, func(t *testing.T) {
			_, errs := compileTestList(t, kind, src)
			want := []string{
				`t.yaml:2: list "self" refers to itself`,
				`t.yaml:5: list "a" refers to itself (a -> b -> c -> a)`,
			}
			if !reflect.DeepEqual(errs, want) {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(errs, "\n  "), strings.Join(want, "\n  "))
			}
		})
	}
	// Starting from b reports the same cycle from b's point of view.
	_, errs := compileTestList(t, "patterns", "lists:\n  a: [+b]\n  b: [+a]\nlist: [+b]\n")
	if want := []string{`t.yaml:2: list "b" refers to itself (b -> a -> b)`}; !reflect.DeepEqual(errs, want) {
		t.Errorf("got %q, want %q", errs, want)
	}
}

// TestListSharedSublists checks that a named list used many times is
// compiled once: 2^40 paths must not mean 2^40 compilations. (Matching
// such a list can still take 2^40 steps, as in Exim; the first path
// matches here.)
func TestListSharedSublists(t *testing.T) {
	var b strings.Builder
	b.WriteString("lists:\n")
	for i := range 40 {
		fmt.Fprintf(&b, "  l%d: [+l%d, +l%d]\n", i, i+1, i+1)
	}
	b.WriteString("  l40: [192.0.2.0/24]\nlist: [+l0]\n")
	start := time.Now()
	match, errs := compileTestList(t, "hosts", b.String())
	if errs != nil {
		t.Fatal(errs)
	}
	if !match("192.0.2.1") {
		t.Error("wrong result")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestNilListsDoNotMatch(t *testing.T) {
	var (
		h *HostList
		d *DomainList
		a *AddressList
		p *PatternList
	)
	if h.Match(netip.MustParseAddr("192.0.2.1")) || d.Match("example.org") || a.Match("a@example.org") || p.Match("john") {
		t.Error("a nil list matched")
	}
	c := &listCompiler{d: &decoder{}}
	if c.hosts(nil).Match(netip.MustParseAddr("192.0.2.1")) || c.domains(nil).Match("x") || c.addresses(nil).Match("") || c.patterns(nil).Match("x") {
		t.Error("an empty list matched")
	}
}

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"", "", true}, {"", "a", false}, {"*", "", true}, {"*", "abc", true},
		{"a*", "a", true}, {"a*", "ab", true}, {"a*", "ba", false},
		{"*a", "ba", true}, {"*a", "ab", false}, {"a*b", "ab", true}, {"a*b", "axxb", true},
		{"a*b", "axxbx", false}, {"a*b*c", "abc", true}, {"a*b*c", "acb", false},
		{"**", "x", true}, {"*x*x*x*x*", "xxxx", true}, {"*x*x*x*x*y", strings.Repeat("x", 1000), false},
	}
	for _, tt := range tests {
		if got := globMatch(tt.pattern, tt.s); got != tt.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

// BenchmarkHostList shows matching is cheap enough to run on every
// connection even with long lists.
func BenchmarkHostList(b *testing.B) {
	items := make(StrList, 1000)
	for i := range items {
		items[i] = Str{Value: fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)}
	}
	c := &listCompiler{d: &decoder{}}
	l := c.hosts(items)
	ip := netip.MustParseAddr("192.0.2.1")
	for b.Loop() {
		l.Match(ip)
	}
}
