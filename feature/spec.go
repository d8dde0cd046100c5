package feature

import (
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/resolver"
	"github.com/tollgate/tollgate/milter"
)

// Spec describes a feature to the loader and the policy engine. A feature
// package exports one; cmd/tollgate lists them explicitly (no init()
// registration). Everything the policy knows about a feature comes from here.
type Spec interface {
	// Name is the feature's YAML section key and its module's name.
	Name() string
	// NewConfig returns a pointer to the section's struct, which the loader
	// decodes strictly (unknown keys are errors) with the types of this
	// package (Str, StrList, Pos, Duration, ByteSize) for lines.
	NewConfig() any
	// Compile checks the decoded section and returns it compiled, reporting
	// every problem through env.Report at its node's line; nil when the
	// section cannot be used.
	Compile(cfg any, env *CompileEnv) Section
	// Vocabulary is what the feature adds to the ACL language, each word
	// with the stages where it is valid.
	Vocabulary() Vocabulary
	// Order places the feature's module among the others.
	Order() Order
	// NewMetrics registers the feature's metrics; called once per process,
	// whatever the reloads, and handed to every Section.Module.
	NewMetrics(reg prometheus.Registerer) any
}

// Defaulter is implemented by a Spec whose section can be printed with its
// defaults filled in (tollgate check --print), like postconf. Optional: a
// Spec without it has its section printed as written.
type Defaulter interface {
	// Effective returns the decoded section cfg (what NewConfig returned)
	// as the feature uses it: every option the feature defaults filled in,
	// inline secrets replaced by Redacted (a secret file prints as its
	// path). The result marshals to YAML (the yaml tags and the
	// MarshalYAML methods of this package) that NewConfig decodes again to
	// the same effective section. cfg itself is left unchanged.
	Effective(cfg any) any
}

// Vocabulary is a feature's conditions, variables, controls and modifiers.
type Vocabulary struct {
	Conditions []Condition
	Variables  []Variable
	Controls   []Control
	Modifiers  []Modifier
}

// CompileEnv is what a section may use while it compiles.
type CompileEnv struct {
	Report Reporter
	// AuthServID is the top-level authserv_id: the name of this host in
	// Authentication-Results; "" when not set.
	AuthServID string
	// Domains compiles a domain list as the policy's lists are written
	// (!negation, +named_list, *.wildcards) and returns its matcher.
	Domains func(items StrList) func(domain string) bool
}

// Section is a compiled configuration section.
type Section interface {
	// ControlError says why a control of the feature cannot act with this
	// configuration (nil when it can): arc_sign needs a signing key.
	ControlError(name string) error
	// Module builds the feature's module for one runtime.
	Module(env *ModuleEnv) (milter.Module, error)
}

// ModuleEnv is what a module is built with.
type ModuleEnv struct {
	Log *slog.Logger
	// Metrics is what the Spec's NewMetrics returned.
	Metrics any
	// Shared returns the resource under key, opening it once: a resource
	// (a database connection) is kept across reloads while a runtime uses
	// it, and closed when none does. The key must cover every option the
	// resource was opened with, so that a changed option opens a new one.
	Shared func(key string, open func() (io.Closer, error)) (io.Closer, error)
	// Serving is true when the runtime serves the MTA (tollgate run); false
	// when it only judges messages (tollgate test), which must not open
	// listeners other programs connect to, such as the SRS socketmap the
	// running daemon already holds.
	Serving bool
	// DNS is the one resolver of the top-level dns: section, shared by every
	// feature and kept (with its cache) across reloads that do not change it.
	DNS resolver.Resolver
}

// Order constrains where a feature's module runs among the others (hooks of
// one stage run in module order, finalizers too).
type Order struct {
	// After names features whose module runs before this one when both are
	// configured (SRS reverses a recipient before BMI or DCC judge it).
	After []string
	// Last: after every other feature (ARC seals once every header change
	// is known), except those that name it in their After: they read its
	// results at end of message and must not have a finalizer that changes
	// headers.
	Last bool
}

// Eval is what a condition or variable sees: the stage, the session, the
// message (nil at connect and helo) and the current recipient (only at rcpt).
type Eval struct {
	Stage   milter.Stage
	Session *milter.Session
	Txn     *milter.Txn
	Rcpt    *milter.Recipient
}

// Condition is an ACL condition key a feature adds (dcc: accept, srs: [valid]).
type Condition struct {
	Key    string
	Stages milter.Stages
	// Example is a value of the key as a policy writes it (YAML), for the
	// documentation and the stage matrix test.
	Example string
	// NewValue returns a pointer for the key's YAML value to be decoded into.
	NewValue func() any
	// Compile turns the decoded value into a test; line is the key's line.
	// section is nil when the feature is not configured: then the loader
	// has already refused the rule.
	Compile func(value any, line int, section Section, r Reporter) Test
}

// Test is a compiled condition.
type Test interface {
	// Match reports whether the condition holds. deferred, when not nil, is
	// the decision when the condition cannot be decided (Exim defers the
	// ACL, whatever the verb; a warn rule is skipped).
	Match(e *Eval) (matched bool, deferred *milter.Decision)
}

// Variable is a $variable a feature adds.
type Variable struct {
	Name   string
	Stages milter.Stages
	// Value must not fail when the feature's facts are missing (the feature
	// is not configured, or did not run for this message): "" then.
	Value func(e *Eval) string
}

// Control is a control name a feature adds (control: [dcc_grey_off]).
// Setting it switches it on in Txn.Controls for the feature's module.
type Control struct {
	Name   string
	Stages milter.Stages
}

// Modifier is a rule key whose value is a template the policy expands when
// the rule fires, handing the result to Apply (bmi_optin).
type Modifier struct {
	Key     string
	Stages  milter.Stages
	Example string
	Apply   func(e *Eval, value string)
}
