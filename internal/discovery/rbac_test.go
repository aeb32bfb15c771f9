package discovery

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"slices"
	"testing"

	"go.yaml.in/yaml/v4"
	rbacv1 "k8s.io/api/rbac/v1"
)

// The documented RBAC example decodes strictly (unknown fields fail) into
// the Kubernetes types, and grants exactly what the source uses: get,
// list and watch on endpointslices, bound to a service account.
func TestKubernetesRBACExample(t *testing.T) {
	data, err := os.ReadFile("../../docs/kubernetes/discovery-rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var role rbacv1.Role
	var binding rbacv1.RoleBinding
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		var into any
		switch doc["kind"] {
		case "Role":
			into = &role
		case "RoleBinding":
			into = &binding
		default:
			t.Fatalf("unexpected kind %v", doc["kind"])
		}
		js, _ := json.Marshal(doc)
		jd := json.NewDecoder(bytes.NewReader(js))
		jd.DisallowUnknownFields()
		if err := jd.Decode(into); err != nil {
			t.Fatalf("%v: %v", doc["kind"], err)
		}
	}
	if len(role.Rules) != 1 {
		t.Fatalf("rules %+v, want one", role.Rules)
	}
	r := role.Rules[0]
	if !slices.Equal(r.APIGroups, []string{"discovery.k8s.io"}) || !slices.Equal(r.Resources, []string{"endpointslices"}) ||
		!slices.Equal(r.Verbs, []string{"get", "list", "watch"}) {
		t.Errorf("rule %+v, want get/list/watch on discovery.k8s.io endpointslices", r)
	}
	if binding.RoleRef.Kind != "Role" || binding.RoleRef.Name != role.Name || binding.Namespace != role.Namespace {
		t.Errorf("binding %+v does not bind role %s in %s", binding.RoleRef, role.Name, role.Namespace)
	}
	if len(binding.Subjects) != 1 || binding.Subjects[0].Kind != "ServiceAccount" {
		t.Errorf("subjects %+v, want the gateway's service account", binding.Subjects)
	}
}
