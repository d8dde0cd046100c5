//go:build e2e

package manpage

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/e2e"
)

// man(1) reads both pages without a warning.
func TestManPagesFormat(t *testing.T) {
	manProgram := e2e.RequireProgram(t, "man", "man-db")
	for _, page := range pages {
		cmd := exec.Command(manProgram, "--warnings", "-E", "UTF-8", "-l", filepath.Join(root, page))
		cmd.Env = append(os.Environ(), "MANWIDTH=80", "MAN_KEEP_FORMATTING=0")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 || len(out) < 1000 {
			t.Errorf("man %s: %v (%d bytes)\n%s", page, err, len(out), stderr.String())
		}
	}
}
