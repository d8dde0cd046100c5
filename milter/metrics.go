package milter

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the core metrics; features register their own on the same
// registry. Label values come from closed sets only: stages, verdicts, module
// and rule names from the configuration, error kinds. Never an address.
type Metrics struct {
	SessionsActive  prometheus.Gauge
	Sessions        prometheus.Counter
	Messages        *prometheus.CounterVec   // decision
	Recipients      *prometheus.CounterVec   // result
	StageDuration   *prometheus.HistogramVec // stage
	ModuleDuration  *prometheus.HistogramVec // module, stage
	ModuleErrors    *prometheus.CounterVec   // module, kind
	PolicyDecisions *prometheus.CounterVec   // stage, rule, verb
	PolicyErrors    *prometheus.CounterVec   // stage
	// PolicyUnknownValues counts variables expanded where they had no value
	// (check refuses such uses; this is the run-time last line of defence).
	PolicyUnknownValues *prometheus.CounterVec // stage
	MessageBytes        prometheus.Histogram
	ProtocolWarnings    prometheus.Counter
	MTAErrors           *prometheus.CounterVec // operation
	ConfigReloads       *prometheus.CounterVec // result
	ConfigLastReload    prometheus.Gauge
	ConfigLastOK        prometheus.Gauge
	ProxySessions       *prometheus.CounterVec // kind
	UntrustedLogins     prometheus.Counter
	ForgedAuthResults   prometheus.Counter
	// BodyCanonicalizations counts body canonicalization passes: at most
	// one per canonicalization and message, however many modules share it.
	BodyCanonicalizations *prometheus.CounterVec // canon: simple, relaxed
	// ListReloads counts the policy rebuilt because a list or lookup file
	// changed (not SIGHUP): ok, or error (the previous contents stay).
	ListReloads *prometheus.CounterVec // result
	// LookupErrors counts database lookups that failed (a corrupt file):
	// the key is taken as absent.
	LookupErrors *prometheus.CounterVec // type: cdb, lmdb

	// Monitor mode: decisions made but not carried out.
	MonitorDecisions *prometheus.CounterVec // stage, decision
	MonitorMode      prometheus.Gauge

	stageObservers [stageCount]prometheus.Observer // StageDuration per stage, looked up once

	// The wire and its limits.
	WireViolations *prometheus.CounterVec // reason
	LimitsHit      *prometheus.CounterVec // limit
	AcceptErrors   prometheus.Counter
	Panics         prometheus.Counter
}

func (m *Metrics) stage(s Stage) prometheus.Observer { return m.stageObservers[s] }

// NewMetrics creates the core metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	latency := []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	m := &Metrics{
		SessionsActive: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "tollgate", Name: "sessions_active",
			Help: "Milter sessions (one per SMTP connection) open now."}),
		Sessions: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "tollgate", Name: "sessions_total",
			Help: "Milter sessions opened."}),
		Messages: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Name: "messages_total",
			Help: "Messages by final decision (accept, reject, tempfail, discard, drop, aborted)."}, []string{"decision"}),
		Recipients: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Name: "recipients_total",
			Help: "Recipients by rcpt-stage result (accept, reject, tempfail, discard)."}, []string{"result"}),
		StageDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "tollgate", Name: "stage_duration_seconds",
			Help: "Time spent in tollgate per milter stage (modules and policy).", Buckets: latency}, []string{"stage"}),
		ModuleDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "tollgate", Name: "module_duration_seconds",
			Help: "Time spent in a module's hook per stage.", Buckets: latency}, []string{"module", "stage"}),
		ModuleErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Name: "module_errors_total",
			Help: "Module hook failures by kind (error, panic)."}, []string{"module", "kind"}),
		PolicyDecisions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Name: "policy_decisions_total",
			Help: "ACL rules that fired, by stage, rule name and verb."}, []string{"stage", "rule", "verb"}),
		PolicyErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Name: "policy_errors_total",
			Help: "Policy evaluations that failed (the on_error decision was used)."}, []string{"stage"}),
		PolicyUnknownValues: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Name: "policy_unknown_values_total",
			Help: "Variables expanded to an empty string because they had no value where the policy used them."}, []string{"stage"}),
		MessageBytes: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "tollgate", Name: "message_size_bytes",
			Help: "Size of messages that reached end of message.", Buckets: prometheus.ExponentialBuckets(1024, 4, 10)}),
		ProtocolWarnings: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "tollgate", Name: "milter_protocol_warnings_total",
			Help: "Malformed or unexpected milter packets and broken MTA connections."}),
		MTAErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Name: "mta_errors_total",
			Help: "Failures while sending changes or replies to the MTA."}, []string{"operation"}),
		ConfigReloads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Name: "config_reloads_total",
			Help: "Configuration reloads by result: success, failure (refused, the previous configuration stays in use)."}, []string{"result"}),
		ConfigLastReload: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "tollgate", Name: "config_last_reload_timestamp_seconds",
			Help: "When the configuration in use was loaded: the start or the last successful reload (a refused reload leaves it alone; see config_reloads_total{result=\"failure\"})."}),
		ProxySessions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Name: "proxy_sessions_total",
			Help: "Sessions on an XCLIENT proxy path: handoff (the proxy itself, before XCLIENT; never judged), proxied (a real client named by the proxy), without_xclient (the proxy sent mail for itself)."}, []string{"kind"}),
		ListReloads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Name: "list_reloads_total",
			Help: "Configurations rebuilt because a file of a list or lookup changed: ok, or error (refused; the previous contents stay in use)."}, []string{"result"}),
		LookupErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Name: "lookup_errors_total",
			Help: "Key lookups in a cdb or LMDB database that failed (the key was taken as absent)."}, []string{"type"}),
		UntrustedLogins: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "tollgate", Name: "xclient_untrusted_logins_total",
			Help: "XCLIENT logins that arrived off the proxy path and were not taken as authentication."}),
		ForgedAuthResults: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "tollgate", Name: "forged_authresults_removed_total",
			Help: "Incoming Authentication-Results header fields that claimed our authserv-id, removed."}),
		BodyCanonicalizations: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Name: "body_canonicalizations_total",
			Help: "Message bodies canonicalized and hashed, by canonicalization (simple, relaxed): one pass per message and canonicalization, shared by DKIM and ARC verification, DKIM signing and the ARC seal."}, []string{"canon"}),
		ConfigLastOK: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "tollgate", Name: "config_last_reload_successful",
			Help: "1 if the last configuration (re)load succeeded, 0 if the old configuration is still in use."}),
	}
	reg.MustRegister(m.SessionsActive, m.Sessions, m.Messages, m.Recipients, m.StageDuration, m.ModuleDuration,
		m.ModuleErrors, m.PolicyDecisions, m.PolicyErrors, m.PolicyUnknownValues, m.MessageBytes, m.ProtocolWarnings, m.MTAErrors,
		m.ConfigReloads, m.ConfigLastReload, m.ConfigLastOK, m.ProxySessions, m.UntrustedLogins, m.ForgedAuthResults, m.ListReloads, m.LookupErrors,
		m.BodyCanonicalizations)
	m.registerWire(reg)
	m.registerMonitor(reg)
	for _, k := range []string{"handoff", "proxied", "without_xclient"} {
		m.ProxySessions.WithLabelValues(k)
	}
	for s := Stage(0); s < stageCount; s++ {
		m.stageObservers[s] = m.StageDuration.WithLabelValues(s.String())
	}
	for _, d := range []string{"accept", "reject", "tempfail", "discard", "drop", "aborted"} {
		m.Messages.WithLabelValues(d)
	}
	for _, r := range []string{"success", "failure"} {
		m.ConfigReloads.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "error"} {
		m.ListReloads.WithLabelValues(r)
	}
	for _, c := range []string{"simple", "relaxed"} {
		m.BodyCanonicalizations.WithLabelValues(c)
	}
	for _, k := range []string{"cdb", "lmdb"} {
		m.LookupErrors.WithLabelValues(k)
	}
	for _, s := range PolicyStages {
		m.PolicyUnknownValues.WithLabelValues(s.String())
	}
	return m
}

func (m *Metrics) registerWire(reg prometheus.Registerer) {
	m.WireViolations = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Name: "wire_violations_total",
		Help: "MTA connections closed because a packet was malformed, by reason."}, []string{"reason"})
	m.LimitsHit = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Name: "limits_hit_total",
		Help: "Times a limit was reached (max_connections, idle_timeout, max_packet: connection refused or closed; max_headers, max_header_bytes: message got on_error)."}, []string{"limit"})
	m.AcceptErrors = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "tollgate", Name: "accept_errors_total",
		Help: "Temporary failures to accept an MTA connection (out of file descriptors and the like), each retried after a back-off."})
	m.Panics = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "tollgate", Name: "connection_panics_total",
		Help: "Panics recovered while serving an MTA connection; each closed that connection only."})
	reg.MustRegister(m.WireViolations, m.LimitsHit, m.AcceptErrors, m.Panics)
	for _, r := range wireViolations {
		m.WireViolations.WithLabelValues(r)
	}
	for _, l := range limitNames {
		m.LimitsHit.WithLabelValues(l)
	}
}

func (m *Metrics) registerMonitor(reg prometheus.Registerer) {
	m.MonitorDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Name: "monitor_decisions_total",
		Help: "Decisions monitor mode did not carry out (the MTA was told to go on), by stage and decision (reject, tempfail, discard, drop, quarantine)."}, []string{"stage", "decision"})
	m.MonitorMode = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "tollgate", Name: "monitor_mode",
		Help: "1 when the configuration in use runs in monitor mode (decisions logged and counted, not carried out), 0 when it enforces."})
	reg.MustRegister(m.MonitorDecisions, m.MonitorMode)
	for _, s := range PolicyStages {
		for _, d := range monitorDecisions {
			m.MonitorDecisions.WithLabelValues(s.String(), d)
		}
	}
}
