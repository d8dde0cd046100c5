package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tollgate/tollgate/feature"
	"github.com/tollgate/tollgate/milter"
	"github.com/tollgate/tollgate/policy"
)

// printEffective writes the configuration as the daemon uses it, like
// "postconf": every top-level setting and the limits with their values,
// defaults filled in, then the feature sections with their defaults filled
// in by their spec's feature.Defaulter (inline secrets redacted, secret files
// as their paths), and identity, lists and acl as written, with their
// comments. The output is itself a configuration that loads to the same
// policy (but for inline secrets, which never leave the daemon).
func printEffective(p *policy.Policy, stdout, stderr io.Writer) int {
	data, err := os.ReadFile(p.File)
	if err != nil {
		fmt.Fprintln(stderr, "tollgate check:", err)
		return 1
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		fmt.Fprintln(stderr, "tollgate check:", err)
		return 1
	}
	written := &yaml.Node{Kind: yaml.MappingNode}
	if len(doc.Content) > 0 && doc.Content[0].Kind == yaml.MappingNode {
		written = doc.Content[0]
	}
	out := &yaml.Node{Kind: yaml.MappingNode}
	add := func(key string, value *yaml.Node) {
		out.Content = append(out.Content, scalar(key), value)
	}
	add("listen", scalar(p.Listen.String()))
	if p.Listen.Network == "unix" {
		mode := p.Socket.Mode
		if mode == 0 {
			mode = 0o660
		}
		socket := mapping("mode", fmt.Sprintf("%04o", uint32(mode)))
		socket.Style = yaml.FlowStyle
		socket.Content[1].Style = yaml.DoubleQuotedStyle
		for _, kv := range [][2]string{{"user", p.Socket.User}, {"group", p.Socket.Group}} {
			if kv[1] != "" {
				socket.Content = append(socket.Content, scalar(kv[0]), quoted(kv[1]))
			}
		}
		add("socket", socket)
	}
	add("metrics_listen", scalar(p.MetricsListen))
	logNode := mapping("format", p.LogFormat, "level", p.LogLevel)
	if p.Syslog != nil {
		logNode.Content = append(logNode.Content, scalar("syslog"), scalar(p.Syslog.FacilityName),
			scalar("syslog_address"), scalar(p.Syslog.Address))
	}
	logNode.Style = yaml.FlowStyle
	add("log", logNode)
	add("on_error", scalar(onErrorName(p.OnError.Verdict)))
	mode := "enforce"
	if p.Monitor.On {
		mode = "monitor"
	}
	add("mode", scalar(mode))
	if p.Monitor.Header != "" {
		add("monitor_header", scalar(p.Monitor.Header))
	}
	add("drain_timeout", scalar(durationText(p.DrainTimeout.String())))
	add("lists_check_interval", scalar(durationText(p.ListsCheckInterval.String())))
	limits := mapping(
		"max_connections", strconv.Itoa(p.Limits.MaxConnections),
		"idle_timeout", durationText(p.Limits.IdleTimeout.String()),
		"max_packet", byteSize(int64(p.Limits.MaxPacket)),
		"max_headers", strconv.Itoa(p.Limits.MaxHeaders),
		"max_header_bytes", byteSize(p.Limits.MaxHeaderBytes))
	add("limits", limits)
	if ar := p.AuthResultsConfig(); ar.AuthServID != "" {
		add("authserv_id", scalar(ar.AuthServID))
		add("add_authresults", scalar(strconv.FormatBool(ar.Add)))
		add("remove_forged_authresults", scalar(strconv.FormatBool(ar.RemoveForged)))
	}
	dns := p.DNSOptions()
	dnsNode := mapping("server", dns.Server)
	if dns.Server == "" {
		dnsNode = mapping("resolv_conf", dns.ResolvConf)
	}
	failureTTL, cacheSize := dns.FailureTTL, dns.CacheSize
	failureTTL, cacheSize = max(failureTTL, 0), max(cacheSize, 0) // negative: off, written 0
	dnsNode.Content = append(dnsNode.Content, scalar("timeout"), scalar(durationText(dns.Timeout.String())),
		scalar("failure_ttl"), scalar(durationText(failureTTL.String())), scalar("cache_size"), scalar(strconv.Itoa(cacheSize)))
	dnsNode.Style = yaml.FlowStyle
	add("dns", dnsNode)
	topLevel := map[string]bool{"listen": true, "socket": true, "metrics_listen": true, "log": true, "on_error": true, "drain_timeout": true, "limits": true,
		"lists_check_interval": true, "mode": true, "monitor_header": true, "authserv_id": true, "add_authresults": true, "remove_forged_authresults": true, "dns": true}
	defaulters := map[string]feature.Defaulter{}
	for _, spec := range features {
		if d, ok := spec.(feature.Defaulter); ok {
			defaulters[spec.Name()] = d
		}
	}
	for i := 0; i+1 < len(written.Content); i += 2 {
		key, value := written.Content[i], written.Content[i+1]
		if topLevel[key.Value] {
			continue
		}
		if d, ok := defaulters[key.Value]; ok && p.SectionConfig(key.Value) != nil {
			effective, err := effectiveSection(d, p.SectionConfig(key.Value))
			if err != nil {
				fmt.Fprintf(stderr, "tollgate check: %s: %v\n", key.Value, err)
				return 1
			}
			value = effective
		}
		out.Content = append(out.Content, key, value)
	}
	fmt.Fprintf(stdout, "# The effective configuration of %s (tollgate check --print):\n# defaults filled in, inline secrets replaced by %s; identity, lists and acl as written.\n", p.File, feature.Redacted)
	enc := yaml.NewEncoder(stdout)
	enc.SetIndent(2)
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(stderr, "tollgate check:", err)
		return 1
	}
	if err := enc.Close(); err != nil {
		fmt.Fprintln(stderr, "tollgate check:", err)
		return 1
	}
	return 0
}

// effectiveSection is a feature section as the feature uses it (its
// Defaulter), without the options that are not set.
func effectiveSection(d feature.Defaulter, cfg any) (*yaml.Node, error) {
	var n yaml.Node
	if err := n.Encode(d.Effective(cfg)); err != nil {
		return nil, err
	}
	pruneUnset(&n)
	return &n, nil
}

// pruneUnset drops the keys whose value is null (an option left out that
// has no default) and the mappings left empty by that, so that the printed
// section lists what is set; lists of scalars are written on one line.
func pruneUnset(n *yaml.Node) {
	if n.Kind == yaml.SequenceNode {
		scalars := true
		for _, c := range n.Content {
			pruneUnset(c)
			scalars = scalars && c.Kind == yaml.ScalarNode
		}
		if scalars { // a list of words on one line: headers: [from, to]
			n.Style = yaml.FlowStyle
		}
	}
	if n.Kind != yaml.MappingNode {
		return
	}
	kept := n.Content[:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		v := n.Content[i+1]
		pruneUnset(v)
		if v.ShortTag() == "!!null" || (v.Kind == yaml.MappingNode && len(v.Content) == 0) {
			continue
		}
		kept = append(kept, n.Content[i], v)
	}
	n.Content = kept
}

func scalar(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: v} }

func quoted(v string) *yaml.Node {
	n := scalar(v)
	n.Style = yaml.DoubleQuotedStyle
	return n
}

func mapping(kv ...string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode}
	for i := 0; i+1 < len(kv); i += 2 {
		n.Content = append(n.Content, scalar(kv[i]), scalar(kv[i+1]))
	}
	return n
}

// onErrorName is the on_error spelling of the verdict a failing check gives.
func onErrorName(v milter.Verdict) string {
	switch v {
	case milter.Continue, milter.Accept:
		return "accept"
	case milter.Reject:
		return "reject"
	}
	return "tempfail"
}

// byteSize writes a size as the configuration does: 256K, 1M.
func byteSize(n int64) string {
	switch {
	case n > 0 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "M"
	case n > 0 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "K"
	}
	return strconv.FormatInt(n, 10)
}

// durationText drops Go's zero units: "1m0s" -> "1m", "1h30m0s" -> "1h30m".
func durationText(s string) string {
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
