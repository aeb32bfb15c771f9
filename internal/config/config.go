// Package config defines Sluice's typed configuration, its documented
// defaults, and validation whose errors name the file, the key and the
// problem. Loading never half-applies: a config is either valid as a whole
// or refused.
package config

import (
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v4"

	"github.com/sluice-gw/sluice/internal/telemetry"
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
	StreamIdle Duration `yaml:"stream_idle"` // max gap between response chunks
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

// LoadMetrics configures scraping of backends' own /metrics (vLLM, SGLang):
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
	// Preset picks the metric names: vllm (default) or sglang.
	Preset string `yaml:"preset"`
	// StaleAfter: an older reading counts as saturated. Default 3x interval.
	StaleAfter Duration `yaml:"stale_after"`
}

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
			Active: Active{Path: "/health", Interval: Duration(5 * time.Second), Timeout: Duration(2 * time.Second), Passes: 2, Fails: 1}},
		Log: Log{Level: "info", Access: true, AccessRefusedPerSecond: 1000},
		Breaker: Breaker{Enabled: true, Window: Duration(30 * time.Second), MinRequests: 20, FailureRatio: 0.5,
			SlowRatio: 1, OpenFor: Duration(10 * time.Second), MaxOpenFor: Duration(80 * time.Second),
			HalfOpenProbes: 1, MaxEjectedRatio: 0.5},
		TLS:         defaultTLS(),
		Server:      defaultServer(),
		Admin:       defaultAdmin(),
		Admission:   defaultAdmission(),
		Cache:       defaultCache(),
		Queue:       defaultQueue(),
		Auth:        Auth{JWT: defaultJWT()},
		Forecast:    defaultForecast(),
		Scaling:     defaultScaling(),
		LoadMetrics: LoadMetrics{Enabled: true, Interval: Duration(time.Second), Path: "/metrics", Preset: "vllm"},
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
	if err := cfg.ValidateWith(policyOK); err != nil {
		return nil, lines.annotate(err)
	}
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

// ValidPolicy is set by the caller that knows the routing policies, so this
// package does not import routing. nil accepts any name.
type PolicyCheck func(name string) error

// Validate checks every key and reports all problems at once, each naming
// its key path.
func (c *Config) Validate() error { return c.ValidateWith(nil) }

// Checked reports that the last ValidateWith, with a policy check, found
// no problem. Whoever changes a Checked config validates it again.
func (c *Config) Checked() bool { return c.checked }

// ValidateWith is Validate with a policy-name check. Each section checks
// its own keys; every problem is collected, none stops the others. With a
// policy check it records the outcome for Checked.
func (c *Config) ValidateWith(policyOK PolicyCheck) error {
	err := c.validate(policyOK)
	if policyOK != nil {
		c.checked = err == nil
	}
	return err
}

func (c *Config) validate(policyOK PolicyCheck) error {
	var v validator
	bad := v.bad
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "want host:port or :port, got %q", c.Listen)
	}
	if c.MaxBodyBytes <= 0 {
		bad("max_body_bytes", "must be positive")
	}
	if c.MaxAudioBodyBytes <= 0 {
		bad("max_audio_body_bytes", "must be positive, got %d", c.MaxAudioBodyBytes)
	}
	if c.UpstreamClient != UpstreamLean && c.UpstreamClient != UpstreamNetHTTP {
		bad("upstream_client", "must be %q or %q, got %q", UpstreamLean, UpstreamNetHTTP, c.UpstreamClient)
	}
	c.validateTimeouts(bad)
	c.validateRetry(bad)
	c.validateHealth(bad)
	c.validateBreaker(bad)
	c.validateServer(bad)
	c.validateTLS(bad)
	c.validateUpstreamTLS(bad)
	c.validateAdmission(bad)
	c.validateCache(bad)
	c.validateQueue(bad)
	c.validateForecast(bad)
	c.validateScaling(bad)
	c.RateLimits.validate(bad)
	c.validateLoadMetrics(bad)
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	if c.Log.AccessRefusedPerSecond < 0 {
		bad("log.access_refused_per_second", "must be 0 (no bound) or more, got %d", c.Log.AccessRefusedPerSecond)
	}
	c.validateModels(bad, policyOK)
	return v.err()
}

// badFunc reports one problem with the key at a path.
type badFunc = func(key, format string, args ...any)

func (c *Config) validateTimeouts(bad badFunc) {
	for _, t := range []struct {
		key string
		d   Duration
	}{
		{"timeouts.connect", c.Timeouts.Connect}, {"timeouts.first_byte", c.Timeouts.FirstByte},
		{"timeouts.stream_idle", c.Timeouts.StreamIdle}, {"timeouts.total", c.Timeouts.Total},
	} {
		if t.d <= 0 {
			bad(t.key, "must be a positive duration, got %s", time.Duration(t.d))
		}
	}
	if f := c.Timeouts.FirstTokenFactor; !(f >= 0 && f <= 1000) {
		bad("timeouts.first_token_factor", "must be between 0 (off) and 1000, got %g", f)
	}
}

func (c *Config) validateRetry(bad badFunc) {
	if c.Retry.Attempts < 1 || c.Retry.Attempts > 10 {
		bad("retry.attempts", "must be between 1 and 10, got %d", c.Retry.Attempts)
	}
	if f := c.Retry.HedgeFactor; !(f >= 0 && f <= 1000) {
		bad("retry.hedge_factor", "must be between 0 (off) and 1000, got %g", f)
	}
	if f := c.Retry.HedgeBudgetRatio; !(f >= 0 && f <= 1) {
		bad("retry.hedge_budget_ratio", "must be between 0 and 1, got %g", f)
	}
	if n := c.Retry.HedgeMinInFlight; n < 0 || n > 1000 {
		bad("retry.hedge_min_in_flight", "must be between 0 and 1000, got %d", n)
	}
	if c.Retry.MinPerSecond < 0 {
		bad("retry.min_per_second", "must be 0 or more, got %g", c.Retry.MinPerSecond)
	}
	if c.Retry.BudgetRatio < 0 || c.Retry.BudgetRatio > 1 {
		bad("retry.budget_ratio", "must be between 0 and 1, got %g", c.Retry.BudgetRatio)
	}
}

func (c *Config) validateHealth(bad badFunc) {
	if c.Health.MaxFails < 0 {
		bad("health.max_fails", "must be >= 0")
	}
	if c.Health.MaxFails > 0 && c.Health.FailTimeout <= 0 {
		bad("health.fail_timeout", "must be positive when max_fails > 0")
	}
	if c.Health.MaxEjectionTime < 0 {
		bad("health.max_ejection_time", "must be >= 0")
	}
	// 0 is the default (2 passes, 1 fail); a negative count read as it.
	if c.Health.Active.Passes < 0 {
		bad("health.active.passes", "must be 0 (default 2) or more, got %d", c.Health.Active.Passes)
	}
	if c.Health.Active.Fails < 0 {
		bad("health.active.fails", "must be 0 (default 1) or more, got %d", c.Health.Active.Fails)
	}
	if a := c.Health.Active; a.Interval > 0 {
		if !strings.HasPrefix(a.Path, "/") {
			bad("health.active.path", "must start with /, got %q", a.Path)
		}
		if a.Timeout <= 0 || a.Timeout > a.Interval {
			bad("health.active.timeout", "must be positive and at most health.active.interval")
		}
	}
}

func (c *Config) validateBreaker(bad badFunc) {
	br := c.Breaker
	if !br.Enabled {
		return
	}
	if br.FailureRatio <= 0 || br.SlowRatio <= 0 {
		bad("breaker.failure_ratio", "failure_ratio and slow_ratio must be positive (above 1 disables that trip)")
	}
	// 0 is the default; a negative count read as it.
	if br.MinRequests < 0 {
		bad("breaker.min_requests", "must be 0 (default 20) or more, got %d", br.MinRequests)
	}
	if br.HalfOpenProbes < 0 {
		bad("breaker.half_open_probes", "must be 0 (default 1) or more, got %d", br.HalfOpenProbes)
	}
	if br.MaxEjectedRatio <= 0 || br.MaxEjectedRatio > 1 {
		bad("breaker.max_ejected_ratio", "must be in (0, 1], got %g", br.MaxEjectedRatio)
	}
	if br.Window <= 0 || br.OpenFor <= 0 {
		bad("breaker.window", "window and open_for must be positive durations")
	}
}

func (c *Config) validateLoadMetrics(bad badFunc) {
	if c.LoadMetrics.Interval <= 0 {
		bad("load_metrics.interval", "must be a positive duration")
	}
	if c.LoadMetrics.Preset != "vllm" && c.LoadMetrics.Preset != "sglang" {
		bad("load_metrics.preset", "must be vllm or sglang, got %q", c.LoadMetrics.Preset)
	}
	if !strings.HasPrefix(c.LoadMetrics.Path, "/") {
		bad("load_metrics.path", "must start with /, got %q", c.LoadMetrics.Path)
	}
}

// validateModels checks every model: a unique name, a known policy, at
// least one backend, fallbacks to other known models.
func (c *Config) validateModels(bad badFunc, policyOK PolicyCheck) {
	if len(c.Models) == 0 {
		bad("models", "at least one model is required")
	}
	seen := map[string]bool{}
	for i := range c.Models {
		m := &c.Models[i]
		key := fmt.Sprintf("models[%d]", i)
		if m.Name == "" {
			bad(key+".name", "must not be empty")
		} else if seen[m.Name] {
			bad(key+".name", "duplicate model %q", m.Name)
		}
		seen[m.Name] = true
		if policyOK != nil && m.Policy != "" {
			if err := policyOK(m.Policy); err != nil {
				bad(key+".policy", "%v", err)
			}
		}
		if len(m.Backends) == 0 && len(m.Discovery) == 0 {
			bad(key+".backends", "at least one backend (or a discovery source) is required")
		}
		if m.SlowStart != nil && *m.SlowStart < 0 {
			bad(key+".slow_start", "must be 0 (off) or a positive duration")
		}
		for j, d := range m.Discovery {
			d.validate(bad, fmt.Sprintf("%s.discovery[%d]", key, j))
		}
		if m.MaxWait < 0 {
			bad(key+".max_wait", "must be 0 (admission.max_wait) or a positive duration")
		}
		if m.MaxWaitBatch < 0 {
			bad(key+".max_wait_batch", "must be 0 (admission.max_wait_batch) or a positive duration")
		}
		for j, f := range m.Fallbacks {
			if f == m.Name {
				bad(fmt.Sprintf("%s.fallbacks[%d]", key, j), "a model cannot fall back to itself")
			} else if !c.hasModel(f) {
				bad(fmt.Sprintf("%s.fallbacks[%d]", key, j), "unknown model %q", f)
			}
		}
		for j, b := range m.Backends {
			b.validate(bad, fmt.Sprintf("%s.backends[%d]", key, j))
		}
	}
}

func (b Backend) validate(bad badFunc, key string) {
	if !strings.HasPrefix(b.URL, "http://") && !strings.HasPrefix(b.URL, "https://") {
		bad(key+".url", "must be an http:// or https:// URL, got %q", telemetry.RedactURL(b.URL))
	}
	if b.Weight < 0 {
		bad(key+".weight", "must be >= 0")
	}
	if b.MaxConcurrency < 0 {
		bad(key+".max_concurrency", "must be >= 0")
	}
	if b.PassClientAuth && b.APIKey != "" {
		bad(key+".pass_client_auth", "cannot be combined with api_key (which credentials would the backend get?)")
	}
	validateEngine(bad, key+".engine", b.Engine)
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

// validator collects the problems found, each a FieldError naming its key.
type validator struct{ errs []error }

func (v *validator) bad(key, format string, args ...any) {
	if len(v.errs) >= maxProblems { // only counted: no message made
		report(&v.errs, nil)
		return
	}
	report(&v.errs, &FieldError{Key: key, Problem: fmt.Sprintf(format, args...)})
}

func (v *validator) err() error { return errors.Join(v.errs...) }

func (c *Config) hasModel(name string) bool {
	for _, m := range c.Models {
		if m.Name == name {
			return true
		}
	}
	return false
}
