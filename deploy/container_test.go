package deploy_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tollgate/tollgate/policy"
)

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
