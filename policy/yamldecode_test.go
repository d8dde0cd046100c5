package policy

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tollgate/tollgate/feature"
)

type ydInner struct {
	Pos   Pos    `yaml:"-"`
	Name  string `yaml:"name"`
	Count int    `yaml:"count"`
}

type ydEmbedded struct {
	Extra string `yaml:"extra"`
}

// ydPair decodes itself from "a-b".
type ydPair struct{ A, B string }

func (p *ydPair) decodeYAML(d *decoder, n *yaml.Node) {
	var s Str
	d.decode(n, &s)
	a, b, ok := strings.Cut(s.Value, "-")
	if !ok {
		d.errorf(n.Line, "want a-b")
	}
	*p = ydPair{a, b}
}

type ydTree []ydTree

type ydAll struct {
	Pos      Pos `yaml:"-"`
	Str      string
	Bool     bool
	Int      int
	Int8     int8
	Uint8    uint8
	Uint16   uint16
	Uint64   uint64
	Float    float64
	Float32  float32
	Dur      Duration `yaml:"dur"`
	Size     ByteSize `yaml:"size"`
	S        Str      `yaml:"s"`
	List     StrList  `yaml:"list"`
	Strings  []string `yaml:"strings"`
	Ints     []int    `yaml:"ints"`
	Inner    ydInner  `yaml:"inner"`
	InnerPtr *ydInner `yaml:"inner_ptr"`
	IntPtr   *int     `yaml:"int_ptr"`
	Items    []ydInner
	Map      map[string]int
	Named    namedLists `yaml:"named"`
	Pair     ydPair     `yaml:"pair"`
	PairPtr  *ydPair    `yaml:"pair_ptr"`
	Tree     ydTree     `yaml:"tree"`
	Skipped  string     `yaml:"-"`
	hidden   string
	ydEmbedded
}

// decodeYD parses src and decodes it into out, returning every error as
// its "file:line: msg" text.
func decodeYD(t *testing.T, src string, out any) []string {
	t.Helper()
	root, errs := parseYAML("t.yaml", []byte(src))
	if errs == nil {
		d := &decoder{file: "t.yaml"}
		d.decode(root, out)
		errs = d.errs
	}
	var msgs []string
	if err := errs.Err(); err != nil {
		msgs = strings.Split(err.Error(), "\n")
	}
	return msgs
}

func intPtr(i int) *int { return &i }

func TestDecodeValues(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want ydAll
	}{
		{"scalars", `
str: hello
bool: true
int: -42
int8: -128
uint8: 255
uint16: 0x1F
uint64: 18446744073709551615
float: 1.5
float32: 2
`, ydAll{Pos: Pos{Line: 2}, Str: "hello", Bool: true, Int: -42, Int8: -128, Uint8: 255, Uint16: 31, Uint64: 1<<64 - 1, Float: 1.5, Float32: 2}},
		{"numbers as strings, strings from numbers", "str: 123\nint: \"7\"\nbool: false\n",
			ydAll{Pos: Pos{Line: 1}, Str: "123", Int: 7}},
		{"signs", "int: +5\nint8: -0\nuint8: -0\nfloat: -1e3\n", ydAll{Pos: Pos{Line: 1}, Int: 5, Float: -1000}},
		{"leading zero is decimal", "int: 025\nuint8: 0o17\nuint16: 0b101\n",
			ydAll{Pos: Pos{Line: 1}, Int: 25, Uint8: 15, Uint16: 5}},
		{"Str keeps its line", "\n\ns: ' x '\n", ydAll{Pos: Pos{Line: 3}, S: Str{Value: " x ", Line: 3}}},
		{"StrList from a scalar", "list: 192.0.2.1\n", ydAll{Pos: Pos{Line: 1}, List: StrList{{Value: "192.0.2.1", Line: 1}}}},
		{"StrList from a sequence", "list:\n  - a\n  - b\n", ydAll{Pos: Pos{Line: 1}, List: StrList{{Value: "a", Line: 2}, {Value: "b", Line: 3}}}},
		{"StrList from a flow sequence", "list: [a, 'b']\n", ydAll{Pos: Pos{Line: 1}, List: StrList{{Value: "a", Line: 1}, {Value: "b", Line: 1}}}},
		{"[]string from a scalar", "strings: one\n", ydAll{Pos: Pos{Line: 1}, Strings: []string{"one"}}},
		{"[]int", "ints: [1, 2, 3]\n", ydAll{Pos: Pos{Line: 1}, Ints: []int{1, 2, 3}}},
		{"empty sequence", "ints: []\n", ydAll{Pos: Pos{Line: 1}, Ints: []int{}}},
		{"nested struct and Pos", "str: x\ninner:\n  name: n\n  count: 3\n",
			ydAll{Pos: Pos{Line: 1}, Str: "x", Inner: ydInner{Pos{Line: 3}, "n", 3}}},
		{"flow mapping Pos", "inner: {name: n}\n", ydAll{Pos: Pos{Line: 1}, Inner: ydInner{Pos: Pos{Line: 1}, Name: "n"}}},
		{"pointers", "inner_ptr:\n  count: 1\nint_ptr: 5\n",
			ydAll{Pos: Pos{Line: 1}, InnerPtr: &ydInner{Pos: Pos{Line: 2}, Count: 1}, IntPtr: intPtr(5)}},
		{"null leaves pointers nil and structs alone", "inner_ptr: null\nint_ptr: ~\ninner:\nitems:\n",
			ydAll{Pos: Pos{Line: 1}, Inner: ydInner{Pos: Pos{Line: 3}}}},
		{"sequence of structs", "items:\n  - name: a\n  - {name: b, count: 2}\n",
			ydAll{Pos: Pos{Line: 1}, Items: []ydInner{{Pos{Line: 2}, "a", 0}, {Pos{Line: 3}, "b", 2}}}},
		{"map", "map: {a: 1, b: 2}\n", ydAll{Pos: Pos{Line: 1}, Map: map[string]int{"a": 1, "b": 2}}},
		{"named lists", "named:\n  ours: [example.org, example.net]\n  one: x\n",
			ydAll{Pos: Pos{Line: 1}, Named: namedLists{"ours": {{Value: "example.org", Line: 2}, {Value: "example.net", Line: 2}}, "one": {{Value: "x", Line: 3}}}}},
		{"nodeDecoder", "pair: a-b\npair_ptr: c-d\n", ydAll{Pos: Pos{Line: 1}, Pair: ydPair{"a", "b"}, PairPtr: &ydPair{"c", "d"}}},
		{"embedded struct", "extra: e\n", ydAll{Pos: Pos{Line: 1}, ydEmbedded: ydEmbedded{"e"}}},
		{"duration and size", "dur: 1d12h\nsize: 10M\n", ydAll{Pos: Pos{Line: 1}, Dur: Duration(36 * time.Hour), Size: 10 << 20}},
		{"aliases", "inner: &in {name: shared, count: 2}\nitems: [*in, *in]\nlist: &l [a, b]\nstrings: *l\n",
			ydAll{Pos: Pos{Line: 1}, Inner: ydInner{Pos{Line: 1}, "shared", 2}, Items: []ydInner{{Pos{Line: 1}, "shared", 2}, {Pos{Line: 1}, "shared", 2}},
				List: StrList{{Value: "a", Line: 3}, {Value: "b", Line: 3}}, Strings: []string{"a", "b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got ydAll
			if errs := decodeYD(t, tt.src, &got); errs != nil {
				t.Fatalf("errors: %q", errs)
			}
			forgetKeyLines(reflect.ValueOf(&got).Elem())
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// forgetKeyLines clears the key lines of every Pos in v (TestPosKeyLines
// tests them), so that the table above compares the values.
func forgetKeyLines(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			forgetKeyLines(v.Elem())
		}
	case reflect.Struct:
		if v.Type() == posType {
			v.Set(reflect.ValueOf(Pos{Line: int(v.Field(0).Int())}))
			return
		}
		for i := range v.NumField() {
			if v.Field(i).CanSet() {
				forgetKeyLines(v.Field(i))
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			forgetKeyLines(v.Index(i))
		}
	}
}

// Problems with one option are reported at that option's line.
func TestPosKeyLines(t *testing.T) {
	var got ydAll
	if errs := decodeYD(t, "str: x\ninner:\n  name: n\n\n  count: 3\n", &got); errs != nil {
		t.Fatal(errs)
	}
	if got.Pos.KeyLine("inner") != 2 || got.Inner.Pos.KeyLine("count") != 5 || got.Inner.Pos.KeyLine("name") != 3 ||
		got.Inner.Pos.KeyLine("absent") != 3 {
		t.Errorf("key lines: %+v", got)
	}
}

func TestDecodeKeepsDefaults(t *testing.T) {
	got := ydAll{Str: "default", Inner: ydInner{Name: "keep"}, Map: map[string]int{"old": 1}}
	if errs := decodeYD(t, "inner: {count: 1}\nmap: {new: 2}\n", &got); errs != nil {
		t.Fatal(errs)
	}
	if got.Str != "default" || got.Inner.Name != "keep" || got.Inner.Count != 1 || len(got.Map) != 2 {
		t.Errorf("defaults lost: %+v", got)
	}
}

func TestDecodeRawNodes(t *testing.T) {
	var got struct {
		Raw    *yaml.Node `yaml:"raw"`
		RawVal yaml.Node  `yaml:"raw_val"`
		Nil    *yaml.Node `yaml:"nil"`
		Alias  *yaml.Node `yaml:"alias"`
	}
	if errs := decodeYD(t, "raw: {a: [1]}\nraw_val: [x]\nnil: null\nalias: *r\n", &got); errs == nil {
		t.Fatal("want an unknown anchor error")
	}
	errs := decodeYD(t, "raw: &r {a: [1]}\nraw_val: [x]\nnil: null\nalias: *r\n", &got)
	if errs != nil {
		t.Fatal(errs)
	}
	if got.Raw == nil || got.Raw.Kind != yaml.MappingNode || got.Raw.Line != 1 {
		t.Errorf("raw = %+v", got.Raw)
	}
	if got.RawVal.Kind != yaml.SequenceNode || got.RawVal.Line != 2 {
		t.Errorf("raw_val = %+v", got.RawVal)
	}
	if got.Nil != nil {
		t.Errorf("nil = %+v, want nil", got.Nil)
	}
	if got.Alias != got.Raw {
		t.Errorf("alias = %p, want the anchored node %p", got.Alias, got.Raw)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"unknown key", "str: x\nfoo: 1\n", []string{`t.yaml:2: unknown key "foo"`}},
		{"unknown key with suggestion", "strs: x\ninner: {nmae: y}\n", []string{
			`t.yaml:1: unknown key "strs" (did you mean "str"?)`,
			`t.yaml:2: unknown key "nmae" (did you mean "name"?)`}},
		{"no far suggestion for short keys", "xy: 1\nfoo: 2\nstrng: 3\nbol: 4\n", []string{
			`t.yaml:1: unknown key "xy"`, `t.yaml:2: unknown key "foo"`,
			`t.yaml:3: unknown key "strng" (did you mean "str"?)`, `t.yaml:4: unknown key "bol" (did you mean "bool"?)`}},
		{"skipped and unexported fields are not keys", "skipped: 1\nhidden: 2\npos: 3\n", []string{
			`t.yaml:1: unknown key "skipped"`, `t.yaml:2: unknown key "hidden"`, `t.yaml:3: unknown key "pos"`}},
		{"keys are case-sensitive", "Str: x\n", []string{`t.yaml:1: unknown key "Str" (did you mean "str"?)`}},
		{"duplicate key", "str: a\nint: 1\nstr: b\n", []string{`t.yaml:3: duplicate key "str" (first at line 1)`}},
		{"duplicate map key", "map:\n  a: 1\n  a: 2\n", []string{`t.yaml:3: duplicate key "a" (first at line 2)`}},
		{"merge key at top", "inner: &b {name: x}\n<<: *b\n", []string{`t.yaml:2: merge keys are not supported`}},
		{"merge key in struct", "inner:\n  <<: {name: x}\n  count: 1\n", []string{`t.yaml:2: merge keys are not supported`}},
		{"merge key in map", "map: {<<: {a: 1}}\n", []string{`t.yaml:1: merge keys are not supported`}},
		{"mapping expected", "inner: [1]\nitems: [x]\nmap: 3\n", []string{
			`t.yaml:1: expected a mapping for "inner", found a sequence`,
			`t.yaml:2: expected a mapping for an item of "items", found a scalar "x"`,
			`t.yaml:3: expected a mapping for "map", found a scalar "3"`}},
		{"sequence expected", "ints: 3\nitems: {a: 1}\n", []string{
			`t.yaml:1: expected a sequence for "ints", found a scalar "3"`,
			`t.yaml:2: expected a sequence for "items", found a mapping`}},
		{"string expected", "str: [a]\ns: {a: 1}\nlist: [a, [b], ~]\n", []string{
			`t.yaml:1: expected a string, found a sequence`,
			`t.yaml:2: expected a string, found a mapping`,
			`t.yaml:3: expected a string, found a sequence`,
			`t.yaml:3: expected a string, found an empty value`}},
		{"empty string value", "str:\n", []string{`t.yaml:1: expected a string, found an empty value`}},
		{"booleans", "bool: yes\n", []string{`t.yaml:1: "yes" is not a boolean (use true or false)`}},
		{"boolean case", "bool: True\n", []string{`t.yaml:1: "True" is not a boolean (use true or false)`}},
		{"numbers", "int: abc\nint8: 1.5\nfloat: x\nfloat32: .nan\n", []string{
			`t.yaml:1: "abc" is not a number`,
			`t.yaml:2: "1.5" is not an integer`,
			`t.yaml:3: "x" is not a number`,
			`t.yaml:4: ".nan" is not a number`}},
		{"ranges", "int8: 128\nuint8: -1\nuint16: 70000\nuint64: 18446744073709551616\nint: -9223372036854775809\nfloat32: 1e39\n", []string{
			`t.yaml:1: 128 is out of range (-128 to 127)`,
			`t.yaml:2: -1 is out of range (0 to 255)`,
			`t.yaml:3: 70000 is out of range (0 to 65535)`,
			`t.yaml:4: 18446744073709551616 is out of range (0 to 18446744073709551615)`,
			`t.yaml:5: -9223372036854775809 is out of range (-9223372036854775808 to 9223372036854775807)`,
			`t.yaml:6: 1e39 is out of range`}},
		{"number expected", "int: [1]\n", []string{`t.yaml:1: expected a number, found a sequence`}},
		{"durations", "dur: 10x\n", []string{`t.yaml:1: "10x" is not a duration (e.g. 30s, 5m, 31d)`}},
		{"negative duration", "dur: -5s\n", []string{`t.yaml:1: duration "-5s" must not be negative`}},
		{"size", "size: 10X\n", []string{`t.yaml:1: "10X" is not a size (e.g. 1048576, 512K, 10M, 1G)`}},
		{"duration expected", "dur: [1s]\nsize: ~\n", []string{
			`t.yaml:1: expected a duration, found a sequence`,
			`t.yaml:2: expected a size, found an empty value`}},
		{"unsupported tag", "str: !foo x\n", []string{`t.yaml:1: unsupported tag "!foo"`}},
		{"key that is not a scalar", "? [a]\n: 1\n", []string{`t.yaml:1: expected a key name, found a sequence`}},
		{"nodeDecoder errors", "pair: ab\n", []string{`t.yaml:1: want a-b`}},
		{"top level not a mapping", "- a\n", []string{`t.yaml:1: expected a mapping at the top level, found a sequence`}},
		{"many errors, all reported, sorted by line", `
str: [x]
foo: 1
inner:
  name: ok
  count: many
  bar: 2
items:
  - name: a
    count: 1.5
  - 3
bool: maybe
dur: 1y
size: -1
map: {a: x, b: 2, a: 3}
str: again
`, []string{
			`t.yaml:2: expected a string, found a sequence`,
			`t.yaml:3: unknown key "foo"`,
			`t.yaml:6: "many" is not a number`,
			`t.yaml:7: unknown key "bar"`,
			`t.yaml:10: "1.5" is not an integer`,
			`t.yaml:11: expected a mapping for an item of "items", found a scalar "3"`,
			`t.yaml:12: "maybe" is not a boolean (use true or false)`,
			`t.yaml:13: "1y" is not a duration (e.g. 30s, 5m, 31d)`,
			`t.yaml:14: size "-1" must not be negative`,
			`t.yaml:15: "x" is not a number`,
			`t.yaml:15: duplicate key "a" (first at line 15)`,
			`t.yaml:16: duplicate key "str" (first at line 2)`}},
		{"errors inside an alias are reported once, at the anchor", "inner: &a {name: x, bogus: 1}\nitems: [*a, *a]\n", []string{
			`t.yaml:1: unknown key "bogus"`}},
		{"alias cycle", "tree: &a [[], *a]\n", []string{`t.yaml:1: alias *a refers to itself`}},
		{"long scalar is shortened", "inner: " + strings.Repeat("x", 50) + "\n", []string{
			`t.yaml:1: expected a mapping for "inner", found a scalar "` + strings.Repeat("x", 37) + `..."`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got ydAll
			errs := decodeYD(t, tt.src, &got)
			if !reflect.DeepEqual(errs, tt.want) {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(errs, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

func TestDecodeBillionLaughs(t *testing.T) {
	src := "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
	prev := "a"
	for _, c := range "bcdefghij" {
		src += string(c) + ": &" + string(c) + " [" + strings.Repeat("*"+prev+", ", 9) + "*" + prev + "]\n"
		prev = string(c)
	}
	src += "x: *j\n"
	// x expands to 10^9 scalars.
	var deep struct {
		A, B, C, D, E, F, G, H, I, J *yaml.Node
		X                            [][][][][][][][][]StrList
	}
	start := time.Now()
	errs := decodeYD(t, src, &deep)
	if time.Since(start) > 5*time.Second {
		t.Errorf("took %v", time.Since(start))
	}
	if len(errs) == 0 || !strings.Contains(strings.Join(errs, "\n"), "aliases expand to too much data") {
		t.Errorf("errors = %q", errs)
	}
}

func TestParseYAML(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string // "" for success
	}{
		{"ok", "a: 1\n", ""},
		{"ok with end marker", "a: 1\n...\n", ""},
		{"empty", "", "t.yaml: empty configuration"},
		{"only comments", "# nothing\n", "t.yaml: empty configuration"},
		{"only a marker", "---\n", "t.yaml: empty configuration"},
		{"null", "~\n", "t.yaml: empty configuration"},
		{"two documents", "a: 1\n---\nb: 2\n", `t.yaml:2: more than one YAML document (remove the "---")`},
		{"scalar", "hello\n", `t.yaml:1: expected a mapping at the top level, found a scalar "hello"`},
		// yaml.v3 counts parser error lines from 0 and scanner error lines
		// from 1, and leaves out line 0: these check every way.
		{"scanner error", "a: 1\n b: 2\n", "t.yaml:2: mapping values are not allowed in this context"},
		{"scanner error on line 1", "\ta: 1\n", "t.yaml:1: found character that cannot start any token"},
		{"scanner error on line 3", "a: 1\nb: 2\nc: \"\\q\"\n", "t.yaml:3: found unknown escape character"},
		{"parser error", "a: 1\nb: 2\n- c\n", "t.yaml:3: did not find expected key"},
		{"parser error in flow", "a: 1\nb: 2\nc: [1, 2\nd: 3\n", "t.yaml:3: did not find expected ',' or ']'"},
		{"parser error on line 1", "- a\nb: 1\n", "t.yaml:2: did not find expected '-' indicator"},
		{"parser error at end", "a: [1,\n", "t.yaml:2: did not find expected node content"},
		{"unknown anchor", "a: 1\nb: *nope\n", "t.yaml:2: unknown anchor 'nope' referenced"},
		{"syntax error in second document", "a: 1\n---\nb: [\n", "t.yaml:4: did not find expected node content"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, errs := parseYAML("t.yaml", []byte(tt.src))
			if tt.want == "" {
				if errs != nil || root == nil || root.Kind != yaml.MappingNode {
					t.Fatalf("root %v, errors %v", root, errs)
				}
				return
			}
			if root != nil {
				t.Errorf("root = %v, want nil", root)
			}
			if got := errs.Error(); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"0", 0, ""},
		{"10s", 10 * time.Second, ""},
		{"1m30s", 90 * time.Second, ""},
		{"1.5h", 90 * time.Minute, ""},
		{"300ms", 300 * time.Millisecond, ""},
		{"31d", 31 * 24 * time.Hour, ""},
		{"1d12h", 36 * time.Hour, ""},
		{"0d", 0, ""},
		{"1d1h1m1s", 25*time.Hour + time.Minute + time.Second, ""},
		{"10", 0, `"10" is not a duration (e.g. 30s, 5m, 31d)`},
		{"d", 0, `"d" is not a duration (e.g. 30s, 5m, 31d)`},
		{"1.5d", 0, `"1.5d" is not a duration (e.g. 30s, 5m, 31d)`},
		{"1d-1h", 0, `"1d-1h" is not a duration (e.g. 30s, 5m, 31d)`},
		{"1h1d", 0, `"1h1d" is not a duration (e.g. 30s, 5m, 31d)`},
		{"-1d", 0, `"-1d" is not a duration (e.g. 30s, 5m, 31d)`},
		{"", 0, `"" is not a duration (e.g. 30s, 5m, 31d)`},
		{"-1s", 0, `duration "-1s" must not be negative`},
		{"106751d", 106751 * 24 * time.Hour, ""},
		{"106752d", 0, `duration "106752d" is too long`},
		{"106751d24h", 0, `duration "106751d24h" is too long`},
		{"99999999999999999999d", 0, `duration "99999999999999999999d" is too long`},
	}
	for _, tt := range tests {
		got, err := parseDuration(tt.in)
		if msg := errString(err); got != tt.want || msg != tt.err {
			t.Errorf("parseDuration(%q) = %v, %q; want %v, %q", tt.in, got, msg, tt.want, tt.err)
		}
	}
}

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{"0", 0, ""},
		{"1048576", 1 << 20, ""},
		{"512K", 512 << 10, ""},
		{"512k", 512 << 10, ""},
		{"10M", 10 << 20, ""},
		{"10MB", 10 << 20, ""},
		{"10mib", 10 << 20, ""},
		{"10 MiB", 10 << 20, ""},
		{"2G", 2 << 30, ""},
		{"2GB", 2 << 30, ""},
		{"2GiB", 2 << 30, ""},
		{"8589934591G", 8589934591 << 30, ""},
		{"8589934592G", 0, `size "8589934592G" is too large`},
		{"99999999999999999999", 0, `size "99999999999999999999" is too large`},
		{"-1", 0, `size "-1" must not be negative`},
		{"1.5M", 0, `"1.5M" is not a size (e.g. 1048576, 512K, 10M, 1G)`},
		{"10T", 0, `"10T" is not a size (e.g. 1048576, 512K, 10M, 1G)`},
		{"10B", 0, `"10B" is not a size (e.g. 1048576, 512K, 10M, 1G)`},
		{"M", 0, `"M" is not a size (e.g. 1048576, 512K, 10M, 1G)`},
		{"", 0, `"" is not a size (e.g. 1048576, 512K, 10M, 1G)`},
	}
	for _, tt := range tests {
		got, err := parseByteSize(tt.in)
		if msg := errString(err); got != tt.want || msg != tt.err {
			t.Errorf("parseByteSize(%q) = %v, %q; want %v, %q", tt.in, got, msg, tt.want, tt.err)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestErrorFormatting(t *testing.T) {
	if got := (Error{"f.yaml", 3, "bad"}).Error(); got != "f.yaml:3: bad" {
		t.Errorf("got %q", got)
	}
	if got := (Error{"f.yaml", 0, "bad"}).Error(); got != "f.yaml: bad" {
		t.Errorf("got %q", got)
	}
	var empty ErrorList
	if empty.Err() != nil {
		t.Error("empty list: Err() != nil")
	}
	l := ErrorList{{"f", 5, "e"}, {"f", 2, "b"}, {"f", 5, "a"}, {"f", 0, "z"}}
	want := "f: z\nf:2: b\nf:5: e\nf:5: a"
	if got := l.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if l[0].Line != 5 {
		t.Error("Error() sorted the list in place")
	}
	var list ErrorList
	if err := l.Err(); !errors.As(err, &list) || list[0].Line != 0 || list[3].Msg != "a" {
		t.Errorf("Err() = %#v", err)
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"abc", "abc", 0}, {"abc", "", 3}, {"timeout", "tiemout", 1},
		{"hosts", "host", 1}, {"sender", "senders", 1}, {"kitten", "sitting", 3},
	}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestDecodePanicsOnBadTarget(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	var d decoder
	var x ydAll
	d.decode(&yaml.Node{Kind: yaml.MappingNode}, x)
}

func TestDecodeInternalErrors(t *testing.T) {
	var got struct {
		D  time.Duration  `yaml:"d"`
		C  chan int       `yaml:"c"`
		M  map[int]string `yaml:"m"`
		OK string         `yaml:"ok"`
	}
	errs := decodeYD(t, "d: 1s\nc: 1\nm: {1: a}\nok: yes\n", &got)
	want := []string{
		"t.yaml:1: internal error: decoding into time.Duration, use Duration",
		"t.yaml:2: internal error: cannot decode into chan int",
		"t.yaml:3: internal error: cannot decode into map[int]string",
	}
	if !reflect.DeepEqual(errs, want) || got.OK != "yes" {
		t.Errorf("got %q (ok=%q), want %q", errs, got.OK, want)
	}
}

func TestDecodeAliasKeysAndTopLevel(t *testing.T) {
	var got ydAll
	if errs := decodeYD(t, "str: &k int\n*k : 3\n", &got); errs != nil || got.Int != 3 || got.Str != "int" {
		t.Errorf("alias key: %q, %+v", errs, got)
	}
	// A top-level shape error has no key to name.
	var list []ydInner
	root, _ := parseYAML("t.yaml", []byte("a: 1\n"))
	d := &decoder{file: "t.yaml"}
	d.decode(root, &list)
	if got := d.errs.Error(); got != "t.yaml:1: expected a sequence, found a mapping" {
		t.Errorf("got %q", got)
	}
}

// What the feature types marshal to (tollgate check --print writes a
// feature section with them) decodes back to the same values.
func TestFeatureTypesMarshalBack(t *testing.T) {
	type printed struct {
		Durations []Duration    `yaml:"durations"`
		Sizes     []ByteSize    `yaml:"sizes"`
		Str       feature.Str   `yaml:"str"`
		List      StrList       `yaml:"list"`
		Empty     *StrList      `yaml:"empty"`
		Unset     StrList       `yaml:"unset"`
		Words     []feature.Str `yaml:"words"`
	}
	in := printed{
		Durations: []Duration{0, Duration(1500 * time.Millisecond), Duration(90 * time.Second), Duration(2 * time.Hour),
			Duration(36 * time.Hour), Duration(31 * 24 * time.Hour), Duration(24*time.Hour + time.Second)},
		Sizes: []ByteSize{0, 1, 1023, 1024, 512000, 1 << 20, 3 << 30, 3<<30 + 1},
		Str:   feature.Str{Value: "<redacted>"},
		List:  feature.Strs("from", "x: y", "- z"),
		Empty: &StrList{},
		Words: []feature.Str{{Value: "="}, {Value: "true"}, {Value: "10"}},
	}
	data, err := yaml.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out printed
	if errs := decodeYD(t, string(data), &out); errs != nil {
		t.Fatalf("%s\n%v", data, errs)
	}
	if !slices.Equal(out.Durations, in.Durations) || !slices.Equal(out.Sizes, in.Sizes) {
		t.Errorf("%s decodes to %v %v", data, out.Durations, out.Sizes)
	}
	if out.Str.Value != in.Str.Value || !slices.Equal(out.List.Values(), in.List.Values()) || out.Unset != nil {
		t.Errorf("%s decodes to %+v", data, out)
	}
	if out.Empty == nil || len(*out.Empty) != 0 {
		t.Errorf("an empty list (not the default) is lost: %s", data)
	}
	for i, w := range out.Words {
		if w.Value != in.Words[i].Value {
			t.Errorf("%q decodes to %q", in.Words[i].Value, w.Value)
		}
	}
	if !strings.Contains(string(data), "31d") || !strings.Contains(string(data), "500K") || !strings.Contains(string(data), "1m30s") {
		t.Errorf("not in the configuration's own units:\n%s", data)
	}
}
