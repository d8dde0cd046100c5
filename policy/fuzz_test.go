package policy

import (
	"net/netip"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type fuzzRule struct {
	Pos     Pos      `yaml:"-"`
	Hosts   StrList  `yaml:"hosts"`
	Message Str      `yaml:"message"`
	Size    ByteSize `yaml:"size"`
	Pair    *ydPair  `yaml:"pair"`
}

type fuzzConfig struct {
	Pos     Pos                 `yaml:"-"`
	Name    string              `yaml:"name"`
	Enabled bool                `yaml:"enabled"`
	Port    uint16              `yaml:"port"`
	Level   int8                `yaml:"level"`
	Ratio   float64             `yaml:"ratio"`
	Timeout Duration            `yaml:"timeout"`
	Max     *ByteSize           `yaml:"max"`
	Lists   namedLists          `yaml:"lists"`
	Tags    []string            `yaml:"tags"`
	Inner   ydInner             `yaml:"inner"`
	Rules   []fuzzRule          `yaml:"rules"`
	ByName  map[string]fuzzRule `yaml:"by_name"`
	Nested  [][]StrList         `yaml:"nested"`
	Tree    ydTree              `yaml:"tree"`
	Raw     *yaml.Node          `yaml:"raw"`
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"name: x\nenabled: true\nport: 25\nlevel: -3\nratio: 0.5\ntimeout: 1d2h\nmax: 10M\n",
		"lists:\n  ours: [example.org, '*.example.net']\n  one: 192.0.2.1\ntags: a\n",
		"rules:\n  - hosts: [10.0.0.0/8]\n    message: hi\n    size: 1K\n    pair: a-b\n  - {}\nby_name: {x: {hosts: '*'}}\n",
		"inner: &a {name: n, count: 1}\nrules: [*a]\nnested: [[[a], b]]\ntree: &t [[], *t]\n",
		"a: &a [x, x]\nb: &b [*a, *a]\nnested: [*b, *b]\n<<: {}\n",
		"raw: {any: [thing]}\nname: [bad]\nport: 70000\nfoo: 1\nname: dup\n",
		"- not a mapping\n",
		"a: 1\n---\nb: 2\n",
		"key: \"unterminated\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		root, errs := parseYAML("f.yaml", data)
		if root == nil {
			if len(errs) == 0 {
				t.Fatal("no root and no error")
			}
			_ = errs.Error()
			return
		}
		if root.Kind != yaml.MappingNode || errs != nil {
			t.Fatalf("root kind %v with errors %v", root.Kind, errs)
		}
		d := &decoder{file: "f.yaml"}
		var cfg fuzzConfig
		d.decode(root, &cfg)
		for _, e := range d.errs {
			if e.File != "f.yaml" || e.Line < 0 || e.Msg == "" {
				t.Fatalf("bad error %#v", e)
			}
			if strings.Contains(e.Msg, "internal error") {
				t.Fatalf("%v", e)
			}
		}
		_ = d.errs.Err()
		if cfg.Timeout < 0 || (cfg.Max != nil && *cfg.Max < 0) {
			t.Fatalf("negative duration or size: %v %v", cfg.Timeout, cfg.Max)
		}
	})
}

// FuzzListMatch compiles items (separated by "\n") as every kind of list,
// with named lists a and b built the same way, and matches input.
func FuzzListMatch(f *testing.F) {
	seeds := []struct{ items, a, b, input string }{
		{"192.0.2.0/24\n!192.0.2.5", "10.0.0.0/8", "+a", "192.0.2.1"},
		{"!+a\n*", "+b", "+a", "::ffff:10.0.0.1"},
		{"*@+a\n<>", "example.org\n*.example.net", "^mail[0-9]+", "john@example.org"},
		{"*-bounces@*.example.org\n!^x", "+b", "!+b", "list-bounces@a.example.org"},
		{"j*n\n+a", "admin*\n!root", "", "JOHN"},
		{"192.168.1.5/24\nmail.example.org\n!!x\n!", "+nope", "+", ""},
		{"*.\n^(\n**", "@", "x@", "fe80::1%eth0"},
	}
	for _, s := range seeds {
		f.Add(s.items, s.a, s.b, s.input)
	}
	f.Fuzz(func(t *testing.T, items, a, b, input string) {
		split := func(s string) StrList {
			var l StrList
			for i, v := range strings.Split(s, "\n") {
				l = append(l, Str{Value: v, Line: i + 1})
			}
			return l
		}
		named := namedLists{"a": split(a), "b": split(b)}
		list := split(items)
		ip, _ := netip.ParseAddr(input)
		var raw netip.Addr
		if len(input) >= 16 {
			raw = netip.AddrFrom16([16]byte([]byte(input[:16])))
		} else if len(input) >= 4 {
			raw = netip.AddrFrom4([4]byte([]byte(input[:4])))
		}

		d := &decoder{file: "f"}
		c := &listCompiler{named: named, d: d}
		h := c.hosts(list)
		h.Match(ip)
		h.Match(raw)
		h.Match(netip.Addr{})
		c.domains(list).Match(input)
		c.addresses(list).Match(input)
		p := c.patterns(list)
		if p.Match("") != strings.HasPrefix(strings.TrimSpace(list[len(list)-1].Value), "!") {
			t.Error("the empty string matched an item")
		}
		p.Match(input)
		for _, e := range d.errs {
			if e.Line < 1 || e.Msg == "" {
				t.Fatalf("bad error %#v", e)
			}
		}
	})
}
