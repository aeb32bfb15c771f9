package discovery

import (
	"errors"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

func TestParseTargetsJSONAndYAML(t *testing.T) {
	tmpl := Template{Scheme: "https", Spec: endpoint.Spec{Weight: 3, APIKey: "k"}}
	for name, src := range map[string]string{
		"json": `[{"targets": ["10.0.0.1:8000", "http://gpu-2.internal:9000/v1/"]},
		          {"targets": ["[::1]:8001"], "weight": 5, "max_concurrency": 16, "upstream_model": "llama"}]`,
		"yaml": "- targets: ['10.0.0.1:8000', 'http://gpu-2.internal:9000/v1/']\n" +
			"- targets: ['[::1]:8001']\n  weight: 5\n  max_concurrency: 16\n  upstream_model: llama\n",
	} {
		got, err := ParseTargets([]byte(src), tmpl)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := []endpoint.Spec{
			{URL: "https://10.0.0.1:8000", Weight: 3, APIKey: "k"},
			{URL: "http://gpu-2.internal:9000/v1", Weight: 3, APIKey: "k"},
			{URL: "https://[::1]:8001", Weight: 5, MaxConcurrency: 16, APIKey: "k", UpstreamModel: "llama"},
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %+v", name, got)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s: target %d = %+v, want %+v", name, i, got[i], want[i])
			}
		}
	}
}

// Every problem names its line and key, in the file's own terms.
func TestParseTargetsErrorsNameLineAndKey(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"- targets: ['a:1']\n- targets: ['no-port']\n", `2: [1].targets[0]: "no-port" is not host:port`},
		{"- targets: ['a:1']\n  wieght: 2\n", "2: [0].wieght: unknown key"},
		{"- targets: ['a:1']\n  weight: 0\n", "2: [0].weight: must be a whole number"},
		{"- targets: ['a:1', 'a:1']\n", `1: [0].targets: duplicate target "http://a:1"`},
		{"- targets: ['ftp://a:1']\n", `1: [0].targets[0]: "ftp://a:1" is not an http(s) URL`},
		{"- targets: ['http://u:p@a:1']\n", `1: [0].targets[0]: "http://u:xxxxx@a:1": a target may not carry credentials`},
		// A host with bytes no URL host may hold: refused here, not later
		// by the backend (found by FuzzParseTargets).
		{"- targets: [' 0:1']\n", `1: [0].targets[0]: " 0:1" is not host:port`},
		{"- targets: ['a/b:1']\n", `1: [0].targets[0]: "a/b:1" is not host:port`},
		{"- weight: 2\n", "1: [0].targets: must be a list"},
		{"targets: ['a:1']\n", "1: (file): must be a list of target groups"},
		{"[]", "1: (file): no targets"},
		{"", "(file): must be a list"},
		{"- targets: [\n", "1: (file): not JSON or YAML"},
	} {
		_, err := ParseTargets([]byte(c.src), Template{})
		var te *TargetError
		if !errors.As(err, &te) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.src, err, c.want)
		}
	}
}

// A refused target is quoted without its password: the error is logged
// (WARN "discovery failed") and shown on /status, and a target written
// with userinfo is refused for that very reason. Before, the refusal
// quoted it whole: "http://u:SECRET@127.0.0.1:1" in the log (measured
// through the binary with a file source).
func TestRefusedTargetHidesItsPassword(t *testing.T) {
	for _, target := range []string{
		"http://u:SECRET@127.0.0.1:1", "https://u:SEC/RET@h:1/v1", "http://u:SEC#RET@h:1",
		"ftp://u:SECRET@h:1", "u:SECRET@h:1", "u:SECRET@h",
	} {
		_, err := ParseTargets([]byte("- targets: ['"+target+"']\n"), Template{})
		if err == nil || strings.Contains(err.Error(), "SEC") || !strings.Contains(err.Error(), "[0].targets[0]") {
			t.Errorf("%q: %v", target, err)
		}
	}
}

func FuzzParseTargets(f *testing.F) {
	f.Add([]byte(`[{"targets": ["10.0.0.1:8000", "https://h/v1"], "weight": 2}]`))
	f.Add([]byte("- targets: ['a:1']\n  max_concurrency: 4\n  upstream_model: x\n"))
	f.Add([]byte("- targets: [&a 'x:1', *a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := ParseTargets(data, Template{})
		if err != nil {
			if len(set) != 0 {
				t.Fatal("a set returned with an error")
			}
			return
		}
		if len(set) == 0 || len(set) > maxTargets {
			t.Fatalf("%d targets accepted", len(set))
		}
		seen := map[string]bool{}
		for _, s := range set {
			// Every accepted target makes a backend.
			if _, err := endpoint.New(s, endpoint.HealthPolicy{}); err != nil {
				t.Fatalf("accepted %+v: %v", s, err)
			}
			if seen[s.Key()] || s.Weight < 1 {
				t.Fatalf("accepted %+v twice or without a weight", s)
			}
			seen[s.Key()] = true
		}
	})
}
