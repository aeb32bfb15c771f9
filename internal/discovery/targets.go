package discovery

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v4"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/telemetry"
)

// maxTargets bounds the backends one file may list: a pool is tens of
// servers, and each backend holds state and a slot in every picker.
const maxTargets = 4096

// DefaultScheme is the scheme of targets found as host:port when the
// source's scheme is unset (and of a Consul agent's API).
const DefaultScheme = "http"

// Template is what every target found gets unless its group overrides it.
type Template struct {
	Scheme string // of host:port targets; "" = DefaultScheme
	Spec   endpoint.Spec
}

// TargetError is a problem with one key of a targets file, at its line.
type TargetError struct {
	Line    int
	Key     string // e.g. "[0].targets[2]"
	Problem string
}

func (e *TargetError) Error() string { return fmt.Sprintf("%d: %s: %s", e.Line, e.Key, e.Problem) }

// ParseTargets reads a targets file (JSON or YAML): a list of groups,
//
//   - targets: ["10.0.0.7:8000", "https://gpu-3.internal/v1"]
//     weight: 2            # optional, each overrides the template
//     max_concurrency: 16
//     upstream_model: llama-3-70b
//
// Unknown keys and duplicate targets are errors; so is an empty list
// (an emptied file is far more often a mistake than a drained pool).
func ParseTargets(data []byte, tmpl Template) ([]endpoint.Spec, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, &TargetError{Line: 1, Key: "(file)", Problem: "not JSON or YAML: " + err.Error()}
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) != 1 || root.Content[0].Kind != yaml.SequenceNode {
		return nil, &TargetError{Line: max(root.Line, 1), Key: "(file)", Problem: "must be a list of target groups"}
	}
	var out []endpoint.Spec
	seen := map[string]bool{}
	for i, g := range root.Content[0].Content {
		key := fmt.Sprintf("[%d]", i)
		specs, err := parseGroup(g, key, tmpl)
		if err != nil {
			return nil, err
		}
		for _, s := range specs {
			if seen[s.Key()] {
				return nil, &TargetError{Line: g.Line, Key: key + ".targets", Problem: fmt.Sprintf("duplicate target %q", s.URL)}
			}
			seen[s.Key()] = true
			out = append(out, s)
		}
		if len(out) > maxTargets {
			return nil, &TargetError{Line: g.Line, Key: key, Problem: fmt.Sprintf("more than %d targets", maxTargets)}
		}
	}
	if len(out) == 0 {
		return nil, &TargetError{Line: max(root.Content[0].Line, 1), Key: "(file)", Problem: "no targets"}
	}
	return out, nil
}

// parseGroup reads one group: its overrides, then its targets.
func parseGroup(g *yaml.Node, key string, tmpl Template) ([]endpoint.Spec, error) {
	if g.Kind != yaml.MappingNode {
		return nil, &TargetError{Line: g.Line, Key: key, Problem: "must be a mapping with targets"}
	}
	spec := tmpl.Spec
	var targets *yaml.Node
	for k := 0; k+1 < len(g.Content); k += 2 {
		name, v := g.Content[k].Value, g.Content[k+1]
		vkey := key + "." + name
		var err error
		switch name {
		case "targets":
			targets = v
		case "weight":
			spec.Weight, err = positive(v, vkey)
		case "max_concurrency":
			spec.MaxConcurrency, err = positive(v, vkey)
		case "upstream_model":
			if v.Kind != yaml.ScalarNode {
				err = &TargetError{Line: v.Line, Key: vkey, Problem: "must be a string"}
			}
			spec.UpstreamModel = v.Value
		default:
			err = &TargetError{Line: g.Content[k].Line, Key: vkey, Problem: "unknown key (targets, weight, max_concurrency, upstream_model)"}
		}
		if err != nil {
			return nil, err
		}
	}
	if targets == nil || targets.Kind != yaml.SequenceNode {
		return nil, &TargetError{Line: g.Line, Key: key + ".targets", Problem: "must be a list of host:port or URLs"}
	}
	var out []endpoint.Spec
	for j, t := range targets.Content {
		tkey := fmt.Sprintf("%s.targets[%d]", key, j)
		u, err := targetURL(t, tmpl.Scheme)
		if err != nil {
			return nil, &TargetError{Line: t.Line, Key: tkey, Problem: err.Error()}
		}
		s := spec
		s.URL = u
		out = append(out, s.Normalized())
	}
	return out, nil
}

func positive(v *yaml.Node, key string) (int, error) {
	n, err := strconv.Atoi(v.Value)
	if v.Kind != yaml.ScalarNode || err != nil || n < 1 || n > 1<<20 {
		return 0, &TargetError{Line: v.Line, Key: key, Problem: "must be a whole number from 1 to 1048576"}
	}
	return n, nil
}

// targetURL is a target as a backend URL: a URL is kept, host:port gets
// the scheme.
func targetURL(t *yaml.Node, scheme string) (string, error) {
	if t.Kind != yaml.ScalarNode || t.Value == "" {
		return "", fmt.Errorf("must be host:port or an http(s) URL")
	}
	v := t.Value
	// A refused target is quoted without its password: the error is
	// logged and shown on /status, and a target written with userinfo
	// ("http://u:pw@h:1") is refused for exactly that reason.
	shown := telemetry.RedactURLs(v)
	if strings.Contains(v, "://") {
		u, err := url.Parse(v)
		if err == nil && u.User != nil || err != nil && strings.Contains(v, "@") {
			return "", fmt.Errorf("%q: a target may not carry credentials (user:password@): set the source's api_key", shown)
		}
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", fmt.Errorf("%q is not an http(s) URL with a host", shown)
		}
		return strings.TrimSuffix(v, "/"), nil
	}
	host, port, err := net.SplitHostPort(v)
	if p, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("%q is not host:port", shown)
	}
	if scheme == "" {
		scheme = DefaultScheme
	}
	// SplitHostPort accepts any bytes in the host (" 0:1", "a/b:1"): the
	// URL they make must parse back to the same host, or the backend it
	// names would fail only later, in endpoint.New, after the file was
	// accepted.
	hp := net.JoinHostPort(host, port)
	// A user part ("u@h:1") parses to another Host: no separate check.
	if u, err := url.Parse(scheme + "://" + hp); err != nil || u.Host != hp {
		return "", fmt.Errorf("%q is not host:port", shown)
	}
	return scheme + "://" + hp, nil
}
