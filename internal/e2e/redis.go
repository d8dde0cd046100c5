package e2e

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// RedisServerPath is Debian's redis-server (package redis-server).
const RedisServerPath = "/usr/bin/redis-server"

// Redis is a private redis-server on a free loopback port and a unix socket,
// with a private directory and no persistence.
type Redis struct {
	Addr string // 127.0.0.1:port
	Sock string // unix socket path

	t      testing.TB
	args   []string
	cmd    *exec.Cmd
	out    *bytes.Buffer
	exited chan struct{}
}

// StartRedis starts a redis-server; extra arguments are added to its command
// line (e.g. "--requirepass", "pw"). It is killed at the end of the test. A
// missing redis-server fails the test.
func StartRedis(t testing.TB, extra ...string) *Redis {
	t.Helper()
	RequireProgram(t, RedisServerPath, "redis-server")
	// A short directory: a unix socket's path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "tgredis")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	port := FreePort(t)
	s := &Redis{t: t, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Sock: filepath.Join(dir, "redis.sock")}
	s.args = append([]string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--unixsocket", s.Sock, "--unixsocketperm", "700",
		"--dir", dir, "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--loglevel", "warning", "--logfile", "",
	}, extra...)
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start runs the server (again, on the same port and socket) and waits until
// it answers on both.
func (s *Redis) Start() {
	s.t.Helper()
	s.out = new(bytes.Buffer)
	s.cmd = exec.Command(RedisServerPath, s.args...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("starting redis-server: %v", err)
	}
	s.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) { cmd.Wait(); close(exited) }(s.cmd, s.exited)
	deadline := time.Now().Add(10 * time.Second)
	for !s.answers("tcp", s.Addr) || !s.answers("unix", s.Sock) {
		select {
		case <-s.exited:
			s.t.Fatalf("redis-server %v exited:\n%s", s.args, s.out)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on %s not answering after 10 s:\n%s", s.Addr, s.out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// answers: a PING gets +PONG, or -NOAUTH with requirepass: up either way.
func (s *Redis) answers(network, addr string) bool {
	c, err := net.DialTimeout(network, addr, 100*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 64)
	n, _ := c.Read(buf)
	return n > 0 && (buf[0] == '+' || buf[0] == '-')
}

// Stop kills the server and waits for it to exit.
func (s *Redis) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGCONT) // in case a test left it stopped
	s.cmd.Process.Kill()
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.t.Errorf("redis-server did not exit")
	}
	s.cmd = nil
}

// Signal sends sig to the server (SIGSTOP to play a hung Redis).
func (s *Redis) Signal(sig syscall.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
}
