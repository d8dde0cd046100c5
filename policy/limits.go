package policy

import (
	"fmt"
	"strconv"
	"time"

	"github.com/tollgate/tollgate/milter"
)

// compileLimits reads the limits: section; a key left out keeps its default.
func compileLimits(d *decoder, in *LimitsConfig, p *Policy) milter.Limits {
	l := milter.DefaultLimits()
	count := func(s Str, key string, into *int) {
		if s.Value == "" {
			return
		}
		n, err := strconv.Atoi(s.Value)
		if err != nil || n < 1 {
			d.errorf(s.Line, "limits.%s: %q is not a whole number of at least 1", key, s.Value)
			return
		}
		*into = n
	}
	count(in.MaxConnections, "max_connections", &l.MaxConnections)
	count(in.MaxHeaders, "max_headers", &l.MaxHeaders)
	if s := in.IdleTimeout; s.Value != "" {
		t, err := parseDuration(s.Value)
		switch {
		case err != nil:
			d.errorf(s.Line, "limits.idle_timeout: %v", err)
		case t < milter.MinIdleTimeout:
			d.errorf(s.Line, "limits.idle_timeout: %s is shorter than %s", s.Value, milter.MinIdleTimeout)
		default:
			l.IdleTimeout = t
			if t <= 300*time.Second {
				p.Warnings = append(p.Warnings, Error{File: d.file, Line: s.Line, Msg: fmt.Sprintf(
					"limits.idle_timeout: %s is not above Postfix's milter_content_timeout (300s): sessions of slow but legitimate SMTP clients will be cut", s.Value)})
			}
		}
	}
	if s := in.MaxPacket; s.Value != "" {
		n, err := parseByteSize(s.Value)
		switch {
		case err != nil:
			d.errorf(s.Line, "limits.max_packet: %v", err)
		case n < milter.MinMaxPacket || n > milter.MaxMaxPacket:
			d.errorf(s.Line, "limits.max_packet: %s is outside %d (64K, the smallest body chunk and its command byte) to %d (1M + 1)",
				s.Value, milter.MinMaxPacket, milter.MaxMaxPacket)
		default:
			l.MaxPacket = int(n)
		}
	}
	if s := in.MaxHeaderBytes; s.Value != "" {
		n, err := parseByteSize(s.Value)
		switch {
		case err != nil:
			d.errorf(s.Line, "limits.max_header_bytes: %v", err)
		case n < 1024:
			d.errorf(s.Line, "limits.max_header_bytes: %s is below 1K", s.Value)
		default:
			l.MaxHeaderBytes = n
		}
	}
	return l
}
