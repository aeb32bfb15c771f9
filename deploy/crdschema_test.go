package deploy

import (
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// crdSchema is the subset of a CRD's OpenAPI v3 structural schema that
// KEDA's ScaledObject CRD uses (testdata/keda.sh_scaledobjects.yaml).
type crdSchema struct {
	Type                 string                `json:"type"`
	Format               string                `json:"format"`
	Properties           map[string]*crdSchema `json:"properties"`
	AdditionalProperties *crdSchema            `json:"additionalProperties"`
	Items                *crdSchema            `json:"items"`
	Required             []string              `json:"required"`
	Enum                 []string              `json:"enum"`
	Minimum              *float64              `json:"minimum"`
	MinLength            *int                  `json:"minLength"`
	MinItems             *int                  `json:"minItems"`
	Pattern              string                `json:"pattern"`
	AnyOf                []crdSchema           `json:"anyOf"`
	Default              any                   `json:"default"`
	IntOrString          bool                  `json:"x-kubernetes-int-or-string"`
	ListType             string                `json:"x-kubernetes-list-type"`
	Validations          []struct {
		Rule    string `json:"rule"`
		Message string `json:"message"`
	} `json:"x-kubernetes-validations"`
}

type crdFile struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Group string `json:"group"`
		Scope string `json:"scope"`
		Names struct {
			Kind       string   `json:"kind"`
			ListKind   string   `json:"listKind"`
			Plural     string   `json:"plural"`
			Singular   string   `json:"singular"`
			ShortNames []string `json:"shortNames"`
		} `json:"names"`
		Versions []struct {
			Name    string `json:"name"`
			Served  bool   `json:"served"`
			Storage bool   `json:"storage"`
			Schema  struct {
				OpenAPIV3Schema *crdSchema `json:"openAPIV3Schema"`
			} `json:"schema"`
		} `json:"versions"`
	} `json:"spec"`
}

// loadCRDSchema reads a CRD file strictly (a key this validator does not
// understand fails, so no rule of the schema is silently ignored) and
// returns the schema of apiVersion group/version.
func loadCRDSchema(t *testing.T, path, apiVersion string) *crdSchema {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f crdFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for _, v := range f.Spec.Versions {
		if f.Spec.Group+"/"+v.Name == apiVersion {
			return v.Schema.OpenAPIV3Schema
		}
	}
	t.Fatalf("%s has no version %s", path, apiVersion)
	return nil
}

var int32Range = [2]float64{math.MinInt32, math.MaxInt32}

// validate checks v (a JSON-decoded value) against s as the API server
// does for a custom resource with strict field validation: unknown fields
// are errors, not pruned. Every problem is returned, each with its path.
func (s *crdSchema) validate(path string, v any) []string {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, path+": "+fmt.Sprintf(format, args...)) }
	if v == nil {
		return []string{path + ": null is not allowed"}
	}
	if s.IntOrString {
		switch x := v.(type) {
		case float64:
			if x != math.Trunc(x) {
				bad("want an integer or a string, got %v", x)
			}
		case string:
			if s.Pattern != "" && !regexp.MustCompile(s.Pattern).MatchString(x) {
				bad("%q does not match %s", x, s.Pattern)
			}
		default:
			bad("want an integer or a string, got %T", v)
		}
		return errs
	}
	switch s.Type {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			bad("want an object, got %T", v)
			return errs
		}
		for _, r := range s.Required {
			if _, ok := m[r]; !ok {
				bad("required field %q is missing", r)
			}
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			switch {
			case s.Properties[k] != nil:
				errs = append(errs, s.Properties[k].validate(path+"."+k, m[k])...)
			case s.AdditionalProperties != nil:
				errs = append(errs, s.AdditionalProperties.validate(path+"."+k, m[k])...)
			case s.Properties == nil && s.AdditionalProperties == nil:
				// type: object with no properties (metadata): checked elsewhere.
			default:
				bad("unknown field %q", k)
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			bad("want an array, got %T", v)
			return errs
		}
		if s.MinItems != nil && len(a) < *s.MinItems {
			bad("want at least %d items, got %d", *s.MinItems, len(a))
		}
		for i, item := range a {
			errs = append(errs, s.Items.validate(fmt.Sprintf("%s[%d]", path, i), item)...)
		}
	case "string":
		x, ok := v.(string)
		if !ok {
			bad("want a string, got %T (%v)", v, v)
			return errs
		}
		if len(s.Enum) > 0 && !slices.Contains(s.Enum, x) {
			bad("%q is not one of %s", x, strings.Join(s.Enum, ", "))
		}
		if s.MinLength != nil && len(x) < *s.MinLength {
			bad("want at least %d characters", *s.MinLength)
		}
	case "integer":
		x, ok := v.(float64)
		if !ok || x != math.Trunc(x) {
			bad("want an integer, got %T (%v)", v, v)
			return errs
		}
		if s.Format == "int32" && (x < int32Range[0] || x > int32Range[1]) {
			bad("%v is out of int32 range", x)
		}
		if s.Minimum != nil && x < *s.Minimum {
			bad("%v is below the minimum %v", x, *s.Minimum)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			bad("want a boolean, got %T (%v)", v, v)
		}
	default:
		bad("schema type %q is not handled by this validator", s.Type)
	}
	return errs
}

// scaledObjectRules is the ScaledObject CRD's one CEL rule, written out:
// "!has(self.minReplicaCount) || self.minReplicaCount <= (has(self.maxReplicaCount) ? self.maxReplicaCount : 100)".
func scaledObjectRules(spec map[string]any) []string {
	lo, hasLo := spec["minReplicaCount"].(float64)
	if !hasLo {
		return nil
	}
	hi, hasHi := spec["maxReplicaCount"].(float64)
	if !hasHi {
		hi = 100
	}
	if lo > hi {
		return []string{"spec: minReplicaCount must be less than or equal to maxReplicaCount"}
	}
	return nil
}

// The validator must catch what the API server would refuse; each case
// breaks a valid ScaledObject in one way.
func TestCRDSchemaValidatorRefuses(t *testing.T) {
	s := loadCRDSchema(t, "testdata/keda.sh_scaledobjects.yaml", "keda.sh/v1alpha1")
	valid := func() map[string]any {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(`
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: x}
spec:
  scaleTargetRef: {name: vllm}
  minReplicaCount: 1
  maxReplicaCount: 4
  triggers:
    - type: prometheus
      metadata: {serverAddress: "http://p:9090", query: "sum(x)", threshold: "1"}
`), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if errs := s.validate("", valid()); len(errs) > 0 {
		t.Fatalf("the valid object is refused: %v", errs)
	}
	spec := func(m map[string]any) map[string]any { return m["spec"].(map[string]any) }
	trigger := func(m map[string]any) map[string]any { return spec(m)["triggers"].([]any)[0].(map[string]any) }
	for _, c := range []struct {
		name   string
		mutate func(m map[string]any)
		want   string
	}{
		{"unknown spec field", func(m map[string]any) { spec(m)["minReplicas"] = 1.0 }, `unknown field "minReplicas"`},
		{"field of the wrong case", func(m map[string]any) { spec(m)["ScaleTargetRef"] = map[string]any{} }, `unknown field "ScaleTargetRef"`},
		{"number as metadata value", func(m map[string]any) { trigger(m)["metadata"].(map[string]any)["threshold"] = 1.0 }, "want a string"},
		{"missing scaleTargetRef.name", func(m map[string]any) { spec(m)["scaleTargetRef"] = map[string]any{"kind": "Deployment"} }, `required field "name"`},
		{"no triggers", func(m map[string]any) { spec(m)["triggers"] = []any{} }, "at least 1 items"},
		{"negative cooldown", func(m map[string]any) { spec(m)["cooldownPeriod"] = -1.0 }, "below the minimum"},
		{"bad fallback behavior", func(m map[string]any) {
			spec(m)["fallback"] = map[string]any{"failureThreshold": 3.0, "replicas": 1.0, "behavior": "sometimes"}
		}, "is not one of"},
		{"unknown trigger field", func(m map[string]any) { trigger(m)["authModes"] = "x" }, `unknown field "authModes"`},
	} {
		m := valid()
		c.mutate(m)
		errs := s.validate("", m)
		if !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, c.want) }) {
			t.Errorf("%s: want an error containing %q, got %v", c.name, c.want, errs)
		}
	}
	m := valid()
	spec(m)["minReplicaCount"] = 5.0
	if errs := scaledObjectRules(spec(m)); len(errs) != 1 {
		t.Errorf("min > max passes the CEL rule: %v", errs)
	}
}
