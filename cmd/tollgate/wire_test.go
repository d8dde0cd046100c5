package main

import (
	enc "encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	gomilter "github.com/d--j/go-milter"
)

func milterPacket(code byte, data string) []byte {
	out := enc.BigEndian.AppendUint32(nil, uint32(len(data)+1))
	return append(append(out, code), data...)
}

var optneg = milterPacket('O', "\x00\x00\x00\x06\x00\x00\x01\xff\x00\x00\x00\x00")

// The five packet shapes that ended the whole daemon before the wire was
// owned (issue 12); each now closes its own connection only.
func TestDaemonSurvivesKillerPackets(t *testing.T) {
	d := startDaemon(t, denyConfig)
	conn := milterPacket('C', "h\x004\x9c\x40192.0.2.1\x00")
	for _, raw := range [][]byte{
		{0, 0, 0, 0},
		append(append([]byte{}, optneg...), 0, 0, 0, 0),
		append(append([]byte{}, optneg...), milterPacket('C', "host-without-nul")...),
		append(append([]byte{}, optneg...), milterPacket('C', "host-only\x00")...),
		append(append(append([]byte{}, optneg...), conn...), milterPacket('M', "<a@example.net>")...),
	} {
		c, err := net.Dial("unix", d.sock)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(raw)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, c)
		c.Close()
	}
	if !rcpt(t, d.sock, "blocked@example.org").StopProcessing() {
		t.Error("the daemon no longer judges mail after the bad packets")
	}
	if !d.waitMetric(t, `tollgate_wire_violations_total{reason="empty_packet"} 2`) ||
		!d.waitMetric(t, `tollgate_wire_violations_total{reason="bad_connect"} 2`) ||
		!d.waitMetric(t, `tollgate_wire_violations_total{reason="bad_mail"} 1`) {
		t.Error("violations not counted")
	}
}

// A SIGHUP (logrotate) during the SIGTERM drain must not cut the sessions in
// flight: only a second SIGTERM or SIGINT does.
func TestSIGHUPDuringDrainIsIgnored(t *testing.T) {
	d := startDaemon(t, "drain_timeout: 20s\n"+denyConfig)
	c := gomilter.NewClient("unix", d.sock, gomilter.WithAction(gomilter.AllClientSupportedActionMasks))
	s, err := c.Session(gomilter.NewMacroBag())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Conn("h", gomilter.FamilyInet, 1, "192.0.2.1")
	s.Helo("h")
	s.Mail("a@example.net", "")
	s.Rcpt("b@example.org", "")
	s.DataStart()

	d.cmd.Process.Signal(syscall.SIGTERM)
	d.waitLog(t, "shutting down")
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitLog(t, "SIGHUP ignored while draining")
	time.Sleep(1500 * time.Millisecond) // the old daemon cut the drain after about a second
	finishInFlight(t, d, s, "message in flight after SIGHUP")
	if strings.Contains(d.log.String(), "second signal") || strings.Contains(d.log.String(), "configuration reloaded") {
		t.Errorf("SIGHUP acted during the drain:\n%s", d.log.String())
	}
}

// With the descriptor limit lowered under the running daemon, connections
// beyond it make accept fail with EMFILE; the daemon backs off, keeps
// running, and serves again once connections close.
func TestDescriptorExhaustionKeepsServing(t *testing.T) {
	d := startDaemon(t, denyConfig)
	pid := d.cmd.Process.Pid
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	limit := syscall.Rlimit{Cur: uint64(len(fds) + 8), Max: uint64(len(fds) + 8)}
	if _, _, errno := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), syscall.RLIMIT_NOFILE,
		uintptr(unsafe.Pointer(&limit)), 0, 0, 0); errno != 0 {
		t.Fatalf("prlimit: %v", errno)
	}
	var conns []net.Conn
	for range 40 {
		c, err := net.Dial("unix", d.sock)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(optneg) // negotiated sessions stay open: they hold their descriptors
		conns = append(conns, c)
	}
	d.waitLog(t, "accepting MTA connections failed")
	for _, c := range conns {
		c.Close()
	}
	// Serving again: the first attempts may still meet the backlog.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if ok := tryRcpt(d.sock, "blocked@example.org"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not serving after the connections closed:\n%s", d.log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	select {
	case err := <-d.exited:
		d.exited <- err
		t.Fatalf("daemon exited: %v", err)
	default:
	}
	if n := strings.Count(d.log.String(), "accepting MTA connections failed"); n > 2 {
		t.Errorf("%d lines for one burst of accept errors", n)
	}
	_, body := d.get(t, "/metrics")
	if !strings.Contains(body, "tollgate_accept_errors_total ") || strings.Contains(body, "tollgate_accept_errors_total 0\n") {
		t.Error("accept errors not counted")
	}
}

// tryRcpt is rcpt without failing the test: whether the daemon rejected the
// recipient as configured.
func tryRcpt(sock, addr string) bool {
	c := gomilter.NewClient("unix", sock, gomilter.WithAction(gomilter.AllClientSupportedActionMasks),
		gomilter.WithReadTimeout(3*time.Second))
	s, err := c.Session(gomilter.NewMacroBag())
	if err != nil {
		return false
	}
	defer s.Close()
	if _, err := s.Conn("h", gomilter.FamilyInet, 1, "192.0.2.1"); err != nil {
		return false
	}
	if _, err := s.Helo("h"); err != nil {
		return false
	}
	if _, err := s.Mail("a@example.net", ""); err != nil {
		return false
	}
	act, err := s.Rcpt(addr, "")
	return err == nil && act.StopProcessing()
}

// A backend that is down makes one warning per kind of trouble and interval,
// not one per message; each message still has its facts in its summary line.
func TestBackendDownWarnsOnce(t *testing.T) {
	d := startDaemon(t, "dcc: {address: "+t.TempDir()+"/no-dccifd, timeout: 2s}\nacl:\n  data:\n    - accept: {}\n")
	const messages = 20
	for range messages {
		c := gomilter.NewClient("unix", d.sock, gomilter.WithAction(gomilter.AllClientSupportedActionMasks))
		s, err := c.Session(gomilter.NewMacroBag())
		if err != nil {
			t.Fatal(err)
		}
		s.Conn("h", gomilter.FamilyInet, 1, "192.0.2.1")
		s.Helo("h")
		s.Mail("a@example.net", "")
		s.Rcpt("b@example.org", "")
		s.DataStart()
		s.HeaderField("Subject", " x", nil)
		s.HeaderEnd()
		if _, act, err := s.BodyReadFrom(strings.NewReader("body\r\n")); err != nil || act.Type != gomilter.ActionAccept {
			t.Fatalf("%v %v", act, err)
		}
		s.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(d.log.String(), "msg=message ") < messages && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := strings.Count(d.log.String(), "DCC=defer:"); n != messages {
		t.Errorf("%d summary lines with the DCC outcome, want %d", n, messages)
	}
	if n := strings.Count(d.log.String(), "dccifd gave no answer"); n != 1 {
		t.Errorf("%d warnings for %d messages during one outage:\n%s", n, messages, d.log.String())
	}
}

// The limits: section reaches the daemon: a message over max_headers gets
// on_error (tempfail by default), and the next message is judged as usual.
func TestHeaderLimitFromConfig(t *testing.T) {
	d := startDaemon(t, `limits: {max_headers: 5}
acl:
  data:
    - deny: {name: spam, header: {name: Subject, regex: "(?i)spam"}}
    - accept: {}
`)
	send := func(headers int) *gomilter.Action {
		c := gomilter.NewClient("unix", d.sock, gomilter.WithAction(gomilter.AllClientSupportedActionMasks))
		s, err := c.Session(gomilter.NewMacroBag())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		s.Conn("h", gomilter.FamilyInet, 1, "192.0.2.1")
		s.Helo("h")
		s.Mail("a@example.net", "")
		s.Rcpt("b@example.org", "")
		s.DataStart()
		for i := range headers {
			s.HeaderField(fmt.Sprintf("X-H%d", i), " v", nil)
		}
		s.HeaderEnd()
		_, act, err := s.BodyReadFrom(strings.NewReader("body\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		return act
	}
	if act := send(10); act.SMTPCode != 451 {
		t.Errorf("10 headers over a limit of 5: %v", act)
	}
	if act := send(3); act.Type != gomilter.ActionAccept {
		t.Errorf("3 headers: %v", act)
	}
	if !d.waitMetric(t, `tollgate_limits_hit_total{limit="max_headers"} 1`) {
		t.Error("limit not counted")
	}
}
