package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/sigcrypto"
)

// TestCryptoReported: the daemon says once at start which crypto signs
// (the log line and the crypto label of tollgate_build_info), and
// "tollgate version" says it too. The test binary and the daemon are built
// alike, so they load the same crypto; a cgo build on a machine with
// libssl3 (scripts/install-test-deps.sh) must use OpenSSL.
func TestCryptoReported(t *testing.T) {
	impl, why := sigcrypto.Default()
	if cgoEnabled && impl.Name() != sigcrypto.NameOpenSSL {
		t.Fatalf("a cgo build uses %s crypto: %v (install libssl3)", impl.Name(), why)
	}
	d := startDaemon(t, denyConfig)
	line := regexp.MustCompile(`msg="signature crypto" crypto=(\w+) library="([^"]*)"`).FindStringSubmatch(d.log.String())
	if line == nil || line[1] != impl.Name() || line[2] != impl.Library() {
		t.Fatalf("start-up log line %q, want crypto=%s library=%q:\n%s", line, impl.Name(), impl.Library(), d.log.String())
	}
	if n := strings.Count(d.log.String(), `msg="signature crypto"`); n != 1 {
		t.Errorf("%d crypto lines at start", n)
	}
	_, body := d.get(t, "/metrics")
	if !regexp.MustCompile(`(?m)^tollgate_build_info\{crypto="` + impl.Name() + `",goversion="[^"]+",version="[^"]+"\} 1$`).MatchString(body) {
		t.Errorf("no tollgate_build_info with crypto=%q in /metrics: %q", impl.Name(), regexp.MustCompile(`(?m)^tollgate_build_info.*$`).FindAllString(body, -1))
	}
	out, _, code := runBinary(t, "version")
	if code != 0 || !strings.HasSuffix(strings.TrimSpace(out), " crypto="+impl.Name()) {
		t.Errorf("tollgate version: exit %d, %q", code, out)
	}
}
