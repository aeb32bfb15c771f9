package deploy

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/sluice-gw/sluice/internal/config"
)

func selects(t *testing.T, sel *metav1.LabelSelector, l map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatal(err)
	}
	return !s.Empty() && s.Matches(labels.Set(l))
}

// checkServices: the public Service carries the public port only; the admin
// port is in a ClusterIP Service of its own, which the ServiceMonitor scrapes.
func checkServices(t *testing.T, r *rendered, d *appsv1.Deployment) {
	podLabels := d.Spec.Template.Labels
	var admin *corev1.Service
	for _, s := range r.services {
		if !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(podLabels)) || len(s.Spec.Selector) == 0 {
			t.Errorf("Service %s does not select the gateway pods", s.Name)
		}
		for _, p := range s.Spec.Ports {
			switch p.TargetPort.String() {
			case "admin":
				if s.Spec.Type != corev1.ServiceTypeClusterIP || len(s.Spec.Ports) != 1 {
					t.Errorf("Service %s: the admin port must be alone in a ClusterIP Service, is in a %s with %d ports", s.Name, s.Spec.Type, len(s.Spec.Ports))
				}
				admin = s
			case "http":
			default:
				t.Errorf("Service %s port %s: targetPort %s is neither http nor admin", s.Name, p.Name, p.TargetPort.String())
			}
		}
	}
	if admin == nil {
		t.Fatal("no Service exposes the admin port in the cluster")
	}
	for _, sm := range r.monitors {
		if !selects(t, &sm.Spec.Selector, admin.Labels) {
			t.Errorf("ServiceMonitor %s does not select Service %s", sm.Name, admin.Name)
		}
		for _, ep := range sm.Spec.Endpoints {
			if ep.Port != admin.Spec.Ports[0].Name || ep.Path != "/metrics" {
				t.Errorf("ServiceMonitor %s: want port %s path /metrics", sm.Name, admin.Spec.Ports[0].Name)
			}
		}
	}
	if len(r.monitors) == 0 {
		t.Error("no ServiceMonitor")
	}
}

// checkNetworkPolicy: the gateway pods are selected; the admin port is
// admitted from the monitoring and keda namespaces only.
func checkNetworkPolicy(t *testing.T, r *rendered, d *appsv1.Deployment) {
	var np *networkingv1.NetworkPolicy
	for _, p := range r.policies {
		if selects(t, &p.Spec.PodSelector, d.Spec.Template.Labels) {
			np = p
		}
	}
	if np == nil {
		t.Fatal("no NetworkPolicy selects the gateway pods")
	}
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
		t.Errorf("NetworkPolicy %s: policyTypes %v has no Ingress", np.Name, np.Spec.PolicyTypes)
	}
	adminRules := 0
	for i, rule := range np.Spec.Ingress {
		// A rule without ports admits every port, the admin one included.
		opensAdmin := len(rule.Ports) == 0 || slices.ContainsFunc(rule.Ports, func(p networkingv1.NetworkPolicyPort) bool {
			return p.Port == nil || p.Port.String() == "admin" || p.Port.IntValue() == 9091
		})
		if !opensAdmin {
			continue
		}
		adminRules++
		if len(rule.From) == 0 {
			t.Errorf("NetworkPolicy %s ingress[%d] admits anyone to the admin port", np.Name, i)
		}
		for _, peer := range rule.From {
			ns := peer.NamespaceSelector
			if peer.IPBlock != nil || peer.PodSelector != nil || ns == nil || len(ns.MatchLabels) > 0 || len(ns.MatchExpressions) != 1 {
				t.Errorf("NetworkPolicy %s ingress[%d]: want namespaces by name only, got %+v", np.Name, i, peer)
				continue
			}
			e := ns.MatchExpressions[0]
			names := slices.Sorted(slices.Values(e.Values))
			if e.Key != "kubernetes.io/metadata.name" || e.Operator != metav1.LabelSelectorOpIn || !slices.Equal(names, []string{"keda", "monitoring"}) {
				t.Errorf("NetworkPolicy %s ingress[%d]: admin port from %+v, want namespaces monitoring and keda", np.Name, i, e)
			}
		}
	}
	if adminRules == 0 {
		t.Errorf("NetworkPolicy %s admits no one to the admin port (Prometheus and KEDA need it)", np.Name)
	}
}

// checkRBAC: the pods' ServiceAccount may get, list and watch EndpointSlices.
func checkRBAC(t *testing.T, r *rendered, d *appsv1.Deployment) {
	sa := d.Spec.Template.Spec.ServiceAccountName
	if !slices.ContainsFunc(r.accounts, func(a *corev1.ServiceAccount) bool { return a.Name == sa }) {
		t.Fatalf("ServiceAccount %q of the pods is not in the output", sa)
	}
	for _, b := range r.bindings {
		if !slices.ContainsFunc(b.Subjects, func(s rbacv1.Subject) bool { return s.Kind == "ServiceAccount" && s.Name == sa }) {
			continue
		}
		for _, role := range r.roles {
			if b.RoleRef.Kind != "Role" || role.Name != b.RoleRef.Name {
				continue
			}
			for _, rule := range role.Rules {
				if slices.Contains(rule.APIGroups, "discovery.k8s.io") && slices.Contains(rule.Resources, "endpointslices") &&
					slices.Contains(rule.Verbs, "get") && slices.Contains(rule.Verbs, "list") && slices.Contains(rule.Verbs, "watch") {
					return
				}
			}
		}
	}
	t.Errorf("ServiceAccount %s cannot get, list and watch discovery.k8s.io endpointslices", sa)
}

// checkReplicas: more than one replica needs shared state (a job submitted
// to one replica is read from another), a PDB and an HPA that keeps two;
// one replica with a claimed volume is replaced, not rolled.
func checkReplicas(t *testing.T, r *rendered, d *appsv1.Deployment, cfg *config.Config) {
	replicas := int32(1)
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	for _, h := range r.hpas {
		if h.Spec.ScaleTargetRef.Kind != "Deployment" || h.Spec.ScaleTargetRef.Name != d.Name {
			t.Errorf("HPA %s scales %s %s, not the gateway", h.Name, h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 {
			t.Errorf("HPA %s: minReplicas below 2", h.Name)
		}
		replicas = max(replicas, h.Spec.MaxReplicas)
	}
	if replicas == 1 {
		if len(r.pdbs) > 0 {
			t.Error("a PDB on one replica blocks node drains")
		}
		if slices.ContainsFunc(d.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.PersistentVolumeClaim != nil }) &&
			d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			t.Error("one replica on a ReadWriteOnce claim: want strategy Recreate")
		}
		return
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("Deployment %s: want at least 2 replicas", d.Name)
	}
	if cfg.Queue.Enabled && cfg.Queue.URL == "" {
		t.Error("several replicas with the embedded queue: each would have its own jobs; set queue.url")
	}
	if cfg.RateLimits.Store != "redis" || len(cfg.RateLimits.Redis.Addrs) == 0 {
		t.Error("several replicas: want rate_limits.store redis, so limits hold across replicas")
	}
	if len(cfg.Cache.Redis.Addrs) == 0 {
		t.Error("several replicas: want cache.redis.addrs, so replicas share cached answers")
	}
	if len(r.pdbs) != 1 || !selects(t, r.pdbs[0].Spec.Selector, d.Spec.Template.Labels) {
		t.Error("several replicas: want one PodDisruptionBudget selecting the gateway pods")
	}
	if len(r.hpas) != 1 {
		t.Error("several replicas: want an HPA for the gateway")
	}
}

// checkScaler: every ScaledObject scales on the sum across gateway
// replicas of a configured model's desired backends.
func checkScaler(t *testing.T, r *rendered, cfg *config.Config) {
	for _, so := range r.scaledObject {
		spec := so["spec"].(map[string]any)
		for _, tr := range spec["triggers"].([]any) {
			tm := tr.(map[string]any)
			md := tm["metadata"].(map[string]any)
			q, _ := md["query"].(string)
			model, ok := strings.CutPrefix(q, `sum(sluice_model_desired_backends{model="`)
			model, ok2 := strings.CutSuffix(model, `"})`)
			if tm["type"] != "prometheus" || !ok || !ok2 {
				t.Errorf("ScaledObject trigger %v: want prometheus on sum(sluice_model_desired_backends{model=\"...\"})", tm)
				continue
			}
			if !slices.ContainsFunc(cfg.Models, func(m config.Model) bool { return m.Name == model }) {
				t.Errorf("ScaledObject scales on model %q, which the config does not serve", model)
			}
			// AverageValue with threshold 1: the HPA asks for ceil(sum/1) replicas.
			if tm["metricType"] != "AverageValue" || md["threshold"] != "1" {
				t.Errorf("ScaledObject trigger: want metricType AverageValue and threshold \"1\" (replicas = desired backends), got %v %v", tm["metricType"], md["threshold"])
			}
		}
	}
}
