//go:build e2e

package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/tollgate/tollgate/internal/mta"

	"github.com/tollgate/tollgate/dcc/dcctest"
)

// The DCC load test (issue 6): 200 concurrent milter sessions streamed
// through the real daemon to a dccifd stand-in, each with one message of
// 1 MiB. The daemon's peak RSS must stay under a measured bound, and must not
// grow with the message size: the same sessions carrying the same volume as
// ten 100 KiB messages each are the reference (see TestDCCLoadMemory).
// docs/dcc-load.md has the measurements behind the bounds.
const (
	loadSessions = 200
	// loadChunk is the largest body chunk at the default 64 KB negotiation
	// (go-milter's DataSize64K, what Postfix sends).
	loadChunk = 64<<10 - 1
	// loadRunTimeout bounds one load run; past it the daemon is killed,
	// which ends every session. It bounds, it does not measure: a run takes
	// about 10 s, and the whole suite beside it on two cores once stalled
	// one for 17 s.
	loadRunTimeout = 60 * time.Second
)

// Bounds on the daemon's peak RSS (VmHWM over its whole life, startup
// included), from docs/dcc-load.md: the largest peak measured (over 56 runs
// of the 1 MiB load per build, quiet and with both cores busy), times 1.5,
// rounded up. The race detector's shadow memory inflates the race build's
// figures; the bounds apply to both loads.
//
// The growth bounds (1 MiB peak / 100 KiB peak) are the largest ratio
// measured with margin: 1.11 under -race, 2.10 without. Not 1 in the plain
// build because the cost per session only saturates when dccifd falls
// behind: the chunks of a 100 KiB message fit in the kernel's socket buffer
// and never wait in the daemon, while each 1 MiB session keeps one 64 KiB
// milter packet and its 16 KiB dccifd write buffer in use. A daemon that
// holds the message (tried: the dcc module keeping every chunk) measures
// 316 MiB and 5.3x plain, 850 MiB and 3.3x under -race.
const (
	loadPeakBound       = 100 << 20
	loadPeakBoundRace   = 300 << 20
	loadGrowthMax       = 3.0
	loadGrowthMaxRace   = 1.5
	loadSmallSize       = 100 << 10
	loadSmallPerSession = 10 // as many bytes in all as one 1 MiB message a session
	loadLargeSize       = 1 << 20
)

// loadHeaders are the message's header fields, values as the MTA sends them
// when the leading space is negotiated (tollgate asks for it).
var loadHeaders = [][2]string{
	{"From", " Alice <alice@example.net>"},
	{"To", " Bob <bob@example.org>"},
	{"Subject", " DCC load test"},
	{"Date", " Mon, 2 Mar 2026 10:00:00 +0000"},
	{"Message-ID", " <load@example.net>"},
	{"MIME-Version", " 1.0"},
	{"Content-Type", " text/plain; charset=us-ascii"},
}

// loadLine is the body's repeated line: a 1 MiB body is streamed from it
// without ever existing in memory.
const loadLine = "The quick brown fox jumps over the lazy dog; tollgate streams it to dccifd.\r\n"

// loadBody yields a body of the given size as chunks of at most loadChunk
// bytes, all slices of one shared read-only buffer (loadLine repeated), so
// the body continues the line pattern across chunks.
type loadBody struct {
	buf []byte
}

func newLoadBody() *loadBody {
	n := loadChunk + len(loadLine)
	return &loadBody{buf: bytes.Repeat([]byte(loadLine), n/len(loadLine)+1)}
}

func (b *loadBody) each(size int, f func([]byte) error) error {
	for off := 0; off < size; {
		n := min(loadChunk, size-off)
		start := off % len(loadLine)
		if err := f(b.buf[start : start+n]); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// loadHeaderBytes is what dccifd receives for the headers: "Name:" value CRLF each.
func loadHeaderBytes() []byte {
	var b bytes.Buffer
	for _, h := range loadHeaders {
		b.WriteString(h[0] + ":" + h[1] + "\r\n")
	}
	return b.Bytes()
}

// vmHWM returns the peak resident set size of a process in bytes.
func vmHWM(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM in /proc/" + strconv.Itoa(pid) + "/status")
}

type loadResult struct {
	idle, peak int64 // VmHWM after startup and after the run, bytes
	elapsed    time.Duration
}

func TestDCCLoadMemory(t *testing.T) {
	// The bounds were measured with the Go defaults; the environment must
	// not change the daemon's garbage collector.
	t.Setenv("GOGC", "100")
	t.Setenv("GOMEMLIMIT", "off")

	body := newLoadBody()
	var small, large loadResult
	t.Run("100KiB", func(t *testing.T) { small = runDCCLoad(t, body, loadSmallSize, loadSmallPerSession) })
	t.Run("1MiB", func(t *testing.T) { large = runDCCLoad(t, body, loadLargeSize, 1) })
	if t.Failed() {
		return
	}
	bound, growth := int64(loadPeakBound), loadGrowthMax
	if raceEnabled {
		bound, growth = loadPeakBoundRace, loadGrowthMaxRace
	}
	mib := func(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
	t.Logf("race=%v: daemon peak RSS %s with 100 KiB messages, %s with 1 MiB: growth %.2fx (bounds %s, %.1fx)",
		raceEnabled, mib(small.peak), mib(large.peak), float64(large.peak)/float64(small.peak), mib(bound), growth)
	for _, r := range []struct {
		what string
		peak int64
	}{{"100 KiB", small.peak}, {"1 MiB", large.peak}} {
		if r.peak > bound {
			t.Errorf("daemon peak RSS %s with %d concurrent sessions of %s messages, bound %s", mib(r.peak), loadSessions, r.what, mib(bound))
		}
	}
	if float64(large.peak) > growth*float64(small.peak) {
		t.Errorf("daemon memory grows with the message size: peak RSS %s with 1 MiB messages, %s with 100 KiB (more than %.1fx)",
			mib(large.peak), mib(small.peak), growth)
	}
}

// runDCCLoad starts a dccifd stand-in and a daemon, runs loadSessions
// concurrent milter sessions each sending perSession messages of size bytes
// (headers, empty line and body), checks every verdict and every request
// dccifd received, and returns the daemon's peak RSS.
func runDCCLoad(t *testing.T, body *loadBody, size, perSession int) loadResult {
	hdr := loadHeaderBytes()
	bodySize := size - len(hdr) - 2
	want := sha256.New()
	want.Write(hdr)
	want.Write([]byte("\r\n"))
	body.each(bodySize, func(c []byte) error { want.Write(c); return nil })
	var wantSum [32]byte
	want.Sum(wantSum[:0])

	// RecordLimit -1: the stand-in keeps counts and hashes, not 200 copies.
	dccd := dcctest.New(t, dcctest.Config{RecordLimit: -1})
	d := startDaemon(t, `
dcc: {address: `+dccd.DCCAddress()+`, direct_add_header: true}
acl:
  data:
    - accept: {name: dcc-accepted, dcc: "*"}
    - deny:   {name: dcc-not-accepted, message: "550 5.7.1 DCC did not accept"}
`)
	pid := d.cmd.Process.Pid
	var res loadResult
	var err error
	if res.idle, err = vmHWM(pid); err != nil {
		t.Fatal(err)
	}

	var ready, done sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, loadSessions)
	ready.Add(loadSessions)
	done.Add(loadSessions)
	for i := range loadSessions {
		go func() {
			defer done.Done()
			if err := loadSession(d.sock, i, perSession, body, bodySize, &ready, start); err != nil {
				errs <- fmt.Errorf("session %d: %w", i, err)
			}
		}()
	}
	// Every session is at the end of its first message's headers before any
	// body moves, so all the sessions stream at once.
	waitTimeout := func(wg *sync.WaitGroup, d time.Duration) bool {
		ch := make(chan struct{})
		go func() { wg.Wait(); close(ch) }()
		select {
		case <-ch:
			return true
		case <-time.After(d):
			return false
		}
	}
	deadline := time.Now().Add(loadRunTimeout)
	killed := false
	kill := func() {
		// Ends every session at once: their reads and writes fail.
		killed = true
		d.cmd.Process.Kill()
	}
	if !waitTimeout(&ready, time.Until(deadline)) {
		kill()
	}
	began := time.Now()
	close(start)
	if !killed && !waitTimeout(&done, time.Until(deadline)) {
		kill()
	}
	done.Wait()
	res.elapsed = time.Since(began)
	if killed {
		t.Fatalf("load run not finished in %v: daemon killed", loadRunTimeout)
	}
	if res.peak, err = vmHWM(pid); err != nil {
		t.Fatal(err)
	}
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 10 {
			t.Error(err)
		}
	}
	if n > 0 {
		t.Fatalf("%d of %d sessions failed", n, loadSessions)
	}

	total := loadSessions * perSession
	reqs := dccd.WaitRequests(total, 10*time.Second)
	if len(reqs) != total {
		t.Fatalf("dccifd received %d requests, want %d", len(reqs), total)
	}
	bad := 0
	for i, r := range reqs {
		if r.Err != nil || !r.HalfClosed || !r.Replied || r.MessageLen != int64(size) || r.MessageSHA256 != wantSum ||
			len(r.Rcpts) != 1 || r.Sender != "alice@example.net" || !r.HasOption("header") {
			if bad++; bad <= 5 {
				t.Errorf("dccifd request %d: err %v, half-closed %v, replied %v, message %d bytes (want %d), sha256 match %v, sender %q, rcpts %v, options %q",
					i, r.Err, r.HalfClosed, r.Replied, r.MessageLen, size, r.MessageSHA256 == wantSum, r.Sender, r.Rcpts, r.OptionsLine)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d dccifd requests wrong", bad, total)
	}
	if !d.waitMetric(t, fmt.Sprintf(`tollgate_dcc_requests_total{result="accept"} %d`, total)) {
		_, body := d.get(t, "/metrics")
		t.Errorf("metrics:\n%s", grepLines(body, "tollgate_dcc"))
	}
	t.Logf("%d sessions x %d messages x %d bytes in %v: daemon VmHWM %.1f MiB idle, %.1f MiB peak",
		loadSessions, perSession, size, res.elapsed.Round(time.Millisecond), float64(res.idle)/(1<<20), float64(res.peak)/(1<<20))
	return res
}

// loadSession sends messages in one milter session: for each, envelope
// and headers, then the body in loadChunk chunks (the first body only once
// every session is ready), and checks the verdict and the X-DCC header.
func loadSession(sock string, i, messages int, body *loadBody, bodySize int, ready *sync.WaitGroup, start <-chan struct{}) (err error) {
	readied := false
	defer func() {
		if !readied {
			ready.Done()
		}
	}()
	c := mta.NewClient("unix", sock,
		gomilter.WithReadTimeout(loadRunTimeout), gomilter.WithWriteTimeout(loadRunTimeout))
	macros := gomilter.NewMacroBag()
	s, err := c.Session(macros)
	if err != nil {
		return err
	}
	defer s.Close()
	if !s.ProtocolOption(gomilter.OptHeaderLeadingSpace) {
		return errors.New("the daemon did not negotiate the header leading space")
	}
	cont := func(step string, act *gomilter.Action, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", step, err)
		}
		if act.Type != gomilter.ActionContinue {
			return fmt.Errorf("%s: %v", step, act)
		}
		return nil
	}
	act, err := s.Conn("client.example.net", gomilter.FamilyInet, uint16(40000+i), fmt.Sprintf("192.0.2.%d", 1+i%250))
	if err := cont("connect", act, err); err != nil {
		return err
	}
	act, err = s.Helo("client.example.net")
	if err := cont("helo", act, err); err != nil {
		return err
	}
	for m := range messages {
		macros.Set(gomilter.MacroQueueId, fmt.Sprintf("LOAD%03d%02d", i, m))
		act, err = s.Mail("alice@example.net", "")
		if err := cont("mail", act, err); err != nil {
			return err
		}
		act, err = s.Rcpt("bob@example.org", "")
		if err := cont("rcpt", act, err); err != nil {
			return err
		}
		act, err = s.DataStart()
		if err := cont("data", act, err); err != nil {
			return err
		}
		for _, h := range loadHeaders {
			act, err = s.HeaderField(h[0], h[1], nil)
			if err := cont("header "+h[0], act, err); err != nil {
				return err
			}
		}
		act, err = s.HeaderEnd()
		if err := cont("end of headers", act, err); err != nil {
			return err
		}
		if !readied {
			readied = true
			ready.Done()
			<-start
		}
		if err := body.each(bodySize, func(chunk []byte) error {
			act, err := s.BodyChunk(chunk)
			return cont("body", act, err)
		}); err != nil {
			return err
		}
		mods, act, err := s.End()
		if err != nil {
			return fmt.Errorf("end of message: %w", err)
		}
		if act.Type != gomilter.ActionAccept {
			return fmt.Errorf("end of message: %v, want accept", act)
		}
		if !hasDCCHeader(mods) {
			return fmt.Errorf("no X-DCC header added: %v", mods)
		}
	}
	return nil
}

func hasDCCHeader(mods []gomilter.ModifyAction) bool {
	name, value, _ := strings.Cut(dcctest.DefaultHeader, ":")
	for _, m := range mods {
		// Appended at the bottom: an insert at an index past the last header.
		if (m.Type == gomilter.ActionAddHeader || m.Type == gomilter.ActionInsertHeader) &&
			m.HeaderName == name && strings.TrimSpace(m.HeaderValue) == strings.TrimSpace(value) {
			return true
		}
	}
	return false
}
