package app

import (
	"cmp"
	"reflect"
	"slices"
	"strings"

	"github.com/sluice-gw/sluice/internal/config"
)

// warnRestartOnly logs the settings a reload cannot change, each by its
// key path. Before, a changed queue, forecast or cache.redis key was told
// as "queue changes need a restart" (which key, the operator had to diff
// the file), and a reload that moved the Redis the Responses API ids are
// kept in (rate_limits.redis, or cache.redis) was told nothing: the rate
// limits moved, the ids stayed, silently.
//
// applied are keys restartOnlyChanges names that this reload applied
// nonetheless (queue.batch_webhooks: reloadBatchWebhooks).
func (a *App) warnRestartOnly(cfg, old *config.Config, applied ...string) {
	if cfg.Listen != old.Listen {
		a.log.Warn("config reload: listen address changes need a restart; keeping the old one",
			"old", old.Listen, "new", cfg.Listen)
	}
	if cfg.Admin.Listen != old.Admin.Listen {
		a.log.Warn("config reload: admin.listen changes need a restart; keeping the old one",
			"old", old.Admin.Listen, "new", cfg.Admin.Listen)
	}
	if cfg.TLS.Enabled() != old.TLS.Enabled() || cfg.TLS.MinVersion != old.TLS.MinVersion {
		a.log.Warn("config reload: turning tls on or off and tls.min_version need a restart; "+
			"a new certificate pair is served now when tls stays on", "tls", old.TLS.Enabled())
	}
	keys := slices.DeleteFunc(restartOnlyChanges(cfg, old), func(k string) bool { return slices.Contains(applied, k) })
	if len(keys) > 0 {
		a.log.Warn("config reload: these keys need a restart; the running values are kept until then "+
			"(the rest of the file is applied)", "keys", strings.Join(keys, ", "))
	}
}

// restartOnlyChanges are the key paths of the restart-only settings cfg
// changes from old (listen, admin.listen and tls are told on their own
// lines, with their values).
func restartOnlyChanges(cfg, old *config.Config) []string {
	var keys []string
	keys = append(keys, changedKeys("queue", cfg.Queue, old.Queue)...)
	keys = append(keys, changedKeys("forecast", cfg.Forecast, old.Forecast)...)
	for _, k := range changedKeys("server", cfg.Server, old.Server) {
		// The listener's caps, body bounds and memory_limit are applied
		// (applyServerLimits); what http.Server reads at start is not.
		if slices.Contains([]string{"server.read_header_timeout", "server.idle_timeout", "server.max_header_bytes"}, k) {
			keys = append(keys, k)
		}
	}
	if cfg.Cache.MaxBytes != old.Cache.MaxBytes {
		keys = append(keys, "cache.max_bytes")
	}
	keys = append(keys, changedKeys("cache.redis", cfg.Cache.Redis, old.Cache.Redis)...)
	// The Responses API ids' Redis is chosen at start (responseIDsRedis):
	// a reload that moves rate_limits.redis moves the limits, not the ids.
	now, rd := respIDsSection(cfg)
	was, oldRD := respIDsSection(old)
	if now != was || !reflect.DeepEqual(rd, oldRD) {
		keys = append(keys, cmp.Or(now, was)+" for the Responses API ids")
	}
	return keys
}

// respIDsSection is the config section whose Redis keeps the Responses
// API ids, as responseIDsRedis chooses it, and its settings; "" and nil:
// none (the ids are kept in process).
func respIDsSection(cfg *config.Config) (string, *config.Redis) {
	switch {
	case cfg.RateLimits.Store == config.RateLimitStoreRedis && len(cfg.RateLimits.Redis.Addrs) > 0:
		return "rate_limits.redis", &cfg.RateLimits.Redis.Redis
	case len(cfg.Cache.Redis.Addrs) > 0:
		return "cache.redis", &cfg.Cache.Redis.Redis
	}
	return "", nil
}

// changedKeys are the key paths under prefix (a config section, read by
// its yaml tags) whose values differ between a and b. A list, a map or a
// value that is not a section is one key; an inlined section's keys are
// its parent's.
func changedKeys(prefix string, a, b any) []string {
	return changedIn(prefix, reflect.ValueOf(a), reflect.ValueOf(b))
}

func changedIn(prefix string, a, b reflect.Value) []string {
	if a.Kind() != reflect.Struct {
		if reflect.DeepEqual(a.Interface(), b.Interface()) {
			return nil
		}
		return []string{prefix}
	}
	var out []string
	for i := range a.NumField() {
		f := a.Type().Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		path := prefix
		switch {
		case name == "-":
			continue
		case opts == "inline" && name == "":
		default:
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			path = prefix + "." + name
		}
		out = append(out, changedIn(path, a.Field(i), b.Field(i))...)
	}
	return out
}
