package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-gw/sluice/internal/app"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/telemetry"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "[--config FILE | --model NAME --backend URL [--backend URL ...] [--policy NAME]] [--listen ADDR]\n\n"+
		"With none of --config, --model, --backend: two built-in simulated servers as model sim-model, to try the API.")
	var f serveFlags
	fs.StringVar(&f.cfgPath, "config", "", "YAML config `FILE` (see examples/sluice.yaml); reloaded on SIGHUP and on change")
	fs.StringVar(&f.listen, "listen", "", "client-facing `ADDR` to listen on (overrides the config's listen; default :8080, all interfaces, port 8080)")
	fs.StringVar(&f.model, "model", "", "model name clients ask for (flag mode, no config file)")
	fs.StringVar(&f.policy, "policy", "", "balancing policy: round_robin, weighted, least_conn, p2c_ewma (default), least_load, prefix_affinity, prefix_affinity+least_load, random")
	fs.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (overrides the config)")
	fs.StringVar(&f.dataDir, "data-dir", "", "where the embedded job queue keeps its data (overrides queue.data_dir; default "+config.DefaultDataDir()+")")
	fs.StringVar(&f.adminListen, "admin-listen", "", "admin listener address for the dashboard (/), /status, /metrics, /scaling, /spare, /worker/v1 and pprof (overrides admin.listen; default 127.0.0.1:9091; \"off\" disables it)")
	fs.StringVar(&f.pprofAddr, "pprof", "", "deprecated: serve Go's /debug/pprof on this further address, with the admin listener's protection (admin.token; without one, this host only). Prefer admin.pprof: true, on the admin listener")
	fs.Var(&f.backends, "backend", "backend base `URL`, e.g. http://127.0.0.1:8000 (repeatable)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	quick := f.quickstart()
	if quick {
		stopSims, err := f.startQuickstartBackends(ctx, nil)
		if err != nil {
			return err
		}
		// Deferred first, so it runs last: after the gateway's drain.
		defer stopSims()
	}
	src := app.Source{Path: f.cfgPath, Overrides: app.Overrides{Listen: f.listen, AdminListen: f.adminListen,
		LogLevel: f.logLevel, DataDir: f.dataDir}, LogLevel: new(slog.LevelVar)}
	cfg, err := f.config(src)
	if err != nil {
		return err
	}
	if err := src.LogLevel.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		return fmt.Errorf("log level %q: %w", cfg.Log.Level, err) // validated: not reached
	}
	// Buffered like nginx's access_log buffer=: a write(2) per request
	// costs more than a cache hit; warnings and errors are not held back.
	logger, logBuf := telemetry.NewBufferedLogger(os.Stderr, src.LogLevel, time.Second)
	// Close gives up after 5 s on a stderr that takes no writes; the one
	// line saying so is written to stderr without waiting more than a
	// second for it (not through run's error print, which would wait on
	// the same stderr for good).
	defer logBuf.CloseNoting(os.Stderr)
	src.LogMetrics = logBuf.Collector()
	// The listeners are bound before anything else starts (the embedded
	// NATS, its data directory, the forecast's lock, the backends'
	// probes), as nginx binds before it forks: a port already taken
	// fails the start at once, with nothing begun to undo.
	ln, adminLn, pprofLn, err := bindListeners(cfg, f.pprofAddr)
	if err != nil {
		return err
	}
	a, err := app.New(cfg, src, logger)
	if err != nil {
		closeListeners(ln, adminLn, pprofLn)
		return err
	}
	if quick {
		var adminAddr net.Addr
		if adminLn != nil {
			adminAddr = adminLn.Addr()
		}
		printQuickstart(stdout, cfg, ln.Addr(), adminAddr)
		logger.Warn("serving the built-in simulator: no --config, --model or --backend given",
			"model", f.model, "backends", []string(f.backends))
	}
	a.AdoptAdmin(adminLn) // Run serves and closes it
	if pprofLn != nil {
		defer servePprof(a, pprofLn, cfg.Admin.Token != "", logger)()
	}
	// A second SIGTERM or SIGINT (the first ended ctx: main) cuts the
	// drain: what still runs is answered 503 shutting_down and Run
	// returns, where before it was swallowed and the drain ran its
	// shutdown_grace. Registered before serving, so none is missed.
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	done := make(chan struct{})
	defer close(done)
	go cutOnSecondSignal(sig, done, a.Cut)
	return a.Run(ctx, ln)
}

// bindListeners binds the public listener, the admin one (nil when
// admin.listen is "off") and the --pprof one (nil without the flag); on
// an error, those already bound are closed.
func bindListeners(cfg *config.Config, pprofAddr string) (ln, adminLn, pprofLn net.Listener, err error) {
	ln, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		// net's error names the address ("listen tcp ADDR: bind: address
		// already in use"); this names where it was set.
		return nil, nil, nil, fmt.Errorf("listen (--listen, or listen: in the config): %w", err)
	}
	adminLn, err = app.ListenAdminAddr(cfg.Admin.Listen)
	if err != nil {
		ln.Close()
		return nil, nil, nil, err
	}
	if pprofAddr != "" {
		if pprofLn, err = listenPprof(pprofAddr); err != nil {
			closeListeners(ln, adminLn)
			return nil, nil, nil, err
		}
	}
	return ln, adminLn, pprofLn, nil
}

// closeListeners closes those of lns that were bound (not nil).
func closeListeners(lns ...net.Listener) {
	for _, l := range lns {
		if l != nil {
			l.Close()
		}
	}
}

// cutOnSecondSignal calls cut at the second signal on sig (the first is
// the one that started the shutdown), or returns when done closes.
func cutOnSecondSignal(sig <-chan os.Signal, done <-chan struct{}, cut func()) {
	for n := 0; ; {
		select {
		case <-sig:
			if n++; n == 2 {
				cut()
				return
			}
		case <-done:
			return
		}
	}
}

// serveFlags is serve's command line.
type serveFlags struct {
	cfgPath, listen, model, policy string
	logLevel, dataDir, adminListen string
	pprofAddr                      string
	backends                       stringList
}

// config is the validated config the flags ask for: src's file, or one
// model on the flags' backends, with the flags' overrides (src.Overrides,
// which a reload applies again).
func (f serveFlags) config(src app.Source) (*config.Config, error) {
	switch {
	case f.cfgPath != "" && (f.model != "" || len(f.backends) > 0):
		return nil, usagef("use either --config or --model/--backend, not both")
	case f.cfgPath != "":
		return src.Load()
	case f.model == "" || len(f.backends) == 0:
		return nil, usagef("need --config FILE, or --model and at least one --backend")
	}
	cfg := config.Default()
	m := config.Model{Name: f.model, Policy: f.policy}
	for _, b := range f.backends {
		m.Backends = append(m.Backends, config.Backend{URL: b})
	}
	cfg.Models = []config.Model{m}
	src.Overrides.Apply(&cfg)
	// Validated here, once, before the log level is used.
	if err := cfg.ValidateWith(app.PolicyCheck); err != nil {
		return nil, flagModeError(err)
	}
	return &cfg, nil
}

// flagModeError names the flags behind a flag-mode config's problems: the
// user typed --backend gpu1:8000, not models[0].backends[0].url. A
// problem no flag fills keeps its key. It is a usage error: the command
// line is what to change.
func flagModeError(err error) error {
	var problems []error
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		problems = joined.Unwrap()
	} else {
		problems = []error{err}
	}
	var lines []string
	for _, p := range problems {
		var fe *config.FieldError
		if errors.As(p, &fe) {
			if flag := flagForKey(fe.Key); flag != "" {
				lines = append(lines, flag+": "+fe.Problem)
				continue
			}
		}
		lines = append(lines, p.Error())
	}
	return &usageError{err: fmt.Errorf("invalid settings: %s", strings.Join(lines, "; "))}
}

// flagForKey is the serve flag that sets a config key in flag mode.
func flagForKey(key string) string {
	switch {
	case key == "listen":
		return "--listen"
	case key == "admin.listen":
		return "--admin-listen"
	case key == "log.level":
		return "--log-level"
	case key == "queue.data_dir":
		return "--data-dir"
	case key == "models[0].name":
		return "--model"
	case key == "models[0].policy":
		return "--policy"
	case strings.HasPrefix(key, "models[0].backends["):
		return "--backend"
	}
	return ""
}
