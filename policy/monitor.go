package policy

import "github.com/tollgate/tollgate/milter"

// compileMonitor reads mode: and monitor_header: (README "Monitor mode").
func compileMonitor(d *decoder, cfg *Config, p *Policy) milter.Monitor {
	var m milter.Monitor
	switch v := cfg.Mode.Value; v {
	case "", "enforce":
	case "monitor":
		m.On = true
	default:
		d.errorf(cfg.Mode.Line, "mode: %q is not enforce or monitor", v)
	}
	h := cfg.MonitorHeader
	if h.Value == "" {
		return m
	}
	if milter.CheckHeaderField(h.Value, "") != nil {
		d.errorf(h.Line, "monitor_header: %q is not a header name (e.g. X-Tollgate-Would)", h.Value)
		return m
	}
	if !m.On {
		p.Warnings = append(p.Warnings, Error{File: d.file, Line: h.Line,
			Msg: "monitor_header is only added in monitor mode (mode: monitor); with mode: enforce it does nothing"})
		return m
	}
	m.Header = h.Value
	p.needs.Actions |= milter.ActAddHeader
	return m
}

// Monitor tells the pipeline whether this configuration runs in monitor mode.
func (rt *Runtime) Monitor() milter.Monitor { return rt.Policy.Monitor }
