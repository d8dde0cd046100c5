package policy

import (
	"strings"
	"testing"
)

func TestSyslogConfig(t *testing.T) {
	if p := mustParse(t, "log: {format: json}\n"); p.Syslog != nil {
		t.Errorf("syslog without log.syslog: %+v", p.Syslog)
	}
	p := mustParse(t, "log: {syslog: mail}\n")
	if p.Syslog == nil || *p.Syslog != (Syslog{Facility: 2, FacilityName: "mail", Address: "/dev/log"}) {
		t.Errorf("log.syslog: mail gave %+v", p.Syslog)
	}
	p = mustParse(t, "log:\n  syslog: local3\n  syslog_address: /run/systemd/journal/dev-log\n")
	if p.Syslog == nil || p.Syslog.Facility != 19 || p.Syslog.Address != "/run/systemd/journal/dev-log" {
		t.Errorf("local3 gave %+v", p.Syslog)
	}
}

func TestSyslogErrorsHaveLines(t *testing.T) {
	for yml, want := range map[string]string{
		"log:\n  level: info\n  syslog: mial\n":                      `bad.yaml:3: log.syslog: "mial" is not a facility (use daemon, local0,`,
		"log:\n  syslog: mail\n  syslog_address: dev/log\n":          `bad.yaml:3: log.syslog_address: "dev/log" is not an absolute path`,
		"log:\n  syslog_address: /dev/log\n":                         `bad.yaml:2: log.syslog_address needs log.syslog`,
		"log:\n  syslog: {facility: mail}\n":                         `bad.yaml:2:`,
		"log:\n  syslog: mail\n  syslog_tag: tg\n":                   `bad.yaml:3: unknown key "syslog_tag"`,
		"log:\n  syslog: kern\n":                                     `bad.yaml:2: log.syslog: "kern" is not a facility`,
		"log:\n  syslog: mail\n  syslog_address: /dev/log\n  x: 1\n": `bad.yaml:4: unknown key "x"`,
	} {
		_, err := Parse("bad.yaml", []byte(yml))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %s", yml, err, want)
		}
	}
}
