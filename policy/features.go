package policy

import (
	"fmt"
	"io"
	"reflect"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/tollgate/tollgate/feature"
	"github.com/tollgate/tollgate/milter"
)

// The policy knows features only through their specs (package feature): the
// section each configures, the ACL words each adds with their stage sets, the
// order of their modules. Nothing here names a feature.

// loadedFeature is one feature of a configuration.
type loadedFeature struct {
	spec       feature.Spec
	cfg        any // the decoded section; nil when the file has none
	line       int
	section    feature.Section // nil when not configured or invalid
	configured bool
}

// ruleKey is an ACL rule key a feature adds: a condition or a modifier.
type ruleKey struct {
	feature string
	cond    *feature.Condition
	mod     *feature.Modifier
}

func (k ruleKey) stages() milter.Stages {
	if k.cond != nil {
		return k.cond.Stages
	}
	return k.mod.Stages
}

// featureUse is a feature's key used in a rule, decoded.
type featureUse struct {
	key   string
	line  int
	value any
}

// featureSet is the features a configuration is loaded with, in the order
// their modules run.
type featureSet struct {
	list   []*loadedFeature
	byName map[string]*loadedFeature
}

// newFeatureSet checks the specs against each other and against the core
// vocabulary, and teaches the decoder their rule keys, variables and controls.
func newFeatureSet(d *decoder, specs []feature.Spec) *featureSet {
	fs := &featureSet{byName: map[string]*loadedFeature{}}
	d.ruleKeys = map[string]ruleKey{}
	d.vars = make(map[string]variable, len(variables))
	for k, v := range variables {
		d.vars[k] = v
	}
	d.controls = make(map[string]control, len(knownControls))
	for k, v := range knownControls {
		d.controls[k] = control{stages: v}
	}
	coreKeys := map[string]bool{}
	for _, f := range ruleBodyKeys() {
		coreKeys[f] = true
	}
	clash := func(what, name, spec string) {
		// A programming error of the build, not of the file: say it loudly.
		d.errorf(0, "internal error: feature %s adds %s %q, which is already taken", spec, what, name)
	}
	for _, s := range specs {
		name := s.Name()
		if _, dup := fs.byName[name]; dup || configKeys[name] {
			clash("the section", name, name)
			continue
		}
		lf := &loadedFeature{spec: s}
		fs.byName[name] = lf
		fs.list = append(fs.list, lf)
		v := s.Vocabulary()
		for i := range v.Conditions {
			c := &v.Conditions[i]
			if _, dup := d.ruleKeys[c.Key]; dup || coreKeys[c.Key] {
				clash("the condition", c.Key, name)
				continue
			}
			d.ruleKeys[c.Key] = ruleKey{feature: name, cond: c}
		}
		for i := range v.Modifiers {
			m := &v.Modifiers[i]
			if _, dup := d.ruleKeys[m.Key]; dup || coreKeys[m.Key] {
				clash("the modifier", m.Key, name)
				continue
			}
			d.ruleKeys[m.Key] = ruleKey{feature: name, mod: m}
		}
		for _, fv := range v.Variables {
			if _, dup := d.vars[fv.Name]; dup || aclVarName.MatchString(fv.Name) {
				clash("the variable", fv.Name, name)
				continue
			}
			value := fv.Value
			d.vars[fv.Name] = variable{stages: fv.Stages, value: func(e *evalCtx) string { return value(e.feature()) }}
		}
		for _, c := range v.Controls {
			if _, dup := d.controls[c.Name]; dup {
				clash("the control", c.Name, name)
				continue
			}
			d.controls[c.Name] = control{stages: c.Stages, feature: name}
		}
	}
	return fs
}

// takeSections decodes the features' sections out of the top-level mapping
// and returns the mapping without them, for the core Config.
func (fs *featureSet) takeSections(d *decoder, root *yaml.Node) *yaml.Node {
	core := *root
	core.Content = nil
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind == yaml.AliasNode && k.Alias != nil {
			k = k.Alias
		}
		lf, ok := fs.byName[k.Value]
		if !ok || k.Kind != yaml.ScalarNode {
			if k.Kind == yaml.ScalarNode && !configKeys[k.Value] {
				// Unknown here: suggest among the core's keys and the features'.
				d.errorf(k.Line, "unknown key %q%s", k.Value, suggestKey(k.Value, fs.sectionKeys()))
				continue
			}
			core.Content = append(core.Content, root.Content[i], v)
			continue
		}
		if lf.cfg != nil {
			d.errorf(k.Line, "key %q is already given at line %d", k.Value, lf.line)
			continue
		}
		lf.cfg, lf.line = lf.spec.NewConfig(), k.Line
		d.decode(v, lf.cfg)
	}
	return &core
}

// compile compiles every configured section.
func (fs *featureSet) compile(d *decoder, lc *listCompiler, authServID string) {
	env := &feature.CompileEnv{Report: d, AuthServID: authServID, Domains: func(items StrList) func(string) bool { return lc.domains(items).Match }}
	for _, lf := range fs.list {
		if lf.cfg == nil {
			continue
		}
		lf.configured = true
		lf.section = lf.spec.Compile(lf.cfg, env)
	}
}

// ordered returns the configured features in module order: each after the
// features it names in Order.After, those with Order.Last after every other
// except the ones that name a Last feature in their After (DMARC reads the
// ARC result; ARC still finalizes, and so seals, after every module that
// changes headers, since a module that comes after it has no finalizer that
// may); the listed order otherwise.
func (fs *featureSet) ordered() []*loadedFeature {
	var first, last, after []*loadedFeature
	for _, lf := range fs.list {
		switch {
		case lf.section == nil:
		case lf.spec.Order().Last:
			last = append(last, lf)
		case fs.followsLast(lf):
			after = append(after, lf)
		default:
			first = append(first, lf)
		}
	}
	placed := map[string]bool{}
	out := fs.placeInOrder(first, placed)
	for _, lf := range last {
		placed[lf.spec.Name()] = true
	}
	out = append(out, last...)
	return append(out, fs.placeInOrder(after, placed)...)
}

// followsLast reports whether lf names a configured Last feature in its After.
func (fs *featureSet) followsLast(lf *loadedFeature) bool {
	for _, a := range lf.spec.Order().After {
		if dep, ok := fs.byName[a]; ok && dep.section != nil && dep.spec.Order().Last {
			return true
		}
	}
	return false
}

// placeInOrder orders pending so that each comes after what it names in
// Order.After (among pending; the others are in placed already or absent).
func (fs *featureSet) placeInOrder(pending []*loadedFeature, placed map[string]bool) []*loadedFeature {
	var out []*loadedFeature
	inPending := map[string]bool{}
	for _, lf := range pending {
		inPending[lf.spec.Name()] = true
	}
	for len(pending) > 0 {
		progress := false
		for i := 0; i < len(pending); i++ {
			ready := true
			for _, a := range pending[i].spec.Order().After {
				if inPending[a] && !placed[a] {
					ready = false
				}
			}
			if ready {
				placed[pending[i].spec.Name()] = true
				out = append(out, pending[i])
				pending = append(pending[:i], pending[i+1:]...)
				progress = true
				i--
			}
		}
		if !progress { // a cycle in the specs: keep the listed order
			return append(out, pending...)
		}
	}
	return out
}

// featureCond is a feature's condition in a rule.
type featureCond struct{ test feature.Test }

func (c featureCond) match(e *evalCtx) bool {
	m, _ := c.test.Match(e.feature())
	return m
}

func (c featureCond) eval(e *evalCtx) (bool, *milter.Decision) { return c.test.Match(e.feature()) }

// featureMod is a feature's modifier in a rule.
type featureMod struct {
	apply func(e *feature.Eval, value string)
	value *template
}

// compileFeatureUses compiles the features' keys of one rule.
func compileFeatureUses(d *decoder, fs *featureSet, stage milter.Stage, r *rule, uses []featureUse) {
	for _, u := range uses {
		k := d.ruleKeys[u.key]
		if allowed := k.stages(); !allowed.Has(stage) {
			d.errorf(u.line, "acl.%s: %s is not available at %s (only at %s)", stage, u.key, stage, allowed)
			continue
		}
		lf := fs.byName[k.feature]
		if lf.section == nil {
			what := "the condition"
			if k.mod != nil {
				what = "the modifier"
			}
			d.errorf(u.line, "%s: %s needs a valid %s: section", u.key, what, k.feature)
			continue
		}
		if k.cond != nil {
			if t := k.cond.Compile(u.value, u.line, lf.section, d); t != nil {
				r.conds = append(r.conds, featureCond{t})
			}
			continue
		}
		s := *u.value.(*Str)
		r.mods = append(r.mods, featureMod{apply: k.mod.Apply, value: compileTemplate(d, s, stage, u.key)})
	}
}

// Section returns a feature's compiled section, nil when the configuration
// has none (for the commands that use one directly, such as tollgate srs).
func (p *Policy) Section(name string) feature.Section {
	if lf, ok := p.features.byName[name]; ok {
		return lf.section
	}
	return nil
}

// SectionConfig returns a feature's section as decoded from the file (what
// its Spec's NewConfig returned), nil when the file has none: tollgate check
// --print hands it to the Spec's feature.Defaulter.
func (p *Policy) SectionConfig(name string) any {
	if lf, ok := p.features.byName[name]; ok {
		return lf.cfg
	}
	return nil
}

// featureModules builds the modules of the configured features, in order.
func (e *Env) featureModules(p *Policy, rt *Runtime) ([]milter.Module, error) {
	var out []milter.Module
	dns, err := e.sharedResolver(p, rt)
	if err != nil {
		return nil, err
	}
	rt.dns = dns // the dnslists condition's too
	for _, lf := range p.features.ordered() {
		name := lf.spec.Name()
		e.mu.Lock()
		if e.featureMetrics == nil {
			e.featureMetrics = map[string]any{}
		}
		m, ok := e.featureMetrics[name]
		if !ok {
			m = lf.spec.NewMetrics(e.registry)
			e.featureMetrics[name] = m
		}
		e.mu.Unlock()
		mod, err := lf.section.Module(&feature.ModuleEnv{Log: e.Log, Metrics: m, Serving: e.Serving, DNS: dns,
			Shared: func(key string, open func() (io.Closer, error)) (io.Closer, error) {
				c, err := e.shared(name+":"+key, open)
				if err == nil {
					rt.stores = append(rt.stores, name+":"+key)
				}
				return c, err
			}})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, mod)
	}
	return out, nil
}

// ruleBodyKeys are the core rule keys.
func ruleBodyKeys() []string {
	keys, _ := structKeys(reflectTypeOfRuleBody, nil)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.name
	}
	return out
}

// configKeys are the core top-level keys.
var configKeys = func() map[string]bool {
	keys, _ := structKeys(reflectTypeOfConfig, nil)
	m := map[string]bool{}
	for _, k := range keys {
		m[k.name] = true
	}
	return m
}()

var (
	reflectTypeOfRuleBody = reflect.TypeFor[RuleBody]()
	reflectTypeOfConfig   = reflect.TypeFor[Config]()
)

// control is a control name and the stages where setting it still acts;
// feature names the feature it belongs to ("" for the core's).
type control struct {
	stages  milter.Stages
	feature string
}

// decodeYAML takes the features' keys out of a rule and decodes the rest as
// the core RuleBody, strictly.
func (b *RuleBody) decodeYAML(d *decoder, n *yaml.Node) {
	type plain RuleBody
	if n.Kind != yaml.MappingNode || len(d.ruleKeys) == 0 {
		d.decode(n, (*plain)(b))
		return
	}
	core := *n
	core.Content = nil
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.AliasNode && k.Alias != nil {
			k = k.Alias
		}
		rk, ok := d.ruleKeys[k.Value]
		if !ok || k.Kind != yaml.ScalarNode {
			if k.Kind == yaml.ScalarNode && !ruleBodyKeySet[k.Value] {
				// Unknown here: suggest among the core's keys and the features'.
				d.errorf(k.Line, "unknown key %q%s", k.Value, suggestKey(k.Value, d.ruleKeyInfo()))
				continue
			}
			core.Content = append(core.Content, n.Content[i], v)
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.errorf(k.Line, "key %q is already given at line %d", k.Value, first)
			continue
		}
		seen[k.Value] = k.Line
		var value any
		if rk.cond != nil {
			value = rk.cond.NewValue()
		} else {
			value = new(Str)
		}
		d.decode(v, value)
		b.features = append(b.features, featureUse{key: k.Value, line: k.Line, value: value})
	}
	d.decode(&core, (*plain)(b))
}

var ruleBodyKeySet = func() map[string]bool {
	m := map[string]bool{}
	for _, k := range ruleBodyKeys() {
		m[k] = true
	}
	return m
}()

// sectionKeys are the top-level keys: the core's and the features' sections.
func (fs *featureSet) sectionKeys() []fieldInfo {
	keys, _ := structKeys(reflectTypeOfConfig, nil)
	for _, lf := range fs.list {
		keys = append(keys, fieldInfo{name: lf.spec.Name()})
	}
	return keys
}

// ruleKeyInfo are the rule keys: the core's and the features'.
func (d *decoder) ruleKeyInfo() []fieldInfo {
	keys, _ := structKeys(reflectTypeOfRuleBody, nil)
	names := make([]string, 0, len(d.ruleKeys))
	for k := range d.ruleKeys {
		names = append(names, k)
	}
	slices.Sort(names) // ties in the suggestion go the same way every run
	for _, k := range names {
		keys = append(keys, fieldInfo{name: k})
	}
	return keys
}
