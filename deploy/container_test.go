package deploy_test

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

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
	if out := run(t, requireProgram(t, "file", "file"), "-b", path); !strings.Contains(out, "statically linked") {
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

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

func portOf(t *testing.T, hostport string) string {
	t.Helper()
	i := strings.LastIndexByte(hostport, ':')
	if i < 0 {
		t.Fatalf("%q has no port", hostport)
	}
	return hostport[i+1:]
}

type manifest map[string]any

// get walks a path of map keys and list indexes.
func (m manifest) get(path ...any) any {
	var cur any = map[string]any(m)
	for _, p := range path {
		switch k := p.(type) {
		case string:
			mm, ok := cur.(map[string]any)
			if !ok {
				return nil
			}
			cur = mm[k]
		case int:
			l, ok := cur.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			cur = l[k]
		}
	}
	return cur
}

func (m manifest) str(path ...any) string { s, _ := m.get(path...).(string); return s }

func loadManifests(t *testing.T) map[string][]manifest {
	files, _ := filepath.Glob("kubernetes/*.yaml")
	if len(files) == 0 {
		t.Fatal("no kubernetes/*.yaml")
	}
	byKind := map[string][]manifest{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for i := 1; ; i++ {
			var raw map[string]any // nested maps too are map[string]any
			err := dec.Decode(&raw)
			m := manifest(raw)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			if m == nil {
				continue
			}
			kind, name := m.str("kind"), m.str("metadata", "name")
			if m.str("apiVersion") == "" || kind == "" || name == "" {
				t.Errorf("%s document %d: want apiVersion, kind and metadata.name", f, i)
			}
			if m.str("metadata", "labels", "app.kubernetes.io/name") != "tollgate" {
				t.Errorf("%s: %s %s has no label app.kubernetes.io/name: tollgate", f, kind, name)
			}
			byKind[kind] = append(byKind[kind], m)
		}
	}
	for _, kind := range []string{"Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget"} {
		if len(byKind[kind]) != 1 {
			t.Fatalf("want one %s in kubernetes/, got %d", kind, len(byKind[kind]))
		}
	}
	return byKind
}

// The Kubernetes manifests: they parse; the Deployment runs non-root on a
// read-only root file system with probes on /healthz and /readyz at the
// port the configuration serves them; the Service reaches the milter port;
// the ConfigMap's configuration loads with tollgate's loader, with the
// Secret's keys where the Deployment puts them.
func TestKubernetesManifests(t *testing.T) {
	k := loadManifests(t)
	dep, svc, cm, sec := k["Deployment"][0], k["Service"][0], k["ConfigMap"][0], k["Secret"][0]
	pod := manifest(asMap(dep.get("spec", "template", "spec")))
	podLabels := asMap(dep.get("spec", "template", "metadata", "labels"))
	for key, v := range asMap(dep.get("spec", "selector", "matchLabels")) {
		if podLabels[key] != v {
			t.Errorf("Deployment: selector %s=%v does not match the pod's labels %v", key, v, podLabels)
		}
	}
	for key, v := range asMap(svc.get("spec", "selector")) {
		if podLabels[key] != v {
			t.Errorf("Service: selector %s=%v does not match the pod's labels %v", key, v, podLabels)
		}
	}
	if pod.get("securityContext", "runAsNonRoot") != true || toInt(pod.get("securityContext", "runAsUser")) == 0 {
		t.Errorf("Deployment: the pod must run as a non-root user (runAsNonRoot: true, runAsUser: N)")
	}

	// Every container: non-root, read-only root, no privilege escalation, no capabilities.
	var main manifest
	for _, list := range []string{"initContainers", "containers"} {
		cs, _ := pod.get(list).([]any)
		for _, c := range cs {
			c := manifest(asMap(c))
			name := c.str("name")
			sc := manifest(asMap(c.get("securityContext")))
			if sc.get("readOnlyRootFilesystem") != true || sc.get("allowPrivilegeEscalation") != false ||
				!slices.Contains(asList(sc.get("capabilities", "drop")), "ALL") {
				t.Errorf("container %s: want readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}", name)
			}
			if uid := sc.get("runAsUser"); uid != nil && toInt(uid) == 0 {
				t.Errorf("container %s runs as root", name)
			}
			if name == "tollgate" {
				main = c
			}
		}
	}
	if main == nil {
		t.Fatal("Deployment: no container named tollgate")
	}
	ports := map[string]int{}
	cps, _ := main.get("ports").([]any)
	for _, p := range cps {
		p := manifest(asMap(p))
		ports[p.str("name")] = toInt(p.get("containerPort"))
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		if got := main.str(probe, "httpGet", "path"); got != path {
			t.Errorf("%s: path %q, want %s", probe, got, path)
		}
		if port := main.get(probe, "httpGet", "port"); port != "metrics" && toInt(port) != ports["metrics"] {
			t.Errorf("%s: port %v, want the metrics port", probe, port)
		}
	}
	svcPorts, _ := svc.get("spec", "ports").([]any)
	reachesMilter := false
	for _, p := range svcPorts {
		p := manifest(asMap(p))
		target := p.get("targetPort")
		if tp, ok := target.(string); ok {
			if _, named := ports[tp]; !named {
				t.Errorf("Service port %s: targetPort %s is no container port name", p.str("name"), tp)
			}
			reachesMilter = reachesMilter || tp == "milter"
		} else {
			reachesMilter = reachesMilter || toInt(target) == ports["milter"]
		}
	}
	if !reachesMilter {
		t.Error("the Service does not reach the milter port")
	}

	// Volumes and mounts: the configuration from the ConfigMap, the keys
	// copied from the Secret (mounted 0400) to an in-memory volume.
	volumes := map[string]manifest{}
	vs, _ := pod.get("volumes").([]any)
	for _, v := range vs {
		v := manifest(asMap(v))
		volumes[v.str("name")] = v
	}
	mounts := map[string]string{} // mount path -> volume
	ms, _ := main.get("volumeMounts").([]any)
	for _, mt := range ms {
		mt := manifest(asMap(mt))
		mounts[mt.str("mountPath")] = mt.str("name")
	}
	args := asList(main.get("args"))
	if len(args) != 3 || args[0] != "run" || args[1] != "--config" {
		t.Fatalf("container tollgate: args %v, want [run --config FILE]", args)
	}
	configDir, configFile := filepath.Split(args[2])
	cmVol := volumes[mounts[strings.TrimSuffix(configDir, "/")]]
	if cmVol.str("configMap", "name") != cm.str("metadata", "name") {
		t.Errorf("%s is not mounted from the ConfigMap %s", configDir, cm.str("metadata", "name"))
	}
	var secretVol manifest
	for _, v := range volumes {
		if v.str("secret", "secretName") == sec.str("metadata", "name") {
			secretVol = v
		}
	}
	if secretVol == nil {
		t.Fatal("the Secret is not a volume of the pod")
	}
	if mode := toInt(secretVol.get("secret", "defaultMode")); mode != 0o400 {
		t.Errorf("the Secret's defaultMode is %#o, want 0400", mode)
	}
	keysVol := volumes[mounts["/etc/tollgate/keys"]]
	if keysVol == nil || keysVol.str("emptyDir", "medium") != "Memory" {
		t.Errorf("/etc/tollgate/keys: want an emptyDir in memory (the keys never touch a disk), got %v", keysVol)
	}

	// The configuration, with real keys under the Secret's names.
	data := cm.str("data", configFile)
	if data == "" {
		t.Fatalf("the ConfigMap has no %s", configFile)
	}
	keys := t.TempDir()
	secretNames := map[string]bool{}
	for name := range asMap(sec.get("stringData")) {
		secretNames[name] = true
		p := filepath.Join(keys, name)
		if strings.HasSuffix(name, ".key") {
			run(t, tollgateBinary(t), "arc", "keygen", "--domain", "example.org", "--selector", "k8s", "--out", p)
		} else if err := os.WriteFile(p, []byte("k8s-test-secret\n"), 0o400); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range regexp.MustCompile(`/etc/tollgate/keys/([\w.-]+)`).FindAllStringSubmatch(data, -1) {
		if !secretNames[m[1]] {
			t.Errorf("the configuration reads /etc/tollgate/keys/%s, which the Secret does not have", m[1])
		}
	}
	p, err := policy.Parse("kubernetes/configmap.yaml "+configFile, []byte(strings.ReplaceAll(data, "/etc/tollgate/keys/", keys+"/")), features...)
	if err != nil {
		t.Fatalf("the ConfigMap's configuration does not load:\n%v", err)
	}
	if got := portOf(t, p.Listen.Addr); atoi(got) != ports["milter"] {
		t.Errorf("the configuration listens on port %s, the container's milter port is %d", got, ports["milter"])
	}
	if got := portOf(t, p.MetricsListen); atoi(got) != ports["metrics"] {
		t.Errorf("the configuration serves metrics on port %s, the container's metrics port is %d", got, ports["metrics"])
	}
	grace := time.Duration(toInt(pod.get("terminationGracePeriodSeconds"))) * time.Second
	if grace <= p.DrainTimeout {
		t.Errorf("terminationGracePeriodSeconds %v is not above drain_timeout %v: Kubernetes would kill sessions still draining", grace, p.DrainTimeout)
	}
}

func asMap(v any) map[string]any { m, _ := v.(map[string]any); return m }

func asList(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, x := range l {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

func toInt(v any) int {
	switch n := v.(type) {
	case int:
		return n
	case int64:
		return int(n)
	case float64:
		return int(n)
	case string:
		i, _ := strconv.Atoi(n)
		return i
	}
	return 0
}
