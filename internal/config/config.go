// Package config defines Sluice's typed configuration, its documented
// defaults, and validation whose errors name the file, the key and the
// problem. Loading never half-applies: a config is either valid as a whole
// or refused.
package config

import (
	"errors"
	"fmt"
	"reflect"
	"time"

	"go.yaml.in/yaml/v4"
)

// Config is the whole gateway configuration. The zero value is not valid;
// use Default() or Load().
type Config struct {
	// Listen is the client-facing address, e.g. ":8080".
	Listen string `yaml:"listen"`
	// MaxBodyBytes bounds a request body; larger bodies get 413. The
	// audio forms have their own bound, MaxAudioBodyBytes. Default 8MiB.
	MaxBodyBytes ByteSize `yaml:"max_body_bytes"`
	// MaxAudioBodyBytes bounds the body of /v1/audio/transcriptions and
	// /v1/audio/translations (multipart/form-data); larger forms get 413.
	// A form is scanned for its fields, never parsed as JSON, so it may
	// be larger than max_body_bytes allows JSON. Default 25MiB
	// (26214400 bytes): the bound OpenAI enforces on the whole request
	// ("Maximum content size limit (26214400)"), so a file within its
	// documented 25 MB passes with 1.2 MB left for the form's other parts.
	MaxAudioBodyBytes ByteSize `yaml:"max_audio_body_bytes"`
	// ShutdownGrace is how long in-flight requests may run after SIGTERM.
	ShutdownGrace Duration `yaml:"shutdown_grace"`
	// ExposeBackend adds X-Sluice-Backend (host:port of the backend that
	// answered) to responses. Off by default: it reveals internal addresses.
	ExposeBackend bool `yaml:"expose_backend"`
	// UpstreamClient is the HTTP/1.1 client for plain http:// backends:
	// "lean" (internal/h1client: request and response handled in the
	// request's own goroutine, ~20% less CPU per proxied request) or
	// "net/http" (Go's http.Transport). https backends always use
	// net/http (HTTP/2 over TLS). Default "lean".
	UpstreamClient string `yaml:"upstream_client"`
	// TLS: the client listener's certificate; off by default (tls.go).
	TLS TLS `yaml:"tls"`
	// UpstreamTLS: TLS to https backends, every backend's default; a
	// backend's own tls replaces it (upstreamtls.go).
	UpstreamTLS UpstreamTLS `yaml:"upstream_tls"`
	Server      Server      `yaml:"server"`
	Admin       Admin       `yaml:"admin"`
	Timeouts    Timeouts    `yaml:"timeouts"`
	Retry       Retry       `yaml:"retry"`
	Health      Health      `yaml:"health"`
	LoadMetrics LoadMetrics `yaml:"load_metrics"`
	Breaker     Breaker     `yaml:"breaker"`
	Admission   Admission   `yaml:"admission"`
	Auth        Auth        `yaml:"auth"`
	Cache       Cache       `yaml:"cache"`
	// Queue: async jobs and the Batch API on NATS JetStream; see queue.go.
	// Every key is read at start: a reload that changes one keeps the
	// running value and names the key in its warning.
	Queue Queue `yaml:"queue"`
	// RateLimits: per key / tenant / IP / global, requests and tokens; see
	// examples/sluice.yaml. Empty = no rate limits.
	RateLimits RateLimits `yaml:"rate_limits"`
	// Scaling: the signals a scaler acts on; see scaling.go.
	Scaling Scaling `yaml:"scaling"`
	Log     Log     `yaml:"log"`
	Models  []Model `yaml:"models"`

	// Forecast: the traffic forecaster; see forecast.go. Every key is read
	// at start: a reload that changes one keeps the running value and
	// names the key in its warning.
	Forecast Forecast `yaml:"forecast"`

	// checked: see Checked.
	checked bool
	// warnings: see Warnings.
	warnings []*FieldError
	// file and lines: where the config was read from and each key's
	// line in it, for KeyError ("" and nil from flags or Parse's bytes).
	file  string
	lines keyLines
}

// UpstreamClient values.
const (
	UpstreamLean    = "lean"
	UpstreamNetHTTP = "net/http"
)

// Timeouts bound each phase of an upstream request.
type Timeouts struct {
	Connect    Duration `yaml:"connect"`     // TCP (+TLS) connect
	FirstByte  Duration `yaml:"first_byte"`  // request sent -> response headers
	StreamIdle Duration `yaml:"stream_idle"` // max gap between response chunks; also of a body write the backend stops taking
	Total      Duration `yaml:"total"`       // whole request, including the stream
	// FirstTokenFactor bounds a streaming request's wait for its first
	// token at this multiple of its class's time-to-first-token objective
	// (admission.max_wait / max_wait_batch), within FirstByte. A stream
	// that has not started long after its objective is no use to the
	// client and holds a backend slot; a hung backend is cut there (504,
	// counted as a backend failure) instead of at first_byte. Non-streaming
	// requests are not affected: their whole answer is their first byte.
	// Default 4; 0 turns it off.
	FirstTokenFactor float64 `yaml:"first_token_factor"`
}

// Retry bounds retries of requests that failed before any byte reached the
// client. A reload applies it and keeps the retry budget's balance and the
// hedges it counts in flight.
type Retry struct {
	Attempts int `yaml:"attempts"` // total tries, including the first
	// BudgetRatio caps retries at this fraction of requests (Finagle-style
	// retry budget) so retries cannot amplify an overload.
	BudgetRatio float64 `yaml:"budget_ratio"`
	// MinPerSecond lets a few retries through at low traffic.
	MinPerSecond float64 `yaml:"min_per_second"`
	// HedgeFactor hedges streams: one whose first token is later than this
	// multiple of the pool's learned tail time to first token (the fastest
	// usable backend's typical TTFT plus twice its mean deviation, about
	// its p95) is sent to a second backend too and the first to start is
	// relayed (the loser ends: a hedge at once, a first attempt at its own
	// first token unless a live request needs its slot sooner). A hedge
	// needs an attempt left (not the retry budget: it has its own),
	// spare capacity (nothing waiting in the model's admission queue, a
	// free slot, taken back by the first live request that would wait; a
	// free slot under the hedge's backend's own limit) and room in the
	// hedge budget. Default 1; 0 turns hedging off.
	HedgeFactor float64 `yaml:"hedge_factor"`
	// HedgeBudgetRatio and HedgeMinInFlight bound hedges in flight at
	// max(hedge_min_in_flight, hedge_budget_ratio x requests in flight)
	// (Envoy's budget_percent and min_retry_concurrency). Defaults 0.1
	// and 3.
	HedgeBudgetRatio float64 `yaml:"hedge_budget_ratio"`
	HedgeMinInFlight int     `yaml:"hedge_min_in_flight"`
}

// Health configures passive (nginx semantics) and active checks.
type Health struct {
	MaxFails    int      `yaml:"max_fails"`
	FailTimeout Duration `yaml:"fail_timeout"`
	BusyPenalty Duration `yaml:"busy_penalty"`
	// MaxEjectionTime, above FailTimeout, lengthens each passive ejection
	// of a backend that keeps failing after its return: the nth in a row
	// lasts n × fail_timeout up to this (Envoy's max_ejection_time). 0,
	// the default: every ejection lasts fail_timeout (nginx).
	MaxEjectionTime Duration `yaml:"max_ejection_time"`
	Active          Active   `yaml:"active"`
}

// Active health probing, on by default (every 5s): which backends are
// probed, and where, follows their engine (internal/health PlanFor);
// disabled when Interval is 0.
type Active struct {
	Path     string   `yaml:"path"`
	Interval Duration `yaml:"interval"`
	Timeout  Duration `yaml:"timeout"`
	Passes   int      `yaml:"passes"`
	Fails    int      `yaml:"fails"`
}

// LoadMetrics configures scraping of backends' own /metrics (vLLM, SGLang, llama.cpp):
// for the least_load and prefix_affinity policies, and (Enabled, default
// on) to cap each backend's concurrency limit by what it can start.
type LoadMetrics struct {
	// Enabled scrapes every backend and caps its concurrency limit by its
	// running and waiting requests against its learned batch size, so no
	// backend is sent more than it can start (default true). false scrapes
	// only while a model's policy reads the load, and caps nothing.
	Enabled  bool     `yaml:"enabled"`
	Interval Duration `yaml:"interval"` // default 1s
	Timeout  Duration `yaml:"timeout"`  // default: interval
	Path     string   `yaml:"path"`     // default /metrics
	// Preset picks the metric names: vllm (default), sglang or llamacpp
	// (llama-server --metrics). vllm and sglang also read llama.cpp's
	// names, after their own (scrape.Preset).
	Preset string `yaml:"preset"`
	// StaleAfter: an older reading counts as saturated. Default 3x interval.
	StaleAfter Duration `yaml:"stale_after"`
	// BatchBoundMetrics are the names, in order of preference, of a gauge
	// in which an engine reports the most requests it runs at once
	// (default sglang:max_running_requests, sluice_sim_slots; vLLM has
	// none). A fresh reading with nothing queued, less other clients'
	// load, is a ceiling for the slots a newly busy tenant may ramp into
	// beside the others' margins (docs/RELIABILITY.md, branch coldramp).
	// [] reads none.
	BatchBoundMetrics []string `yaml:"batch_bound_metrics"`
}

// DefaultBatchBoundMetrics is load_metrics.batch_bound_metrics' default,
// scrape.DefaultBatchBound (config imports no runtime package).
func DefaultBatchBoundMetrics() []string {
	return []string{"sglang:max_running_requests", "sluice_sim_slots"}
}

// Same reports whether l and o configure the same scraping (LoadMetrics
// holds a slice, so == does not compile); a nil name list (scrape's
// default names) differs from an empty one (none), as DeepEqual has it.
func (l LoadMetrics) Same(o LoadMetrics) bool { return reflect.DeepEqual(l, o) }

// Breaker configures per-backend circuit breakers (Sentinel / resilience4j
// semantics) and the cap on how much of a pool they may eject.
type Breaker struct {
	Enabled         bool     `yaml:"enabled"`
	Window          Duration `yaml:"window"`            // sliding window, default 30s
	MinRequests     int      `yaml:"min_requests"`      // no verdict below this many calls, default 20
	FailureRatio    float64  `yaml:"failure_ratio"`     // open at this error ratio, default 0.5
	SlowCall        Duration `yaml:"slow_call"`         // a call slower than this (to first byte) is slow; 0 = off
	SlowRatio       float64  `yaml:"slow_ratio"`        // open at this slow-call ratio, default 1.0
	OpenFor         Duration `yaml:"open_for"`          // first open period, doubling per trip, default 10s
	MaxOpenFor      Duration `yaml:"max_open_for"`      // cap of the doubling, default 80s
	HalfOpenProbes  int      `yaml:"half_open_probes"`  // trial calls when half-open, default 1
	MaxEjectedRatio float64  `yaml:"max_ejected_ratio"` // at most this share of a pool open at once, default 0.5
}

// Log configures the structured logger.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Access bool   `yaml:"access"` // one line per request
	// AccessRefusedPerSecond bounds the access lines, per second, of
	// requests the gateway answered 4xx/5xx itself, no backend involved
	// (bad input, auth, rate limits, shedding, unknown URLs), and of the
	// answers the public listener makes itself (connections over its cap,
	// malformed heads, late heads): the rest are counted and summed up in
	// one line a second. 0: no bound.
	AccessRefusedPerSecond int `yaml:"access_refused_per_second"`
}

// Model is one model name clients may ask for, served by a pool.
type Model struct {
	Name     string    `yaml:"name"`
	Policy   string    `yaml:"policy"`
	Backends []Backend `yaml:"backends"`
	// Fallbacks are other models, in order, that serve this model's
	// requests when its pool is saturated past the request's deadline or has
	// no usable backend. The response's X-Sluice-Model names the server.
	Fallbacks []string `yaml:"fallbacks"`
	// MaxWait / MaxWaitBatch override admission.max_wait / max_wait_batch
	// (the time-to-first-token objective per class) for this model; 0
	// keeps admission's.
	MaxWait      Duration `yaml:"max_wait"`
	MaxWaitBatch Duration `yaml:"max_wait_batch"`
	// Discovery adds backends found while running (internal/discovery)
	// to the static ones in Backends; either may be empty, not both.
	Discovery []Discovery `yaml:"discovery"`
	// SlowStart is the window over which a backend that joins a running
	// pool (found by discovery, or added by a reload) ramps its weight and
	// concurrency limit from a tenth to full, so a cold server is not
	// flooded (nginx slow_start, Envoy slow_start_window). Unset: 30s
	// (SlowStartFor); 0 turns it off.
	SlowStart *Duration `yaml:"slow_start"`
	// Moderation declares that the model serves /v1/moderations. OpenAI
	// makes that request's model optional; one without a model goes to
	// the model so declared when exactly one is, and is refused 400
	// otherwise (naming the ones declared). Requests naming a model are
	// routed by it whatever this says. Default false.
	Moderation bool `yaml:"moderation"`
}

// Backend is one upstream server of a model's pool.
type Backend struct {
	URL            string `yaml:"url"`
	Weight         int    `yaml:"weight"`
	MaxConcurrency int    `yaml:"max_concurrency"`
	// APIKey is sent upstream as a Bearer token. ${VAR} is expanded from the
	// environment so secrets stay out of the file.
	APIKey string `yaml:"api_key"`
	// UpstreamModel replaces the request's model name for this backend.
	UpstreamModel string `yaml:"upstream_model"`
	// PassClientAuth sends the client's own Authorization header to this
	// backend (clients bringing their own provider keys). Default false:
	// a backend gets its api_key, or no Authorization at all.
	PassClientAuth bool `yaml:"pass_client_auth"`
	// Engine is what serves it (Engines: vllm, sglang, llamacpp, tgi,
	// ollama, hosted); it decides the active health check's probe. Unset:
	// probed unless it has an api_key (internal/health PlanFor).
	Engine string `yaml:"engine"`
	// TLS replaces upstream_tls for this backend (https only); nil: the
	// default applies.
	TLS *UpstreamTLS `yaml:"tls"`
}

// Default returns the documented defaults (see examples/sluice.yaml).
func Default() Config {
	return Config{
		Listen:            ":8080",
		MaxBodyBytes:      8 << 20,
		MaxAudioBodyBytes: 25 << 20,
		ShutdownGrace:     Duration(30 * time.Second),
		UpstreamClient:    UpstreamLean,
		Timeouts: Timeouts{
			Connect:          Duration(5 * time.Second),
			FirstByte:        Duration(120 * time.Second),
			StreamIdle:       Duration(60 * time.Second),
			Total:            Duration(10 * time.Minute),
			FirstTokenFactor: 4,
		},
		Retry: Retry{Attempts: 3, BudgetRatio: 0.2, MinPerSecond: 5, HedgeFactor: 1, HedgeBudgetRatio: 0.1, HedgeMinInFlight: 3},
		Health: Health{MaxFails: 3, FailTimeout: Duration(10 * time.Second), BusyPenalty: Duration(time.Second),
			Active: Active{Path: "/health", Interval: Duration(5 * time.Second), Timeout: Duration(2 * time.Second), Passes: 2, Fails: 2}},
		Log: Log{Level: "info", Access: true, AccessRefusedPerSecond: 1000},
		Breaker: Breaker{Enabled: true, Window: Duration(30 * time.Second), MinRequests: 20, FailureRatio: 0.5,
			SlowRatio: 1, OpenFor: Duration(10 * time.Second), MaxOpenFor: Duration(80 * time.Second),
			HalfOpenProbes: 1, MaxEjectedRatio: 0.5},
		TLS:       defaultTLS(),
		Server:    defaultServer(),
		Admin:     defaultAdmin(),
		Admission: defaultAdmission(),
		Cache:     defaultCache(),
		Queue:     defaultQueue(),
		Auth:      Auth{JWT: defaultJWT()},
		Forecast:  defaultForecast(),
		Scaling:   defaultScaling(),
		LoadMetrics: LoadMetrics{Enabled: true, Interval: Duration(time.Second), Path: "/metrics", Preset: "vllm",
			BatchBoundMetrics: DefaultBatchBoundMetrics()},
	}
}

// Load reads, expands, decodes (strictly: unknown keys are errors) and
// validates a YAML file on top of the defaults; policy names are not
// checked (LoadWith does).
func Load(path string) (*Config, error) { return LoadWith(path, nil) }

// LoadWith is Load with a policy-name check. With one, the config comes
// back Checked: a build need not validate it again.
func LoadWith(path string, policyOK PolicyCheck) (*Config, error) {
	data, err := readFile(path)
	if err != nil {
		if errors.Is(err, ErrFileTooLarge) {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := ParseWith(data, policyOK)
	if err != nil {
		return nil, inFile(path, err)
	}
	for _, w := range cfg.warnings {
		w.File = path
	}
	cfg.file = path
	return cfg, nil
}

// Parse decodes and validates YAML bytes on top of the defaults.
func Parse(data []byte) (*Config, error) { return ParseWith(data, nil) }

// ParseWith is Parse with a policy-name check (see LoadWith).
func ParseWith(data []byte, policyOK PolicyCheck) (*Config, error) {
	cfg := Default()
	if err := notUTF8(data); err != nil {
		return nil, err
	}
	if err := checkDensity(data); err != nil {
		return nil, err
	}
	marked, envNames := markEnv(data)
	var root yaml.Node
	if err := yaml.Load(marked, &root); err != nil && !noDocument(err) {
		return nil, yamlProblems(err, marked)
	}
	lines := keyLines{}
	// An empty file (or only comments) is no document: nothing to check or
	// decode, and validation says what is missing (models).
	if root.Kind != 0 {
		var errs []error
		// An unset variable is one more problem: the others are listed too
		// (validation leaves out what lies under its key).
		expandEnv(&root, "", envNames, &errs)
		checkSchema(&root, reflect.TypeFor[Config](), "", lines, &errs)
		if len(errs) > 0 {
			errs = append(errs, alsoInvalid(&root, lines, errs, policyOK)...)
			return nil, errors.Join(errs...)
		}
		// Repeated keys were refused by checkSchema, in one pass; the
		// library's own check compares every pair of keys in a mapping.
		if err := root.Load(&cfg, yaml.WithKnownFields(), yaml.WithUniqueKeys(false)); err != nil {
			return nil, yamlProblems(err, marked)
		}
	}
	cfg.fitAudioBound(lines)
	cfg.Auth.JWT.inheritJWT(func(key string) bool { _, ok := lines[key]; return ok })
	if err := cfg.ValidateWith(policyOK); err != nil {
		return nil, lines.annotate(err)
	}
	cfg.warnings = append(cfg.keyStrengthWarnings(lines), cfg.batchTenantWarnings(lines)...)
	cfg.lines = lines
	return &cfg, nil
}

// fitAudioBound keeps a file that bounds all bodies' memory below the
// audio forms' default bound loading as before the bound existed: unset,
// max_audio_body_bytes is its default or server.max_body_memory, the
// smaller (set, it must fit, and validation says so).
func (c *Config) fitAudioBound(lines keyLines) {
	if _, set := lines["max_audio_body_bytes"]; !set && c.MaxAudioBodyBytes > c.Server.MaxBodyMemory {
		c.MaxAudioBodyBytes = c.Server.MaxBodyMemory
	}
}

// DefaultSlowStart is a model's slow_start when unset.
const DefaultSlowStart = 30 * time.Second

// SlowStartFor is m's slow-start window: slow_start, or DefaultSlowStart
// when unset; 0 is off.
func SlowStartFor(m *Model) time.Duration {
	if m.SlowStart == nil {
		return DefaultSlowStart
	}
	return m.SlowStart.D()
}
