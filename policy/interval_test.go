package policy

import (
	"strings"
	"testing"
	"time"
)

func TestListsCheckInterval(t *testing.T) {
	for src, want := range map[string]time.Duration{"": DefaultListsCheckInterval, "lists_check_interval: 0s\n": 0, "lists_check_interval: 1m\n": time.Minute} {
		p := mustParse(t, src+"acl: {rcpt: [{accept: {}}]}\n")
		if p.ListsCheckInterval != want {
			t.Errorf("%q: %v, want %v", src, p.ListsCheckInterval, want)
		}
	}
	for src, want := range map[string]string{
		"lists_check_interval: 1ms\n":  "test.yaml:1: lists_check_interval: 1ms is too short (at least 10ms; 0s turns the check off)",
		"lists_check_interval: -1s\n":  `test.yaml:1: lists_check_interval: duration "-1s" must not be negative`,
		"lists_check_interval: soon\n": `test.yaml:1: lists_check_interval: "soon" is not a duration`,
	} {
		_, err := Parse("test.yaml", []byte(src+"acl: {rcpt: [{accept: {}}]}\n"), testFeatures...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %s", src, err, want)
		}
	}
}
