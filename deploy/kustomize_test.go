package deploy

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/sluice-gw/sluice/internal/app"
	"github.com/sluice-gw/sluice/internal/config"
)

// rendered is one overlay's output, every object decoded into its type.
type rendered struct {
	deployments  []*appsv1.Deployment
	services     []*corev1.Service
	configMaps   []*corev1.ConfigMap
	accounts     []*corev1.ServiceAccount
	claims       []*corev1.PersistentVolumeClaim
	pdbs         []*policyv1.PodDisruptionBudget
	hpas         []*autoscalingv2.HorizontalPodAutoscaler
	policies     []*networkingv1.NetworkPolicy
	roles        []*rbacv1.Role
	bindings     []*rbacv1.RoleBinding
	monitors     []*monitoringv1.ServiceMonitor
	scaledObject []map[string]any // keda.sh/v1alpha1, checked against the CRD schema
}

// strictDecoder decodes YAML into the registered types as the API server
// does with strict field validation: unknown or duplicate fields (also a
// known field spelled in another case) are errors.
func strictDecoder(t *testing.T) runtime.Decoder {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme, autoscalingv2.AddToScheme,
		networkingv1.AddToScheme, rbacv1.AddToScheme, monitoringv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}

// render builds an overlay with kustomize's own library, the same code
// `kubectl kustomize` runs, and decodes every object strictly.
func render(t *testing.T, dir string) *rendered {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	dec := strictDecoder(t)
	keda := loadCRDSchema(t, "testdata/keda.sh_scaledobjects.yaml", "keda.sh/v1alpha1")
	out := &rendered{}
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		where := fmt.Sprintf("%s: %s %s", dir, r.GetKind(), r.GetName())
		if r.GetApiVersion() == "keda.sh/v1alpha1" && r.GetKind() == "ScaledObject" {
			out.scaledObject = append(out.scaledObject, checkScaledObject(t, where, keda, y))
			continue
		}
		obj, _, err := dec.Decode(y, nil, nil)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		switch o := obj.(type) {
		case *appsv1.Deployment:
			out.deployments = append(out.deployments, o)
		case *corev1.Service:
			out.services = append(out.services, o)
		case *corev1.ConfigMap:
			out.configMaps = append(out.configMaps, o)
		case *corev1.ServiceAccount:
			out.accounts = append(out.accounts, o)
		case *corev1.PersistentVolumeClaim:
			out.claims = append(out.claims, o)
		case *policyv1.PodDisruptionBudget:
			out.pdbs = append(out.pdbs, o)
		case *autoscalingv2.HorizontalPodAutoscaler:
			out.hpas = append(out.hpas, o)
		case *networkingv1.NetworkPolicy:
			out.policies = append(out.policies, o)
		case *rbacv1.Role:
			out.roles = append(out.roles, o)
		case *rbacv1.RoleBinding:
			out.bindings = append(out.bindings, o)
		case *monitoringv1.ServiceMonitor:
			out.monitors = append(out.monitors, o)
		default:
			t.Errorf("%s: %T has no check in this test; add one", where, obj)
		}
	}
	return out
}

// checkScaledObject validates a ScaledObject against KEDA's CRD schema,
// its metadata as a Kubernetes ObjectMeta (strictly), and its prometheus
// triggers' metadata keys against those KEDA's prometheus scaler reads.
func checkScaledObject(t *testing.T, where string, s *crdSchema, y []byte) map[string]any {
	t.Helper()
	var obj map[string]any
	if err := yaml.Unmarshal(y, &obj); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	for _, e := range s.validate("", obj) {
		t.Errorf("%s: %s", where, e)
	}
	if spec, ok := obj["spec"].(map[string]any); ok {
		for _, e := range scaledObjectRules(spec) {
			t.Errorf("%s: %s", where, e)
		}
	}
	meta, _ := json.Marshal(obj["metadata"])
	var om metav1.ObjectMeta
	if err := yaml.UnmarshalStrict(meta, &om); err != nil {
		t.Errorf("%s: metadata: %v", where, err)
	}
	// pkg/scalers/prometheus_scaler.go in KEDA v2.20 (its `keda:"name=..."` tags).
	promKeys := []string{"serverAddress", "query", "queryParameters", "threshold", "activationThreshold", "namespace",
		"customHeaders", "ignoreNullValues", "unsafeSsl", "awsRegion", "timeout", "identityOwner"}
	spec, _ := obj["spec"].(map[string]any)
	triggers, _ := spec["triggers"].([]any)
	for i, tr := range triggers {
		tm, _ := tr.(map[string]any)
		if tm["type"] != "prometheus" {
			continue
		}
		md, _ := tm["metadata"].(map[string]any)
		for k := range md {
			if !slices.Contains(promKeys, k) {
				t.Errorf("%s: spec.triggers[%d].metadata.%s: KEDA's prometheus scaler has no such key", where, i, k)
			}
		}
	}
	return obj
}

// overlays lists every directory under kubernetes/overlays: a new overlay
// is tested without being named here.
func overlays(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("kubernetes/overlays")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
	}
	if len(dirs) < 2 {
		t.Fatalf("want the single and replicas overlays at least, found %v", dirs)
	}
	return dirs
}

func TestKustomizeOverlays(t *testing.T) {
	// The values the pod's environment would carry, from the Secrets.
	t.Setenv("SLUICE_ADMIN_TOKEN", "token-from-the-secret")
	t.Setenv("SLUICE_REDIS_PASSWORD", "")
	for _, name := range overlays(t) {
		t.Run(name, func(t *testing.T) {
			r := render(t, filepath.Join("kubernetes", "overlays", name))
			if t.Failed() {
				return
			}
			checkOverlay(t, r)
		})
	}
}

// The strict decoder is what makes the test above able to fail: a field
// the API does not have, or a known one misspelt in case, is refused.
func TestStrictDecoderRefusesUnknownFields(t *testing.T) {
	dec := strictDecoder(t)
	for _, y := range []string{
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replica: 2}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {Ports: []}\n",
		"apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\nspec: {endpoints: [{port: a, bearerTokenSecret: {name: s, key: k}, tokenFile: x}]}\n",
	} {
		if _, _, err := dec.Decode([]byte(y), nil, nil); err == nil || !runtime.IsStrictDecodingError(err) {
			t.Errorf("decoded without a strict error (%v):\n%s", err, y)
		}
	}
}

// checkOverlay checks that the objects fit together and fit Sluice: the
// config loads with the project's loader, and ports, paths, Secrets,
// labels and replica counts agree across objects.
func checkOverlay(t *testing.T, r *rendered) {
	if len(r.deployments) != 1 {
		t.Fatalf("want one Deployment, got %d", len(r.deployments))
	}
	d := r.deployments[0]
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Containers))
	}
	c := pod.Containers[0]
	cfg, cfgText := loadPodConfig(t, r, pod, c)

	port := func(name string) int32 {
		for _, p := range c.Ports {
			if p.Name == name {
				return p.ContainerPort
			}
		}
		t.Fatalf("container has no port named %q", name)
		return 0
	}
	if got, want := port("http"), listenPort(t, "listen", cfg.Listen); got != want {
		t.Errorf("port http is %d, the config listens on %d", got, want)
	}
	if got, want := port("admin"), listenPort(t, "admin.listen", cfg.Admin.Listen); got != want {
		t.Errorf("port admin is %d, the config's admin listens on %d", got, want)
	}
	if host, _, _ := net.SplitHostPort(cfg.Admin.Listen); host != "" && host != "0.0.0.0" && host != "::" {
		t.Errorf("admin.listen %q: Prometheus and KEDA cannot reach it from another pod", cfg.Admin.Listen)
	}
	checkProbes(t, c)
	checkSecurity(t, d, c, cfg)
	checkSecrets(t, r, c, cfg, cfgText)
	checkServices(t, r, d)
	checkNetworkPolicy(t, r, d)
	checkRBAC(t, r, d)
	checkReplicas(t, r, d, cfg)
	checkScaler(t, r, cfg)
}

// loadPodConfig finds the config file the container is started with in the
// ConfigMap mounted there, and loads it with Sluice's own loader.
func loadPodConfig(t *testing.T, r *rendered, pod corev1.PodSpec, c corev1.Container) (*config.Config, string) {
	t.Helper()
	if len(c.Args) != 3 || c.Args[0] != "serve" || c.Args[1] != "--config" {
		t.Fatalf("container args %q: want serve --config FILE", c.Args)
	}
	file := c.Args[2]
	var cmName string
	for _, m := range c.VolumeMounts {
		if filepath.Dir(file) == m.MountPath {
			for _, v := range pod.Volumes {
				if v.Name == m.Name && v.ConfigMap != nil {
					cmName = v.ConfigMap.Name
				}
			}
		}
	}
	if cmName == "" {
		t.Fatalf("no ConfigMap is mounted at %s", filepath.Dir(file))
	}
	var text string
	for _, cm := range r.configMaps {
		if cm.Name == cmName {
			text = cm.Data[filepath.Base(file)]
		}
	}
	if text == "" {
		t.Fatalf("ConfigMap %s has no key %s", cmName, filepath.Base(file))
	}
	path := filepath.Join(t.TempDir(), filepath.Base(file))
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := app.Load(path)
	if err != nil {
		t.Fatalf("the ConfigMap's %s does not load: %v", filepath.Base(file), err)
	}
	return cfg, text
}

func listenPort(t *testing.T, key, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s %q: %v", key, addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%s %q: %v", key, addr, err)
	}
	return int32(n)
}

func checkProbes(t *testing.T, c corev1.Container) {
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s probe: want an HTTP GET of %s", p.name, p.path)
			continue
		}
		// Both paths are served on the public listener only (gateway.ServeHTTP).
		if g := p.probe.HTTPGet; g.Path != p.path || g.Port.String() != "http" {
			t.Errorf("%s probe: GET %s on port %s, want %s on port http", p.name, g.Path, g.Port.String(), p.path)
		}
	}
}

// checkSecurity: the image's user (Dockerfile USER), a read-only root, and
// the embedded queue's data on a writable volume.
func checkSecurity(t *testing.T, d *appsv1.Deployment, c corev1.Container, cfg *config.Config) {
	psc := d.Spec.Template.Spec.SecurityContext
	user := dockerfileUser(t)
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != user {
		t.Errorf("pod securityContext: want runAsNonRoot and runAsUser %d (the Dockerfile's USER)", user)
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("container securityContext: want a read-only root, no privilege escalation, all capabilities dropped")
	}
	writable := func(dir string) bool {
		return slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
			return !m.ReadOnly && (dir == m.MountPath || strings.HasPrefix(dir, m.MountPath+"/"))
		})
	}
	if cfg.Queue.Enabled && cfg.Queue.URL == "" {
		if dir := cfg.Queue.DataDir; !writable(dir) {
			t.Errorf("queue.data_dir %q is on the read-only root: mount a volume there", dir)
		}
	}
	// Forecasting is on by default and keeps its learned state in the data
	// directory (queue.data_dir, else the image's $XDG_DATA_HOME/sluice):
	// on the read-only root it would run without it, and every restart
	// would forget the traffic's daily and weekly shape.
	if f := cfg.Forecast; f.Enabled && f.Snapshot != "off" {
		path := f.Snapshot
		if path == "" {
			dir := cfg.Queue.DataDir
			if dir == "" {
				dir = dockerfileEnv(t, "XDG_DATA_HOME") + "/sluice"
			}
			path = dir + "/forecast.snapshot"
		}
		if !writable(path) {
			t.Errorf("forecast snapshot %q is on the read-only root: mount a volume there", path)
		}
	}
	// The image sets no TMPDIR: os.TempDir() is /tmp, where uploads spool.
	if !writable("/tmp") {
		t.Error("/tmp is on the read-only root: Files API uploads cannot be spooled")
	}
	grace := time.Duration(*d.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	var preStop time.Duration
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	}
	// The whole stop, not only the grace: past it the kubelet's SIGKILL
	// cuts requests the gateway would have answered 503 shutting_down and
	// jobs it would have handed back.
	if stop := app.StopBound(cfg.ShutdownGrace.D()); grace <= preStop+stop {
		t.Errorf("terminationGracePeriodSeconds %v: a stop needs preStop %v + %v (shutdown_grace %v, in which running jobs finish too, and the cut's answers)",
			grace, preStop, stop, cfg.ShutdownGrace.D())
	}
}

// dockerfileEnv is the value the Dockerfile's ENV gives name.
func dockerfileEnv(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^ENV ` + name + `=(\S+)$`).FindSubmatch(data)
	if m == nil {
		t.Fatalf("Dockerfile: no ENV %s", name)
	}
	return string(m[1])
}

func dockerfileUser(t *testing.T) int64 {
	t.Helper()
	data, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^USER (\d+):\d+$`).FindSubmatch(data)
	if m == nil {
		t.Fatal("Dockerfile: no numeric USER uid:gid")
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n
}

// checkSecrets: every ${VAR} of the config is in the container's
// environment; admin.token comes from a Secret, the same one the
// ServiceMonitor sends.
func checkSecrets(t *testing.T, r *rendered, c corev1.Container, cfg *config.Config, cfgText string) {
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	for _, m := range regexp.MustCompile(`\$\{(\w+)\}`).FindAllStringSubmatch(cfgText, -1) {
		if _, ok := env[m[1]]; !ok {
			t.Errorf("the config uses ${%s}, which the container's env does not set", m[1])
		}
	}
	if cfg.Admin.Token != os.Getenv("SLUICE_ADMIN_TOKEN") {
		t.Fatalf("admin.token is %q, want ${SLUICE_ADMIN_TOKEN}", cfg.Admin.Token)
	}
	ref := env["SLUICE_ADMIN_TOKEN"].ValueFrom
	if ref == nil || ref.SecretKeyRef == nil {
		t.Fatal("SLUICE_ADMIN_TOKEN: want it from a Secret")
	}
	for _, sm := range r.monitors {
		for i, ep := range sm.Spec.Endpoints {
			a := ep.Authorization
			if a == nil || a.Credentials == nil || a.Credentials.Name != ref.SecretKeyRef.Name || a.Credentials.Key != ref.SecretKeyRef.Key {
				t.Errorf("ServiceMonitor %s endpoint %d: want Bearer credentials from Secret %s key %s", sm.Name, i, ref.SecretKeyRef.Name, ref.SecretKeyRef.Key)
			}
		}
	}
}
