//go:build e2e

package deploy_test

// The Dockerfile's build command, run as written: it must give a static
// binary.

import (
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/e2e"
	"github.com/tollgate/tollgate/policy"
)

// checkStatic fails unless path is a static ELF executable: no program
// interpreter (PT_INTERP), no shared libraries; and file(1) agrees.
func checkStatic(t *testing.T, path string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a program interpreter: it is dynamically linked", path)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v", path, libs)
	}
	if out := run(t, e2e.RequireProgram(t, "file", "file"), "-b", path); !strings.Contains(out, "statically linked") {
		t.Errorf("file %s: %s", path, out)
	}
}

const dockerfile = "container/Dockerfile"

type instruction struct {
	cmd, args string
	line      int
}

// parseDockerfile returns the instructions, continuation lines joined.
func parseDockerfile(t *testing.T) []instruction {
	b, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, l := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(l)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args), start})
		cur.Reset()
	}
	return out
}

// The image's Dockerfile: a Go toolchain at least as new as go.mod wants
// builds a static binary (its build command, run here, must give one); the
// final stage is minimal and runs as a non-root user; the ports it exposes
// are the ones its configuration listens on.
func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t)
	args := map[string]string{}
	expand := func(s string) string {
		return regexp.MustCompile(`\$\{(\w+)\}|\$(\w+)`).ReplaceAllStringFunc(s, func(m string) string {
			name := strings.Trim(m, "${}")
			if v, ok := args[name]; ok {
				return v
			}
			return m
		})
	}
	var stages [][]instruction
	for _, in := range ins {
		switch in.cmd {
		case "ARG":
			k, v, _ := strings.Cut(in.args, "=")
			args[k] = v
		case "FROM":
			stages = append(stages, nil)
		}
		if len(stages) > 0 {
			stages[len(stages)-1] = append(stages[len(stages)-1], in)
		}
	}
	if len(stages) < 2 {
		t.Fatalf("%s: want a build stage and a final stage, got %d stages", dockerfile, len(stages))
	}
	from := func(stage []instruction) string { return expand(stage[0].args) }

	// The toolchain.
	builder := from(stages[0])
	m := regexp.MustCompile(`^golang:(\d+)\.(\d+)\S* AS build$`).FindStringSubmatch(builder)
	if m == nil {
		t.Fatalf("%s: first stage %q: want golang:X.Y... AS build", dockerfile, builder)
	}
	gomod, err := os.ReadFile(filepath.Join(repo, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindStringSubmatch(string(gomod))
	if atoi(m[1])*1000+atoi(m[2]) < atoi(want[1])*1000+atoi(want[2]) {
		t.Errorf("%s: %s is older than go.mod's go %s.%s", dockerfile, builder, want[1], want[2])
	}

	// The build command, run here as the build stage runs it (WORKDIR /src
	// holds the repository: COPY . .).
	var build *instruction
	for i, in := range stages[0] {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			build = &stages[0][i]
		}
	}
	if build == nil {
		t.Fatalf("%s: no RUN ... go build in the build stage", dockerfile)
	}
	line := regexp.MustCompile(`--mount=\S+\s*`).ReplaceAllString(build.args, "")
	if !strings.Contains(line, "CGO_ENABLED=0") {
		t.Errorf("%s:%d: the build must set CGO_ENABLED=0 (a static binary for a distroless image)", dockerfile, build.line)
	}
	outFlag := regexp.MustCompile(`-o\s+(\S+)`).FindStringSubmatch(line)
	if outFlag == nil {
		t.Fatalf("%s:%d: the build has no -o", dockerfile, build.line)
	}
	bin := filepath.Join(t.TempDir(), "tollgate")
	cmd := exec.Command("sh", "-ec", strings.Replace(line, outFlag[0], "-o "+bin, 1))
	cmd.Dir = repo
	cmd.Env = os.Environ()
	for k, v := range args {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s:%d: %s: %v\n%s", dockerfile, build.line, line, err, out)
	}
	checkStatic(t, bin)
	if out := run(t, bin, "version"); !strings.Contains(out, args["VERSION"]) {
		t.Errorf("the image's tollgate version: %q, want %s", out, args["VERSION"])
	}

	// The final stage.
	final := stages[len(stages)-1]
	if base := from(final); !strings.HasPrefix(base, "gcr.io/distroless/static") && !regexp.MustCompile(`^debian:\S*-slim`).MatchString(base) {
		t.Errorf("%s: final image %s: want distroless/static or debian-slim", dockerfile, base)
	}
	last := map[string]instruction{}
	var exposed []string
	var copied []string
	for _, in := range final {
		last[in.cmd] = in
		switch in.cmd {
		case "EXPOSE":
			exposed = append(exposed, strings.Fields(in.args)...)
		case "COPY":
			f := strings.Fields(in.args)
			if !strings.HasPrefix(f[0], "--from=") {
				for _, src := range f[:len(f)-1] {
					if _, err := os.Stat(filepath.Join(repo, src)); err != nil {
						t.Errorf("%s:%d: COPY %s: %v", dockerfile, in.line, src, err)
					}
				}
				copied = append(copied, f[len(f)-2]+" "+f[len(f)-1])
			}
		}
	}
	user := strings.Split(last["USER"].args, ":")[0]
	if user == "" || user == "root" || user == "0" {
		t.Errorf("%s: the final stage runs as %q: want a non-root USER", dockerfile, last["USER"].args)
	}
	var entry, cmdArgs []string
	if err := json.Unmarshal([]byte(last["ENTRYPOINT"].args), &entry); err != nil || len(entry) != 1 || entry[0] != "/usr/bin/tollgate" {
		t.Errorf("%s: ENTRYPOINT %s: want [\"/usr/bin/tollgate\"] (exec form: signals reach tollgate)", dockerfile, last["ENTRYPOINT"].args)
	}
	if err := json.Unmarshal([]byte(last["CMD"].args), &cmdArgs); err != nil || len(cmdArgs) != 3 || cmdArgs[0] != "run" || cmdArgs[1] != "--config" {
		t.Fatalf("%s: CMD %s: want [\"run\", \"--config\", FILE]", dockerfile, last["CMD"].args)
	}
	var config string
	for _, c := range copied {
		if src, dst, _ := strings.Cut(c, " "); dst == cmdArgs[2] {
			config = filepath.Join(repo, src)
		}
	}
	if config == "" {
		t.Fatalf("%s: nothing is copied to %s, the configuration CMD names", dockerfile, cmdArgs[2])
	}
	p, err := policy.LoadFile(config, features...)
	if err != nil {
		t.Fatal(err)
	}
	for _, port := range []string{portOf(t, p.Listen.Addr), portOf(t, p.MetricsListen)} {
		if !slices.Contains(exposed, port) && !slices.Contains(exposed, port+"/tcp") {
			t.Errorf("%s: the configuration listens on %s, EXPOSE has %v", dockerfile, port, exposed)
		}
	}
	if p.Listen.Network != "tcp" || strings.HasPrefix(p.Listen.Addr, "127.") || strings.HasPrefix(p.MetricsListen, "127.") {
		t.Errorf("%s: in a container, listen (%v) and metrics_listen (%s) must be reachable from outside it", config, p.Listen, p.MetricsListen)
	}
}
