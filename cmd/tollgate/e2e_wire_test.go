//go:build e2e

package main

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/e2e"
)

// Garbage sent to the milter socket by another process (here: the test, a
// local user able to reach the inet: listener) closes that connection only:
// the real Postfix in front keeps getting the policy's answers, not the 451
// of milter_default_action for every session.
func TestPostfixAfterGarbagePackets(t *testing.T) {
	e2e.RequireProgram(t, "/usr/sbin/postfix", "postfix")
	e2e.RequireProgram(t, "/usr/bin/swaks", "swaks")
	milterAddr, d := startTollgateInet(t, e2eConfig)
	pf := e2e.StartPostfix(t, e2e.PostfixOptions{Milter: "inet:" + milterAddr})
	conn := milterPacket('C', "h\x004\x9c\x40192.0.2.1\x00")
	withOptneg := func(parts ...[]byte) []byte {
		out := append([]byte{}, optneg...)
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	for _, raw := range [][]byte{
		{0, 0, 0, 0},
		withOptneg([]byte{0, 0, 0, 0}),
		withOptneg(milterPacket('C', "host-without-nul")),
		withOptneg(milterPacket('C', "host-only\x00")),
		withOptneg(conn, milterPacket('M', "<a@example.net>")),
		withOptneg(conn, milterPacket('M', "<a@example.net>\x00"), milterPacket('R', "<b@example.org>")),
		withOptneg([]byte{0x20, 0, 0, 0, 'B'}), // a 512 MiB announcement
	} {
		c, err := net.Dial("tcp", milterAddr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(raw)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, c)
		c.Close()
	}
	for i := range 3 {
		res := pf.Swaks(t, "--from", "alice@example.net", "--to", "bob@example.org", "--header", "Subject: after garbage", "--body", "hi")
		if res.ExitCode != 0 || strings.Contains(res.Output, "451") {
			t.Fatalf("message %d: swaks exit %d:\n%s", i, res.ExitCode, res.Output)
		}
	}
	res := pf.Swaks(t, "--from", "alice@example.net", "--to", "someone@example.com")
	if !strings.Contains(res.Output, "550 5.7.1 relay not permitted") {
		t.Errorf("the documented refusal did not come through:\n%s", res.Output)
	}
	pf.WaitMessages(t, 3, 30*time.Second)
	if !d.waitMetric(t, `tollgate_wire_violations_total{reason="empty_packet"} 2`) ||
		!d.waitMetric(t, `tollgate_limits_hit_total{limit="max_packet"} 1`) {
		t.Error("violations not counted")
	}
	if strings.Contains(pf.Log(), "Service unavailable") {
		t.Errorf("Postfix fell back to milter_default_action:\n%s", pf.Log())
	}
}
