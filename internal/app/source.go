package app

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/config"
)

// Source is where the running config comes from: what New was given, and
// what Reload reads again.
type Source struct {
	// Path is the config file, re-read on reload; "" when the config was
	// built from flags (no reload).
	Path string
	// Overrides are serve's flags that win over the file, at start and on
	// every reload.
	Overrides Overrides
	// LogLevel is the logger's level: a reload sets it from log.level (nil:
	// the level is fixed, as for a logger the caller made).
	LogLevel *slog.LevelVar
	// LogMetrics, when set, are the log writer's metrics (lines dropped
	// while its output was blocked), registered on the app's registry:
	// the logger is made before it.
	LogMetrics prometheus.Collector
}

// Overrides are settings from serve's command line that take precedence
// over the config file's. A reload applies them to the file it reads
// again: without them it would see the file's listen address as a change
// (a warning on every reload) and put back the file's log level.
type Overrides struct {
	Listen      string // listen
	AdminListen string // admin.listen
	LogLevel    string // log.level
	DataDir     string // queue.data_dir
}

// Apply sets on cfg what o overrides; the empty ones leave cfg's. It
// reports whether it set anything (cfg must then be validated again).
func (o Overrides) Apply(cfg *config.Config) bool {
	if o.Listen != "" {
		cfg.Listen = o.Listen
	}
	if o.AdminListen != "" {
		cfg.Admin.Listen = o.AdminListen
	}
	if o.LogLevel != "" {
		cfg.Log.Level = o.LogLevel
	}
	if o.DataDir != "" {
		cfg.Queue.DataDir = o.DataDir
	}
	return o != Overrides{}
}

// Load reads and validates the source's file, its overrides applied. A
// problem in the file names file, line and key (Load); one the overrides
// make names the key they set.
func (s Source) Load() (*config.Config, error) {
	cfg, err := Load(s.Path)
	if err != nil {
		return nil, err
	}
	if s.Overrides.Apply(cfg) {
		if err := cfg.ValidateWith(PolicyCheck); err != nil {
			return nil, fmt.Errorf("invalid settings: %w", err)
		}
	}
	return cfg, nil
}
