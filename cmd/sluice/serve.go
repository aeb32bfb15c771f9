package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/sluice-gw/sluice/internal/app"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/telemetry"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "--config FILE | --listen ADDR --model NAME --backend URL [--backend URL ...] [--policy NAME]", stderr)
	cfgPath := fs.String("config", "", "YAML config `FILE` (see examples/sluice.yaml); reloaded on SIGHUP and on change")
	listen := fs.String("listen", "", "client-facing `ADDR` to listen on (overrides the config's listen; default :8080, all interfaces, port 8080)")
	model := fs.String("model", "", "model name clients ask for (flag mode, no config file)")
	policy := fs.String("policy", "", "balancing policy: round_robin, weighted, least_conn, p2c_ewma (default), least_load, prefix_affinity, prefix_affinity+least_load, random")
	logLevel := fs.String("log-level", "", "debug, info, warn or error (overrides the config)")
	dataDir := fs.String("data-dir", "", "where the embedded job queue keeps its data (overrides queue.data_dir; default "+app.DefaultDataDir()+")")
	adminListen := fs.String("admin-listen", "", "admin listener address for /status, /metrics, /spare and pprof (overrides admin.listen; default 127.0.0.1:9091; \"off\" disables it)")
	pprofAddr := fs.String("pprof", "", "serve Go's /debug/pprof on this further address, without admin.token (kept for old scripts; prefer admin.pprof: true, on the admin listener)")
	var backends stringList
	fs.Var(&backends, "backend", "backend base `URL`, e.g. http://127.0.0.1:8000 (repeatable)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}

	var cfg *config.Config
	switch {
	case *cfgPath != "" && (*model != "" || len(backends) > 0):
		return errors.New("use either --config or --model/--backend, not both")
	case *cfgPath != "":
		c, err := app.Load(*cfgPath)
		if err != nil {
			return err
		}
		cfg = c
	default:
		if *model == "" || len(backends) == 0 {
			fs.Usage()
			return errors.New("need --config FILE, or --model and at least one --backend")
		}
		c := config.Default()
		m := config.Model{Name: *model, Policy: *policy}
		for _, b := range backends {
			m.Backends = append(m.Backends, config.Backend{URL: b})
		}
		c.Models = []config.Model{m}
		cfg = &c
	}
	overridden := *listen != "" || *adminListen != "" || *logLevel != "" || *dataDir != ""
	if *listen != "" {
		cfg.Listen = *listen
	}
	if *adminListen != "" {
		cfg.Admin.Listen = *adminListen
	}
	if *logLevel != "" {
		cfg.Log.Level = *logLevel
	}
	if *dataDir != "" {
		cfg.Queue.DataDir = *dataDir
	}
	// A file without overrides was validated by Load; anything else is
	// validated here, once, before the log level is used.
	if !cfg.Checked() || overridden {
		if err := cfg.ValidateWith(app.PolicyCheck); err != nil {
			return fmt.Errorf("invalid settings: %w", err)
		}
	}
	// Buffered like nginx's access_log buffer=: a write(2) per request
	// costs more than a cache hit; warnings and errors are not held back.
	logger, logBuf, err := telemetry.NewBufferedLogger(os.Stderr, cfg.Log.Level, time.Second)
	if err != nil {
		return err
	}
	defer logBuf.Close()
	a, err := app.New(cfg, *cfgPath, logger)
	if err != nil {
		return err
	}
	if *pprofAddr != "" {
		stop, err := servePprof(*pprofAddr)
		if err != nil {
			return err
		}
		defer stop()
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	return a.Run(ctx, ln)
}
