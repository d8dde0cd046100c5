package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tollgate/tollgate/feature"
)

// Error is one problem in a configuration file, reported as "FILE:LINE: message".
type Error struct {
	File string
	Line int
	Msg  string
}

func (e Error) Error() string {
	if e.Line == 0 {
		return e.File + ": " + e.Msg
	}
	return e.File + ":" + strconv.Itoa(e.Line) + ": " + e.Msg
}

// ErrorList collects every problem in a file, so that one run of the
// configuration check reports all of them.
type ErrorList []Error

// Error joins the errors, one a line, sorted by line.
func (l ErrorList) Error() string {
	l = slices.Clone(l)
	l.sort()
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Err returns nil if the list is empty, else the list sorted by line.
func (l ErrorList) Err() error {
	if len(l) == 0 {
		return nil
	}
	l.sort()
	return l
}

func (l ErrorList) sort() {
	slices.SortStableFunc(l, func(a, b Error) int { return a.Line - b.Line })
}

// The configuration's scalar types live in package feature, which features
// share with the loader; these names keep the loader's code short.
type (
	Str      = feature.Str
	StrList  = feature.StrList
	Pos      = feature.Pos
	Duration = feature.Duration
	ByteSize = feature.ByteSize
)

// nodeDecoder lets a type decode itself (ACL rules and the like). n is never
// an alias; its children may be, so decode them with d.decode rather than
// reading them directly. To reuse the struct decoding for the same type,
// convert to a type without the method: type plain T; d.decode(n, (*plain)(t)).
type nodeDecoder interface {
	decodeYAML(d *decoder, n *yaml.Node)
}

// maxAliasNodes bounds the work done through aliases: without it a small
// file can expand exponentially ("billion laughs").
const maxAliasNodes = 100_000

type decoder struct {
	file string
	errs ErrorList

	// What the features add to the language (features.go); nil vars and
	// controls mean the core's alone.
	ruleKeys map[string]ruleKey
	vars     map[string]variable
	controls map[string]control

	seen       map[Error]bool // an aliased mapping would repeat its errors at every use
	aliases    []*yaml.Node   // aliases being expanded, to catch an anchor that contains itself
	aliasNodes int

	dbs     map[string]*lookupDB // "kind:path": each database is opened once per load
	watched []fileStamp          // the files lists and lookups read, for the watcher
}

// Errorf makes the decoder the feature.Reporter that sections compile with.
func (d *decoder) Errorf(line int, format string, args ...any) { d.errorf(line, format, args...) }

func (d *decoder) errorf(line int, format string, args ...any) {
	e := Error{File: d.file, Line: line, Msg: fmt.Sprintf(format, args...)}
	if d.seen[e] {
		return
	}
	if d.seen == nil {
		d.seen = make(map[Error]bool)
	}
	d.seen[e] = true
	d.errs = append(d.errs, e)
}

var (
	parseLineRE = regexp.MustCompile(`^line (\d+): `)

	// yaml.v3 reports the lines of libyaml's parser errors counting from 0
	// (but those of its scanner errors from 1), and leaves out line 0.
	parserProblems = map[string]bool{
		"did not find expected ',' or ']'":       true,
		"did not find expected ',' or '}'":       true,
		"did not find expected '-' indicator":    true,
		"did not find expected <document start>": true,
		"did not find expected <stream-start>":   true,
		"did not find expected key":              true,
		"did not find expected node content":     true,
		"found duplicate %TAG directive":         true,
		"found duplicate %YAML directive":        true,
		"found incompatible YAML document":       true,
		"found undefined tag handle":             true,
	}
	unknownAnchorRE = regexp.MustCompile(`^unknown anchor '(.*)' referenced$`)
)

// parseYAML parses one YAML document and returns its top-level mapping.
func parseYAML(file string, data []byte) (*yaml.Node, ErrorList) {
	d := &decoder{file: file}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			d.errorf(0, "empty configuration")
		} else {
			d.syntaxError(err, data)
		}
		return nil, d.errs
	}
	var root *yaml.Node
	if len(doc.Content) > 0 {
		root = doc.Content[0]
	}
	switch {
	case root == nil || isNullNode(root):
		d.errorf(0, "empty configuration")
	case root.Kind != yaml.MappingNode:
		d.errorf(root.Line, "expected a mapping at the top level, found %s", describeNode(root))
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		d.errorf(next.Line, "more than one YAML document (remove the \"---\")")
	case err != io.EOF:
		d.syntaxError(err, data)
	}
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	return root, nil
}

// syntaxError turns yaml.v3's "yaml: line N: msg" into an Error at the right line.
func (d *decoder) syntaxError(err error, data []byte) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := parseLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
		if parserProblems[msg] {
			line++
		}
	} else if m := unknownAnchorRE.FindStringSubmatch(msg); m != nil {
		line = aliasLine(data, m[1])
	} else if !strings.HasPrefix(msg, "attempted to go past") {
		line = 1 // both parser and scanner leave out line 0
	}
	d.errorf(line, "%s", msg)
}

// aliasLine guesses the line of the first "*name", for yaml.v3's unknown
// anchor error, which has none.
func aliasLine(data []byte, name string) int {
	re, err := regexp.Compile(`\*` + regexp.QuoteMeta(name) + `(?:[\s,\]}]|$)`)
	if err != nil {
		return 0
	}
	loc := re.FindIndex(data)
	if loc == nil {
		return 0
	}
	return 1 + bytes.Count(data[:loc[0]], []byte("\n"))
}

// decode decodes n into out, a non-nil pointer, strictly. It records every
// problem and goes on with the next field, so that one run reports them all.
func (d *decoder) decode(n *yaml.Node, out any) {
	v := reflect.ValueOf(out)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		panic(fmt.Sprintf("policy: decode into %T, want a non-nil pointer", out))
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	d.value(n, v.Elem(), "")
}

var (
	nodeDecoderType  = reflect.TypeFor[nodeDecoder]()
	yamlNodeType     = reflect.TypeFor[yaml.Node]()
	yamlNodePtrType  = reflect.TypeFor[*yaml.Node]()
	strType          = reflect.TypeFor[Str]()
	posType          = reflect.TypeFor[Pos]()
	durationType     = reflect.TypeFor[Duration]()
	timeDurationType = reflect.TypeFor[time.Duration]()
	byteSizeType     = reflect.TypeFor[ByteSize]()
)

// value decodes n into v. what names the value in messages about its shape
// ("" at the top).
func (d *decoder) value(n *yaml.Node, v reflect.Value, what string) {
	if n.Kind == yaml.AliasNode {
		d.alias(n, v, what)
		return
	}
	if len(d.aliases) > 0 {
		if d.aliasNodes++; d.aliasNodes == maxAliasNodes {
			d.errorf(n.Line, "aliases expand to too much data")
		}
		if d.aliasNodes >= maxAliasNodes {
			return
		}
	}
	if tag := n.ShortTag(); !strings.HasPrefix(tag, "!!") {
		d.errorf(n.Line, "unsupported tag %q", n.Tag)
		return
	}
	t := v.Type()
	switch t {
	case yamlNodePtrType:
		if !isNullNode(n) {
			v.Set(reflect.ValueOf(n))
		}
		return
	case yamlNodeType:
		v.Set(reflect.ValueOf(*n))
		return
	case strType:
		if s, ok := d.scalar(n, "a string"); ok {
			v.Set(reflect.ValueOf(Str{Value: s, Line: n.Line}))
		}
		return
	case durationType:
		if s, ok := d.scalar(n, "a duration"); ok {
			x, err := parseDuration(s)
			d.setInt(n.Line, v, int64(x), err)
		}
		return
	case byteSizeType:
		if s, ok := d.scalar(n, "a size"); ok {
			x, err := parseByteSize(s)
			d.setInt(n.Line, v, x, err)
		}
		return
	case timeDurationType:
		d.errorf(n.Line, "internal error: decoding into time.Duration, use Duration")
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(nodeDecoderType) {
		v.Addr().Interface().(nodeDecoder).decodeYAML(d, n)
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		if isNullNode(n) {
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		d.value(n, v.Elem(), what)
	case reflect.Struct:
		d.structValue(n, v, what)
	case reflect.Slice:
		d.slice(n, v, what)
	case reflect.Map:
		d.mapValue(n, v, what)
	case reflect.String:
		if s, ok := d.scalar(n, "a string"); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		if s, ok := d.scalar(n, "a boolean"); ok {
			switch s {
			case "true":
				v.SetBool(true)
			case "false":
				v.SetBool(false)
			default:
				d.errorf(n.Line, "%q is not a boolean (use true or false)", s)
			}
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if s, ok := d.scalar(n, "a number"); ok {
			d.integer(n.Line, s, v)
		}
	case reflect.Float32, reflect.Float64:
		if s, ok := d.scalar(n, "a number"); ok {
			x, err := strconv.ParseFloat(s, t.Bits())
			switch {
			case errors.Is(err, strconv.ErrRange):
				d.errorf(n.Line, "%s is out of range", s)
			case err != nil || math.IsNaN(x) || math.IsInf(x, 0):
				d.errorf(n.Line, "%q is not a number", s)
			default:
				v.SetFloat(x)
			}
		}
	default:
		d.errorf(n.Line, "internal error: cannot decode into %s", t)
	}
}

func (d *decoder) alias(n *yaml.Node, v reflect.Value, what string) {
	target := n.Alias
	if target == nil || slices.Contains(d.aliases, target) {
		d.errorf(n.Line, "alias *%s refers to itself", n.Value)
		return
	}
	d.aliases = append(d.aliases, target)
	d.value(target, v, what)
	d.aliases = d.aliases[:len(d.aliases)-1]
}

func (d *decoder) setInt(line int, v reflect.Value, x int64, err error) {
	if err != nil {
		d.errorf(line, "%v", err)
		return
	}
	v.SetInt(x)
}

// scalar returns the text of a scalar node, or reports that it is not one.
func (d *decoder) scalar(n *yaml.Node, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode || isNullNode(n) {
		d.errorf(n.Line, "expected %s, found %s", want, describeNode(n))
		return "", false
	}
	return n.Value, true
}

// fieldInfo locates a struct field for a key: index is its path through
// embedded structs.
type fieldInfo struct {
	name  string
	index []int
}

// fields lists the keys of a struct type. Fields of type Pos are returned
// apart: they are filled, never named by a key.
func structKeys(t reflect.Type, prefix []int) (keys []fieldInfo, pos [][]int) {
	for i := range t.NumField() {
		f := t.Field(i)
		index := append(slices.Clone(prefix), i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case f.Type == posType:
			pos = append(pos, index)
		case name == "-":
		case f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct:
			k, p := structKeys(f.Type, index)
			keys, pos = append(keys, k...), append(pos, p...)
		case !f.IsExported():
		default:
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			keys = append(keys, fieldInfo{name, index})
		}
	}
	return keys, pos
}

func (d *decoder) structValue(n *yaml.Node, v reflect.Value, what string) {
	keys, pos := structKeys(v.Type(), nil)
	for _, p := range pos {
		v.FieldByIndex(p).Set(reflect.ValueOf(Pos{Line: n.Line}))
	}
	if isNullNode(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n.Line, "expected a mapping%s, found %s", forWhat(what), describeNode(n))
		return
	}
	d.pairs(n, func(key string, k, val *yaml.Node) {
		i := slices.IndexFunc(keys, func(f fieldInfo) bool { return f.name == key })
		if i < 0 {
			d.errorf(k.Line, "unknown key %q%s", key, suggestKey(key, keys))
			return
		}
		for _, p := range pos {
			v.FieldByIndex(p).Addr().Interface().(*Pos).SetKeyLine(key, k.Line)
		}
		d.value(val, v.FieldByIndex(keys[i].index), strconv.Quote(key))
	})
}

// pairs calls f for each key and value of a mapping, reporting merge keys,
// non-scalar keys and duplicate keys instead.
func (d *decoder) pairs(n *yaml.Node, f func(key string, k, v *yaml.Node)) {
	first := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.AliasNode && k.Alias != nil {
			k = k.Alias
		}
		switch {
		case k.Kind != yaml.ScalarNode:
			d.errorf(k.Line, "expected a key name, found %s", describeNode(k))
		case k.ShortTag() == "!!merge":
			d.errorf(k.Line, "merge keys are not supported")
		case seenKey(first, k.Value):
			d.errorf(k.Line, "duplicate key %q (first at line %d)", k.Value, first[k.Value])
		default:
			first[k.Value] = k.Line
			f(k.Value, k, v)
		}
	}
}

func seenKey(m map[string]int, k string) bool {
	_, ok := m[k]
	return ok
}

func suggestKey(key string, keys []fieldInfo) string {
	// Two edits turn any short key into many others.
	maxDist := 1
	if len(key) > 4 {
		maxDist = 2
	}
	best, bestDist := "", maxDist+1
	for _, f := range keys {
		if dist := editDistance(strings.ToLower(key), f.name); dist < bestDist {
			best, bestDist = f.name, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the optimal string alignment distance: Levenshtein plus
// transpositions, the commonest typo.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99 // no suggestion is worth quadratic work
	}
	prev2, prev, cur := make([]int, len(b)+1), make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

func (d *decoder) slice(n *yaml.Node, v reflect.Value, what string) {
	items := n.Content
	switch {
	case isNullNode(n):
		return
	case n.Kind == yaml.ScalarNode && (v.Type().Elem().Kind() == reflect.String || v.Type().Elem() == strType):
		items = []*yaml.Node{n}
	case n.Kind != yaml.SequenceNode:
		d.errorf(n.Line, "expected a sequence%s, found %s", forWhat(what), describeNode(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(items), len(items))
	for i, item := range items {
		d.value(item, s.Index(i), itemOf(what))
	}
	v.Set(s)
}

func (d *decoder) mapValue(n *yaml.Node, v reflect.Value, what string) {
	t := v.Type()
	if t.Key().Kind() != reflect.String {
		d.errorf(n.Line, "internal error: cannot decode into %s", t)
		return
	}
	if isNullNode(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n.Line, "expected a mapping%s, found %s", forWhat(what), describeNode(n))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(t))
	}
	d.pairs(n, func(key string, _, val *yaml.Node) {
		elem := reflect.New(t.Elem()).Elem()
		d.value(val, elem, strconv.Quote(key))
		v.SetMapIndex(reflect.ValueOf(key).Convert(t.Key()), elem)
	})
}

// integer parses decimal, or 0x, 0o and 0b numbers (but not a leading 0 as
// octal: "port: 025" means 25).
func (d *decoder) integer(line int, s string, v reflect.Value) {
	base := 10
	if digits := strings.TrimLeft(s, "+-"); len(digits) > 1 && digits[0] == '0' && strings.ContainsRune("xXoObB", rune(digits[1])) {
		base = 0
	}
	x, ok := new(big.Int).SetString(s, base)
	switch {
	case !ok:
		if _, err := strconv.ParseFloat(s, 64); err == nil {
			d.errorf(line, "%q is not an integer", s)
		} else {
			d.errorf(line, "%q is not a number", s)
		}
	case v.CanInt() && x.IsInt64() && !v.OverflowInt(x.Int64()):
		v.SetInt(x.Int64())
	case v.CanUint() && x.IsUint64() && !v.OverflowUint(x.Uint64()):
		v.SetUint(x.Uint64())
	case v.CanInt():
		bits := v.Type().Bits()
		d.errorf(line, "%s is out of range (%d to %d)", x, int64(math.MinInt64)>>(64-bits), int64(math.MaxInt64)>>(64-bits))
	default:
		d.errorf(line, "%s is out of range (0 to %d)", x, uint64(math.MaxUint64)>>(64-v.Type().Bits()))
	}
}

// daysRE splits off a leading number of days; what follows must be a Go
// duration without a sign.
var daysRE = regexp.MustCompile(`^(\d+)d((?:\d.*)?)$`)

// parseDuration parses what Duration accepts.
func parseDuration(s string) (time.Duration, error) {
	var days, rest time.Duration
	var err error
	if m := daysRE.FindStringSubmatch(s); m != nil {
		n, perr := strconv.ParseInt(m[1], 10, 64)
		if perr != nil || n > math.MaxInt64/int64(24*time.Hour) {
			return 0, fmt.Errorf("duration %q is too long", s)
		}
		days = time.Duration(n) * 24 * time.Hour
		if m[2] != "" {
			rest, err = time.ParseDuration(m[2])
		}
	} else {
		rest, err = time.ParseDuration(s)
	}
	switch {
	case err != nil:
		return 0, fmt.Errorf("%q is not a duration (e.g. 30s, 5m, 31d)", s)
	case rest < 0:
		return 0, fmt.Errorf("duration %q must not be negative", s)
	case days > math.MaxInt64-rest:
		return 0, fmt.Errorf("duration %q is too long", s)
	}
	return days + rest, nil
}

var byteSizeRE = regexp.MustCompile(`^(?i)(-?\d+)\s*(?:([kmg])(?:i?b)?)?$`)

// parseByteSize parses what ByteSize accepts.
func parseByteSize(s string) (int64, error) {
	m := byteSizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a size (e.g. 1048576, 512K, 10M, 1G)", s)
	}
	x, err := strconv.ParseInt(m[1], 10, 64)
	shift := map[string]uint{"": 0, "k": 10, "m": 20, "g": 30}[strings.ToLower(m[2])]
	switch {
	case x < 0:
		return 0, fmt.Errorf("size %q must not be negative", s)
	case err != nil || x > math.MaxInt64>>shift:
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return x << shift, nil
}

func isNullNode(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what a node is, for "expected X, found Y".
func describeNode(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a sequence"
	case isNullNode(n):
		return "an empty value"
	case n.Kind == yaml.ScalarNode:
		s := n.Value
		if len(s) > 40 {
			s = strings.ToValidUTF8(s[:37], "") + "..."
		}
		return fmt.Sprintf("a scalar %q", s)
	case n.Kind == yaml.AliasNode:
		return "an alias"
	}
	return "nothing"
}

func forWhat(what string) string {
	if what == "" {
		return ""
	}
	return " for " + what
}

func itemOf(what string) string {
	if what == "" {
		return "an item"
	}
	return "an item of " + what
}
