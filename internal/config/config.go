// Package config defines Sluice's typed configuration, its documented
// defaults, and validation whose errors name the file, the key and the
// problem. Loading never half-applies: a config is either valid as a whole
// or refused.
package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v4"
)

// Config is the whole gateway configuration. The zero value is not valid;
// use Default() or Load().
type Config struct {
	// Listen is the client-facing address, e.g. ":8080".
	Listen string `yaml:"listen"`
	// MaxBodyBytes bounds a request body; larger bodies get 413.
	MaxBodyBytes ByteSize `yaml:"max_body_bytes"`
	// ShutdownGrace is how long in-flight requests may run after SIGTERM.
	ShutdownGrace Duration `yaml:"shutdown_grace"`
	// ExposeBackend adds X-Sluice-Backend (host:port of the backend that
	// answered) to responses. Off by default: it reveals internal addresses.
	ExposeBackend bool     `yaml:"expose_backend"`
	Timeouts      Timeouts `yaml:"timeouts"`
	Retry         Retry    `yaml:"retry"`
	Health        Health   `yaml:"health"`
	Log           Log      `yaml:"log"`
	Models        []Model  `yaml:"models"`
}

// Timeouts bound each phase of an upstream request.
type Timeouts struct {
	Connect    Duration `yaml:"connect"`     // TCP (+TLS) connect
	FirstByte  Duration `yaml:"first_byte"`  // request sent -> response headers
	StreamIdle Duration `yaml:"stream_idle"` // max gap between response chunks
	Total      Duration `yaml:"total"`       // whole request, including the stream
}

// Retry bounds retries of requests that failed before any byte reached the
// client.
type Retry struct {
	Attempts int `yaml:"attempts"` // total tries, including the first
	// BudgetRatio caps retries at this fraction of requests (Finagle-style
	// retry budget) so retries cannot amplify an overload.
	BudgetRatio float64 `yaml:"budget_ratio"`
	// MinPerSecond lets a few retries through at low traffic.
	MinPerSecond float64 `yaml:"min_per_second"`
}

// Health configures passive (nginx semantics) and active checks.
type Health struct {
	MaxFails    int      `yaml:"max_fails"`
	FailTimeout Duration `yaml:"fail_timeout"`
	BusyPenalty Duration `yaml:"busy_penalty"`
	Active      Active   `yaml:"active"`
}

// Active health probing; disabled when Interval is 0.
type Active struct {
	Path     string   `yaml:"path"`
	Interval Duration `yaml:"interval"`
	Timeout  Duration `yaml:"timeout"`
	Passes   int      `yaml:"passes"`
	Fails    int      `yaml:"fails"`
}

// Log configures the structured logger.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Access bool   `yaml:"access"` // one line per request
}

// Model is one model name clients may ask for, served by a pool.
type Model struct {
	Name     string    `yaml:"name"`
	Policy   string    `yaml:"policy"`
	Backends []Backend `yaml:"backends"`
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
}

// Default returns the documented defaults (see examples/sluice.yaml).
func Default() Config {
	return Config{
		Listen:        ":8080",
		MaxBodyBytes:  8 << 20,
		ShutdownGrace: Duration(30 * time.Second),
		Timeouts: Timeouts{
			Connect:    Duration(5 * time.Second),
			FirstByte:  Duration(120 * time.Second),
			StreamIdle: Duration(60 * time.Second),
			Total:      Duration(10 * time.Minute),
		},
		Retry:  Retry{Attempts: 3, BudgetRatio: 0.2, MinPerSecond: 5},
		Health: Health{MaxFails: 3, FailTimeout: Duration(10 * time.Second), BusyPenalty: Duration(time.Second)},
		Log:    Log{Level: "info", Access: true},
	}
}

// Load reads, expands, decodes (strictly: unknown keys are errors) and
// validates a YAML file on top of the defaults.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes and validates YAML bytes on top of the defaults.
func Parse(data []byte) (*Config, error) {
	cfg := Default()
	expanded := os.Expand(string(data), func(k string) string {
		if k == "$" {
			return "$"
		}
		return os.Getenv(k)
	})
	if err := yaml.Load([]byte(expanded), &cfg, yaml.WithKnownFields()); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// ValidPolicy is set by the caller that knows the routing policies, so this
// package does not import routing. nil accepts any name.
type PolicyCheck func(name string) error

// Validate checks every key and reports all problems at once, each naming
// its key path.
func (c *Config) Validate() error { return c.ValidateWith(nil) }

// ValidateWith is Validate with a policy-name check.
func (c *Config) ValidateWith(policyOK PolicyCheck) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.Listen == "" {
		bad("listen", "must not be empty")
	}
	if c.MaxBodyBytes <= 0 {
		bad("max_body_bytes", "must be positive")
	}
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
	if c.Retry.Attempts < 1 || c.Retry.Attempts > 10 {
		bad("retry.attempts", "must be between 1 and 10, got %d", c.Retry.Attempts)
	}
	if c.Retry.BudgetRatio < 0 || c.Retry.BudgetRatio > 1 {
		bad("retry.budget_ratio", "must be between 0 and 1, got %g", c.Retry.BudgetRatio)
	}
	if c.Health.MaxFails < 0 {
		bad("health.max_fails", "must be >= 0")
	}
	if c.Health.MaxFails > 0 && c.Health.FailTimeout <= 0 {
		bad("health.fail_timeout", "must be positive when max_fails > 0")
	}
	if a := c.Health.Active; a.Interval > 0 {
		if !strings.HasPrefix(a.Path, "/") {
			bad("health.active.path", "must start with /, got %q", a.Path)
		}
		if a.Timeout <= 0 || a.Timeout > a.Interval {
			bad("health.active.timeout", "must be positive and at most health.active.interval")
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	if len(c.Models) == 0 {
		bad("models", "at least one model is required")
	}
	seen := map[string]bool{}
	for i, m := range c.Models {
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
		if len(m.Backends) == 0 {
			bad(key+".backends", "at least one backend is required")
		}
		for j, b := range m.Backends {
			bk := fmt.Sprintf("%s.backends[%d]", key, j)
			if !strings.HasPrefix(b.URL, "http://") && !strings.HasPrefix(b.URL, "https://") {
				bad(bk+".url", "must be an http:// or https:// URL, got %q", b.URL)
			}
			if b.Weight < 0 {
				bad(bk+".weight", "must be >= 0")
			}
			if b.MaxConcurrency < 0 {
				bad(bk+".max_concurrency", "must be >= 0")
			}
		}
	}
	return errors.Join(errs...)
}
