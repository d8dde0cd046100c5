package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100
// on every Linux architecture Go supports.
const clockTicks = 100

// child is a milter the bench started and measures.
type child struct {
	argv    []string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	logFile *os.File
	metrics string // host:port of its /metrics, or ""
}

func startChild(argv []string, logPath string) (*child, error) {
	c := &child{argv: argv, exited: make(chan struct{})}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = childAttr()
	if logPath != "" {
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		c.logFile = f
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		if c.logFile != nil {
			c.logFile.Close()
		}
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	c.cmd = cmd
	go func() {
		c.waitErr = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) running() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// waitReady waits until the child's socket accepts a connection.
func (c *child) waitReady(ctx context.Context, network, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout(network, addr, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-c.exited:
			return fmt.Errorf("%s exited before its socket accepted (%v)", c.argv[0], c.waitErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s %s does not accept after %s: %v", c.argv[0], network, addr, timeout, err)
		}
	}
}

// stop sends SIGTERM and waits; after 5 s it kills the child.
func (c *child) stop() error {
	defer func() {
		if c.logFile != nil {
			c.logFile.Close()
		}
	}()
	if !c.running() {
		return nil
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
		return nil
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
		return fmt.Errorf("%s did not stop within 5s of SIGTERM; killed", c.argv[0])
	}
}

// procSnapshot is what the bench reads about a child around a measurement.
type procSnapshot struct {
	cpu     float64 // seconds of user and system time so far
	alloc   float64 // bytes allocated so far (from /metrics; 0 without)
	mallocs float64
	scraped bool
}

// cpuSeconds reads utime+stime of a process from /proc/PID/stat.
func cpuSeconds(pid int) (float64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStatCPU(data)
}

// parseStatCPU reads fields 14 (utime) and 15 (stime) of /proc/PID/stat;
// the command name (field 2) may contain spaces and parentheses.
func parseStatCPU(data []byte) (float64, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("proc stat: no command field")
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, errors.New("proc stat: too few fields")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("proc stat: bad utime/stime")
	}
	return float64(ut+st) / clockTicks, nil
}

// peakRSS reads VmHWM (the peak resident set) of a process, in bytes.
func peakRSS(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return parseStatusHWM(f)
}

func parseStatusHWM(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) < 1 {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, err
			}
			return kb * 1024, nil
		}
	}
	return 0, errors.New("proc status: no VmHWM")
}

// resetPeakRSS sets VmHWM back to the current RSS (Linux clear_refs "5"), so
// that each measurement reports its own peak. It fails quietly on kernels
// without it; the peak is then the child's peak since it started.
func resetPeakRSS(pid int) bool {
	return os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0) == nil
}

// scrapeGoMem reads go_memstats_alloc_bytes_total and go_memstats_mallocs_total
// from a Prometheus text endpoint at http://addr/metrics.
func scrapeGoMem(addr string) (alloc, mallocs float64, err error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("metrics %s: %s", addr, resp.Status)
	}
	return parseGoMem(resp.Body)
}

func parseGoMem(r io.Reader) (alloc, mallocs float64, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	found := 0
	for sc.Scan() {
		line := sc.Text()
		for _, m := range []struct {
			name string
			dst  *float64
		}{{"go_memstats_alloc_bytes_total", &alloc}, {"go_memstats_mallocs_total", &mallocs}} {
			if rest, ok := strings.CutPrefix(line, m.name+" "); ok {
				v, perr := strconv.ParseFloat(strings.TrimSpace(rest), 64)
				if perr != nil {
					return 0, 0, fmt.Errorf("metrics: %s: %v", m.name, perr)
				}
				*m.dst = v
				found++
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if found < 2 {
		return 0, 0, errors.New("metrics: go_memstats_alloc_bytes_total or go_memstats_mallocs_total missing")
	}
	return alloc, mallocs, nil
}

// freeLoopbackPort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freeLoopbackPort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
