package policy

import (
	"path/filepath"
	"slices"
	"strings"
)

// Syslog is where the log goes besides standard error (log.syslog).
type Syslog struct {
	Facility     int    // the syslog facility's number (mail is 2)
	FacilityName string // as configured
	Address      string // the unix datagram socket of the local syslog daemon
}

// DefaultSyslogAddress is the local syslog daemon's socket on Linux.
const DefaultSyslogAddress = "/dev/log"

// syslogFacilities are the facilities a mail daemon may log to: mail, where
// Postfix, OpenDKIM and postsrsd write, and the local ones.
var syslogFacilities = map[string]int{"mail": 2, "daemon": 3, "user": 1,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23}

func compileSyslog(d *decoder, in *LogConfig) *Syslog {
	if in.Syslog.Value == "" {
		if in.SyslogAddress.Value != "" {
			d.errorf(in.SyslogAddress.Line, "log.syslog_address needs log.syslog: the facility, e.g. mail")
		}
		return nil
	}
	f, ok := syslogFacilities[in.Syslog.Value]
	if !ok {
		names := make([]string, 0, len(syslogFacilities))
		for n := range syslogFacilities {
			names = append(names, n)
		}
		slices.Sort(names)
		d.errorf(in.Syslog.Line, "log.syslog: %q is not a facility (use %s)", in.Syslog.Value, strings.Join(names, ", "))
		return nil
	}
	s := &Syslog{Facility: f, FacilityName: in.Syslog.Value, Address: DefaultSyslogAddress}
	if a := in.SyslogAddress.Value; a != "" {
		if !filepath.IsAbs(a) {
			d.errorf(in.SyslogAddress.Line, "log.syslog_address: %q is not an absolute path to the syslog socket (default /dev/log)", a)
			return nil
		}
		s.Address = a
	}
	return s
}
