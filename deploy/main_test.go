// Package deploy_test checks what deploy/ ships: the systemd unit, the
// Debian package (built, installed and removed on this machine), the
// Prometheus rules and the Grafana dashboard against the daemon's real
// metrics, the container image's build and the Kubernetes manifests, and
// docs/guide.md. Programs the checks need (systemd-analyze, promtool,
// dpkg-deb, strace, ...) are installed by scripts/install-test-deps.sh; a
// missing one fails the test.
package deploy_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// repo is the repository's top directory (tests run in deploy/).
const repo = ".."

// shared holds what several tests use, removed when they are done.
var shared string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tollgate-deploy-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shared = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireRoot fails a test that changes the machine (users, packages).
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test installs a package and runs the daemon as its own user: run it as root (scripts/test-all.sh does)")
	}
}

// staticBuild is the build command of deploy/container/Dockerfile and
// scripts/build-deb.sh, so that all three share the build cache.
func staticBuild(out, version string) *exec.Cmd {
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", out, "./cmd/tollgate")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	return cmd
}

var built struct {
	once sync.Once
	path string
	err  error
}

// tollgateBinary is the daemon as shipped (static, stripped), built once.
func tollgateBinary(t testing.TB) string {
	t.Helper()
	built.once.Do(func() {
		built.path = filepath.Join(shared, "bin", "tollgate")
		if out, err := staticBuild(built.path, "0.0.0-deploytest").CombinedOutput(); err != nil {
			built.err = fmt.Errorf("building tollgate: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

// run runs a command and fails the test, with its output, if it fails.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := runErr(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	return b.String(), err
}

// waitFor polls cond until it holds or the time is up.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lockedBuffer collects a child's output while tests read it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
