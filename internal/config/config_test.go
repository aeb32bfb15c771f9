package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const minimal = `
models:
  - name: m1
    backends:
      - url: http://127.0.0.1:9001
`

func TestParseAppliesDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	if c.Listen != d.Listen || c.MaxBodyBytes != 8<<20 || c.MaxAudioBodyBytes != 25<<20 || c.Retry.Attempts != 3 || c.Timeouts.Connect.D() != 5*time.Second || c.UpstreamClient != UpstreamLean {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

func TestParseValues(t *testing.T) {
	t.Setenv("SLUICE_TEST_KEY", "sk-secret")
	c, err := Parse([]byte(`
listen: 127.0.0.1:9999
max_body_bytes: 512KiB
max_audio_body_bytes: 30MB
timeouts: {connect: 250ms, first_byte: 3s, stream_idle: 4s, total: 2m}
models:
  - name: m1
    policy: weighted
    backends:
      - {url: "http://a:1", weight: 5, max_concurrency: 8, api_key: "${SLUICE_TEST_KEY}", upstream_model: up}
`))
	if err != nil {
		t.Fatal(err)
	}
	b := c.Models[0].Backends[0]
	if c.MaxBodyBytes != 512<<10 || c.MaxAudioBodyBytes != 30_000_000 || c.Timeouts.Connect.D() != 250*time.Millisecond || c.Timeouts.Total.D() != 2*time.Minute {
		t.Fatalf("values: %+v", c)
	}
	if b.Weight != 5 || b.MaxConcurrency != 8 || b.APIKey != "sk-secret" || b.UpstreamModel != "up" {
		t.Fatalf("backend: %+v", b)
	}
}

func TestErrorsNameKeyAndProblem(t *testing.T) {
	cases := map[string]string{
		"unknown key":     "listn: x\n" + minimal,
		"bad duration":    "timeouts: {connect: fast}\n" + minimal,
		"bad size":        "max_body_bytes: lots\n" + minimal,
		"no models":       "listen: :1\n",
		"bad url":         "models: [{name: m, backends: [{url: 'ftp://x'}]}]\n",
		"dup model":       "models: [{name: m, backends: [{url: 'http://x'}]}, {name: m, backends: [{url: 'http://y'}]}]\n",
		"retry range":     "retry: {attempts: 0}\n" + minimal,
		"active path":     "health: {active: {interval: 1s, timeout: 1s, path: health}}\n" + minimal,
		"log level":       "log: {level: loud}\n" + minimal,
		"no backends":     "models: [{name: m}]\n",
		"budget ratio":    "retry: {budget_ratio: 2}\n" + minimal,
		"neg weight":      "models: [{name: m, backends: [{url: 'http://x', weight: -1}]}]\n",
		"fail timeout":    "health: {max_fails: 2, fail_timeout: 0s}\n" + minimal,
		"wrong type":      "retry: {attempts: many}\n" + minimal,
		"empty listen":    "listen: ''\n" + minimal,
		"probe timeout":   "health: {active: {interval: 1s, timeout: 2s, path: /h}}\n" + minimal,
		"require no keys": "auth: {require_key: true}\n" + minimal,
		"bad proxy":       "auth: {trusted_proxies: [10.0.0.0/8, 'lb.internal']}\n" + minimal,
		"bad fwd header":  "auth: {forwarded_header: X-Real-IP}\n" + minimal,
		"two credentials": "models: [{name: m, backends: [{url: 'http://x', api_key: k, pass_client_auth: true}]}]\n",
		"admin listen":    "admin: {listen: 9091}\n" + minimal,
		"worker token":    "queue: {worker_token: a-long-enough-shared-secret}\n" + minimal,
		"same tokens":     "admin: {token: tok-1, worker_token: tok-1}\n" + minimal,
		"spaced token":    "admin: {token: tok-1, worker_token: ' tok-2'}\n" + minimal,
		"scaling window":  "scaling: {window: 100ms}\n" + minimal,
		"scaling room":    "scaling: {headroom: -0.1}\n" + minimal,
		"scaling lead":    "forecast: {enabled: true, max_horizon: 10m}\nscaling: {lead: 20m}\n" + minimal,
		"scaling hold":    "scaling: {scale_in_hold: -1m}\n" + minimal,
	}
	wantKey := map[string]string{
		"unknown key": "listn", "bad duration": "fast", "bad size": "lots", "no models": "models",
		"bad url": "models[0].backends[0].url", "dup model": "models[1].name", "retry range": "retry.attempts",
		"active path": "health.active.path", "log level": "log.level", "no backends": "models[0].backends",
		"budget ratio": "retry.budget_ratio", "neg weight": "models[0].backends[0].weight",
		"fail timeout": "health.fail_timeout", "wrong type": "many", "empty listen": "listen",
		"probe timeout": "health.active.timeout", "require no keys": "auth.require_key",
		"bad proxy": "auth.trusted_proxies[1]", "bad fwd header": "auth.forwarded_header",
		"two credentials": "models[0].backends[0].pass_client_auth", "admin listen": "admin.listen", "worker token": "queue.worker_token",
		"same tokens": "admin.worker_token", "spaced token": "admin.worker_token",
		"scaling window": "scaling.window", "scaling room": "scaling.headroom",
		"scaling lead": "scaling.lead", "scaling hold": "scaling.scale_in_hold",
	}
	for name, src := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(src))
			if err == nil {
				t.Fatal("accepted an invalid config")
			}
			if !strings.Contains(err.Error(), wantKey[name]) {
				t.Fatalf("error %q does not name %q", err, wantKey[name])
			}
		})
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sluice.yaml")
	os.WriteFile(p, []byte("retry: {attempts: 99}\n"+minimal), 0o600)
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "retry.attempts") {
		t.Fatalf("error %v must name the file and the key", err)
	}
}

func TestExampleConfigIsValid(t *testing.T) {
	p := filepath.Join("..", "..", "examples", "sluice.yaml")
	if _, err := os.Stat(p); err != nil {
		t.Skip("no example config yet")
	}
	if _, err := Load(p); err != nil {
		t.Fatalf("examples/sluice.yaml: %v", err)
	}
}

func TestSLOPerModelAndClass(t *testing.T) {
	cfg, err := Parse([]byte(`
admission: {max_wait: 3s}
models:
  - name: a
    backends: [{url: "http://127.0.0.1:1"}]
  - name: b
    max_wait: 5s
    max_wait_batch: 1m
    backends: [{url: "http://127.0.0.1:2"}]
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.SLOFor(&cfg.Models[0]); got != (SLO{Interactive: 3 * time.Second, Batch: 5 * time.Minute}) {
		t.Fatalf("model a: %+v", got)
	}
	if got := cfg.SLOFor(&cfg.Models[1]); got != (SLO{Interactive: 5 * time.Second, Batch: time.Minute}) {
		t.Fatalf("model b: %+v", got)
	}
	if d := Default().Admission; d.MaxWait.D() != 2*time.Second || d.DelayTarget != 0 {
		t.Fatalf("defaults: max_wait %v delay_target %v", d.MaxWait.D(), d.DelayTarget.D())
	}
	_, err = Parse([]byte(`
admission: {delay_target: -1s, max_wait_batch: 0s}
models:
  - name: a
    max_wait: -2s
    backends: [{url: "http://127.0.0.1:1"}]
`))
	for _, key := range []string{"admission.delay_target", "admission.max_wait_batch", "models[0].max_wait"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Fatalf("error %v must name %s", err, key)
		}
	}
}

// TestErrorsNameFileLineKeyAndWhatIsAllowed: a config error points at the
// file, the line and the key path as written, and says what is allowed in
// the user's terms, never in Go's ("field x not found in type
// config.Retry", "cannot construct !!str into int").
func TestErrorsNameFileLineKeyAndWhatIsAllowed(t *testing.T) {
	cases := []struct {
		name, src string
		want      []string // all in the message, in order
	}{
		{"unknown key lists the allowed ones", "retry:\n  attemptz: 3\n" + minimal,
			[]string{":2: retry.attemptz: unknown key; did you mean attempts? allowed here: attempts, budget_ratio, hedge_budget_ratio, hedge_factor, hedge_min_in_flight, min_per_second"}},
		{"wrong kind of value", "listen: :1\nretry:\n  attempts: many\n" + minimal,
			[]string{":3: retry.attempts: want a whole number, got \"many\""}},
		{"a negative count where only 0 or more fits", "cache:\n  redis:\n    bloom_keys: -1\n" + minimal,
			[]string{":3: cache.redis.bloom_keys: want a whole number of 0 or more that fits, got -1"}},
		{"unknown upstream client", "upstream_client: curl\n" + minimal,
			[]string{":1: upstream_client: must be \"lean\" or \"net/http\", got \"curl\""}},
		{"bad duration", "timeouts:\n  connect: fast\n" + minimal,
			[]string{":2: timeouts.connect: invalid duration \"fast\""}},
		{"section where a value belongs", "listen:\n  a: 1\n" + minimal,
			[]string{":2: listen: want a string, got a section of keys"}},
		{"validation errors carry their line", "models:\n  - name: m\n    backends:\n      - url: http://a\n      - url: ftp://b\nretry:\n  attempts: 50\n",
			[]string{":5: models[0].backends[1].url: must be an http:// or https:// URL", ":7: retry.attempts: must be between 1 and 10"}},
		{"discovery source errors carry their line", "models:\n  - name: m\n    slow_start: -1s\n    discovery:\n      - type: file\n      - type: zookeeper\n        scheme: ftp\n",
			[]string{":3: models[0].slow_start: cannot be negative, got \"-1s\"", ":5: models[0].discovery[0].path: must name the targets file",
				":6: models[0].discovery[1].type: must be file, dns, consul or kubernetes, got \"zookeeper\"", ":7: models[0].discovery[1].scheme: must be http or https"}},
		{"consul discovery errors", "models:\n  - name: m\n    discovery:\n      - type: consul\n        consul:\n          service: \"llm/x\"\n          tags: [gpu, \"\"]\n          datacenter: \"dc 1\"\n          address: https://consul:8501\n          scheme: ftp\n          token: t\n          token_file: /run/t\n          wait: 11m\n      - type: consul\n      - type: file\n        path: /t\n        consul:\n          service: llm\n",
			[]string{":6: models[0].discovery[0].consul.service: must name the Consul service (letters, digits, '-', '_', '.'), got \"llm/x\"",
				":7: models[0].discovery[0].consul.tags[1]: must not be empty",
				":8: models[0].discovery[0].consul.datacenter: must be a datacenter name",
				":9: models[0].discovery[0].consul.address: must be the agent's host:port (default 127.0.0.1:8500; the scheme goes in scheme)",
				":10: models[0].discovery[0].consul.scheme: must be http or https (the agent's API), got \"ftp\"",
				":12: models[0].discovery[0].consul.token_file: cannot be combined with token",
				":13: models[0].discovery[0].consul.wait: must be from 1s to 10m (Consul's limit), or unset for 5m; got 11m0s",
				":14: models[0].discovery[1].consul.service: must name the Consul service",
				":17: models[0].discovery[2].consul: only goes with type: consul"}},
		{"unknown consul key", "models:\n  - name: m\n    discovery:\n      - type: consul\n        consul:\n          servce: llm\n",
			[]string{":6: models[0].discovery[0].consul.servce: unknown key; did you mean service? allowed here: address, datacenter, scheme, service, tags, token, token_file, wait"}},
		{"a model needs backends or discovery", "models:\n  - name: m\n",
			[]string{":2: models[0].backends: at least one backend (or a discovery source) is required"}},
		{"dns discovery errors", "models:\n  - name: m\n    discovery:\n      - type: dns\n        record: MX\n      - type: dns\n        name: x\n        server: nope\n        min_interval: 10s\n        max_interval: 1s\n",
			[]string{":4: models[0].discovery[0].name: must name", ":5: models[0].discovery[0].record: must be A (A and AAAA) or SRV, got \"MX\"",
				":6: models[0].discovery[1].port: must be the backends' port", ":8: models[0].discovery[1].server: must be host:port",
				":10: models[0].discovery[1].max_interval: must be at least min_interval"}},
		{"kubernetes discovery errors", "models:\n  - name: m\n    discovery:\n      - type: kubernetes\n        namespace: Prod\n      - type: kubernetes\n        service: \"vllm,app=x\"\n        port_name: http\n        port: 8000\n      - type: kubernetes\n        service: vllm\n        port_name: HTTP\n",
			[]string{":4: models[0].discovery[0].service: must name the Service", ":5: models[0].discovery[0].namespace: must be a namespace name",
				":7: models[0].discovery[1].service: must name the Service", ":9: models[0].discovery[1].port: set port_name or port, not both",
				":12: models[0].discovery[2].port_name: must be a port name"}},
		{"unknown discovery key", "models:\n  - name: m\n    discovery:\n      - type: file\n        path: /t\n        pth: x\n",
			[]string{":6: models[0].discovery[0].pth: unknown key; did you mean path? allowed here: api_key,"}},
		{"a top-level misspelling", "admision:\n  max_wait: 1s\n" + minimal,
			[]string{":1: admision: unknown key; did you mean admission? allowed here: admin, admission, auth,"}},
		{"a nested misspelling, transposed letters", "models:\n  - name: m\n    backends:\n      - url: http://a\n        wieght: 2\n",
			[]string{":5: models[0].backends[0].wieght: unknown key; did you mean weight? allowed here:"}},
		{"a key in the wrong section says where it belongs", "max_wait: 1s\n" + minimal,
			[]string{":1: max_wait: unknown key; it belongs under admission.max_wait or models[].max_wait; allowed here: admin,"}},
		{"no suggestion when nothing is near", "models:\n  - name: m\n    backends:\n      - url: http://a\n    colour: blue\n",
			[]string{":5: models[0].colour: unknown key; allowed here: backends,"}},
		{"a default that fails points at its section", "server:\n  max_connections: 0\n" + minimal,
			[]string{":2: server.max_connections: must be at least 1"}},
		{"the discard's bounds", "server:\n  discard:\n    max_bytes: 0\n    read_timeout: 0s\n    total_timeout: -1s\n" + minimal,
			[]string{":3: server.discard.max_bytes: must be positive, got 0", ":4: server.discard.read_timeout: must be a positive duration, got 0s",
				":5: server.discard.total_timeout: cannot be negative, got \"-1s\""}},
		{"a misspelt discard key", "server:\n  discard:\n    read_gap: 1s\n" + minimal,
			[]string{":3: server.discard.read_gap: unknown key; allowed here: max_bytes, read_timeout, total_timeout"}},
		{"the lingering close's bounds", "server:\n  linger:\n    max_bytes: 100KiB\n    read_timeout: 0s\n    total_timeout: -1s\n" + minimal,
			[]string{":3: server.linger.max_bytes: must be at least server.discard.max_bytes (262144): the discard's bytes count toward it; got 102400",
				":4: server.linger.read_timeout: must be a positive duration, got 0s", ":5: server.linger.total_timeout: cannot be negative, got \"-1s\""}},
		{"the lingering budget left at its default below a raised discard bound points at its section", "server:\n  discard:\n    max_bytes: 128MiB\n" + minimal,
			[]string{":1: server.linger.max_bytes: must be at least server.discard.max_bytes (134217728)"}},
		{"a misspelt linger key", "server:\n  linger:\n    lingering_time: 1s\n" + minimal,
			[]string{":3: server.linger.lingering_time: unknown key; allowed here: max_bytes, read_timeout, total_timeout"}},
		{"the audio body bound must be positive", "listen: :1\nmax_audio_body_bytes: 0\n" + minimal,
			[]string{":2: max_audio_body_bytes: must be positive, got 0"}},
		{"the body memory holds the audio bound when it is set", "max_audio_body_bytes: 25MiB\nserver:\n  max_body_memory: 16MiB\n" + minimal,
			[]string{":3: server.max_body_memory: must be at least max_audio_body_bytes (26214400), the larger body bound; got 16777216"}},
		{"the body memory holds the JSON bound when it is the larger", "max_body_bytes: 64MiB\nserver:\n  max_body_memory: 32MiB\n" + minimal,
			[]string{":3: server.max_body_memory: must be at least max_body_bytes (67108864), the larger body bound; got 33554432"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "sluice.yaml")
			os.WriteFile(p, []byte(tc.src), 0o600)
			_, err := Load(p)
			if err == nil {
				t.Fatal("accepted an invalid config")
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, p+w) {
					t.Errorf("error\n%s\ndoes not contain %q", msg, p+w)
				}
			}
			for _, leak := range []string{"config.", "!!", "type ", "construct"} {
				if strings.Contains(msg, leak) {
					t.Errorf("error %q speaks Go/YAML internals (%q)", msg, leak)
				}
			}
		})
	}
}

// A config validated with the policy check is Checked, so a build need not
// validate it again; validating a changed config again can take that back.
func TestPolicyCheckedConfigIsMarked(t *testing.T) {
	noPolicy := func(name string) error { return errors.New("unknown policy") }
	anyPolicy := func(string) error { return nil }
	p := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(p, []byte("models:\n  - name: m1\n    policy: nope\n    backends: [{url: http://127.0.0.1:9001}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadWith(p, noPolicy)
	if err == nil || !strings.Contains(err.Error(), p+":3: models[0].policy: unknown policy") {
		t.Fatalf("want FILE:LINE: key: problem, got %v", err)
	}
	c, err := Load(p)
	if err != nil || c.Checked() {
		t.Fatalf("Load without a policy check: %v, checked %v; want no error, not checked", err, c.Checked())
	}
	if c, err = LoadWith(p, anyPolicy); err != nil || !c.Checked() {
		t.Fatalf("LoadWith: %v, checked %v; want checked", err, c.Checked())
	}
	c.Listen = ""
	if err := c.ValidateWith(anyPolicy); err == nil || c.Checked() {
		t.Fatalf("invalid after a change: %v, checked %v; want an error, not checked", err, c.Checked())
	}
}

// A consul discovery source decodes into its block, the source's own
// scheme (the backends') apart from the agent's.
func TestConsulDiscoveryDecodes(t *testing.T) {
	c, err := Parse([]byte("models:\n  - name: m\n    discovery:\n      - type: consul\n        scheme: https\n        consul:\n" +
		"          service: vllm-llama\n          tags: [gpu, v1]\n          datacenter: dc1\n          address: consul.internal:8501\n" +
		"          scheme: https\n          token_file: /run/secrets/consul-token\n          wait: 30s\n"))
	if err != nil {
		t.Fatal(err)
	}
	d := c.Models[0].Discovery[0]
	want := ConsulDiscovery{Service: "vllm-llama", Tags: []string{"gpu", "v1"}, Datacenter: "dc1", Address: "consul.internal:8501",
		Scheme: "https", TokenFile: "/run/secrets/consul-token", Wait: Duration(30 * time.Second)}
	if d.Scheme != "https" || !reflect.DeepEqual(d.Consul, want) {
		t.Fatalf("decoded %+v", d)
	}
}

func TestForecastSection(t *testing.T) {
	cfg, err := Parse([]byte("forecast: {enabled: true, interval: 30s, max_horizon: 2h}\n" + minimal))
	if err != nil {
		t.Fatal(err)
	}
	if f := cfg.Forecast; f.Interval.D() != 30*time.Second || f.MaxHorizon.D() != 2*time.Hour || f.MaxSeries != 256 || !f.PerTenant {
		t.Errorf("forecast %+v: want interval 30s, max_horizon 2h and the defaults", f)
	}
	for _, c := range []struct{ yaml, key string }{
		{"interval: 7s", "forecast.interval"},
		{"interval: 20m", "forecast.interval"},
		{"max_horizon: 2s", "forecast.max_horizon"},
		{"interval: 1s, max_horizon: 1h", "forecast.max_horizon"},
		{"min_tenant_rate: 0", "forecast.min_tenant_rate"},
		{"max_series: 0", "forecast.max_series"},
		{"max_gap: -1s", "forecast.max_gap"},
		{"snapshot_interval: 0s", "forecast.snapshot_interval"},
	} {
		_, err := Parse([]byte("forecast:\n  enabled: true\n  " + strings.ReplaceAll(c.yaml, ", ", "\n  ") + "\n" + minimal))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Key != c.key || fe.Line == 0 {
			t.Errorf("%s: error %v, want one for %s with its line", c.yaml, err, c.key)
		}
	}
}

// TestAudioBoundFollowsASmallBodyMemory: a file that bounds the bodies'
// memory below the audio forms' default (and sets no audio bound) loads
// as it did before that bound existed, the audio bound lowered to fit;
// one that sets both reads them as written.
func TestAudioBoundFollowsASmallBodyMemory(t *testing.T) {
	base := "models:\n  - name: m1\n    backends:\n      - url: http://127.0.0.1:1\n"
	c, err := Parse([]byte("server:\n  max_body_memory: 16MiB\n" + base))
	if err != nil {
		t.Fatalf("a 16 MiB body memory without an audio bound: %v", err)
	}
	if c.MaxAudioBodyBytes != 16<<20 || c.MaxBodyBytes != 8<<20 {
		t.Fatalf("audio bound %d, body bound %d; want 16 MiB and 8 MiB", c.MaxAudioBodyBytes, c.MaxBodyBytes)
	}
	c, err = Parse([]byte("max_audio_body_bytes: 12MiB\nserver:\n  max_body_memory: 16MiB\n" + base))
	if err != nil || c.MaxAudioBodyBytes != 12<<20 {
		t.Fatalf("both set: %v, audio bound %d", err, c.MaxAudioBodyBytes)
	}
	c, err = Parse([]byte(base))
	if err != nil || c.MaxAudioBodyBytes != 25<<20 {
		t.Fatalf("defaults: %v, audio bound %d", err, c.MaxAudioBodyBytes)
	}
}
