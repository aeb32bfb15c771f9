// Validation of the top-level keys and the sections defined in config.go;
// the other sections validate themselves next to their types.

package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/telemetry"
)

// PolicyCheck is supplied by the caller that knows the routing policies, so this
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
	if problem := listenAddrProblem(c.Listen, ":8080 or 127.0.0.1:8080"); problem != "" {
		bad("listen", "want host:port or :port, got %q (%s)", c.Listen, problem)
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
		bad("health.active.fails", "must be 0 (default 2) or more, got %d", c.Health.Active.Fails)
	}
	if a := c.Health.Active; a.Interval > 0 {
		if !strings.HasPrefix(a.Path, "/") {
			bad("health.active.path", "must start with /, got %q", a.Path)
		}
		if a.Timeout <= 0 || a.Timeout > a.Interval {
			// The values, since a file setting only interval: 1s met the
			// 2s default timeout it had not written.
			bad("health.active.timeout", "must be positive and at most health.active.interval, got %s with interval %s (the timeout's default is %s: set it too when the interval is shorter)",
				a.Timeout.D(), a.Interval.D(), Default().Health.Active.Timeout.D())
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
	if c.LoadMetrics.Preset != "vllm" && c.LoadMetrics.Preset != "sglang" && c.LoadMetrics.Preset != "llamacpp" {
		bad("load_metrics.preset", "must be vllm, sglang or llamacpp, got %q", c.LoadMetrics.Preset)
	}
	if !strings.HasPrefix(c.LoadMetrics.Path, "/") {
		bad("load_metrics.path", "must start with /, got %q", c.LoadMetrics.Path)
	}
	for i, n := range c.LoadMetrics.BatchBoundMetrics {
		if n == "" || strings.ContainsAny(n, " \t{}") {
			bad(fmt.Sprintf("load_metrics.batch_bound_metrics[%d]", i), "must be a metric name, got %q", n)
		}
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
		urls := map[string]int{}
		for j, b := range m.Backends {
			bkey := fmt.Sprintf("%s.backends[%d]", key, j)
			b.validate(bad, bkey)
			// The same URL twice in a model was merged into one backend
			// without a word: the commonest cause is a pasted entry whose
			// port was not changed, and the pool came up one server short.
			if first, dup := urls[b.URL]; dup && b.URL != "" {
				bad(bkey+".url", "%q is already %s.backends[%d]: a URL is one backend (give it a weight to send it a larger share)", telemetry.RedactURL(b.URL), key, first)
			} else {
				urls[b.URL] = j
			}
		}
	}
}

func (b Backend) validate(bad badFunc, key string) {
	if b.URL == "" {
		// An entry without url: (weight: 2 alone, a url misindented under
		// another key) read as `got ""`.
		bad(key+".url", "is missing or empty: each backend needs its base URL, e.g. url: http://10.0.0.7:8000")
	} else if !strings.HasPrefix(b.URL, "http://") && !strings.HasPrefix(b.URL, "https://") {
		bad(key+".url", "must be an http:// or https:// URL, got %q", telemetry.RedactURL(b.URL))
	} else if u, err := url.Parse(b.URL); err != nil || u.Host == "" {
		// "http://" alone, "http:///v1", "http://host:port with space":
		// every request failed at dial time with Go's text.
		bad(key+".url", "want http://host[:port] with a host, got %q", telemetry.RedactURL(b.URL))
	} else if p := u.Port(); p != "" && !validPort(p) {
		bad(key+".url", "port %q of %q is not a port number (1 to 65535)", p, telemetry.RedactURL(b.URL))
	} else if strings.HasSuffix(strings.TrimRight(u.Path, "/"), "/v1") {
		// The commonest paste: an SDK's base URL (vLLM's docs say
		// http://localhost:8000/v1). The request's path is appended to a
		// backend's URL, so every request went to /v1/v1/chat/completions
		// and got the backend's 404, with the probe off for the same 404.
		u.Path = strings.TrimSuffix(strings.TrimRight(u.Path, "/"), "/v1")
		bad(key+".url", "%q ends in /v1: the request's path (/v1/chat/completions) is added to a backend's URL, which would ask for /v1/v1/...; write %q (a client SDK's base URL ends in /v1, a backend's does not)",
			telemetry.RedactURL(b.URL), telemetry.RedactURL(u.String()))
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

// listenAddrProblem says what net.Listen would refuse in a listen address
// ("" when it takes it), so sluice check and a reload refuse what serve
// could not bind: ":99999" passed SplitHostPort and failed only at start.
func listenAddrProblem(addr, example string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "write it as " + example
	}
	if port == "" {
		return "the port is empty: an unset variable? write :0 for any free port"
	}
	if port == "0" || validPort(port) {
		return ""
	}
	if _, err := strconv.Atoi(port); err != nil {
		// net.Listen takes a service name (":http") as well.
		if _, err := net.LookupPort("tcp", port); err == nil {
			return ""
		}
	}
	return fmt.Sprintf("port %q is not a number from 0 (any free port) to 65535", port)
}

// validPort is a decimal port from 1 to 65535.
func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535 && strconv.Itoa(n) == p
}
