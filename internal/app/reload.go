package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/telemetry"
)

type endpointBackend = endpoint.Backend

// Reload re-reads the config file and swaps it in, as a transaction: the
// whole new runtime is built aside (Build), and only when every part of it
// succeeded is the state it takes over handed to it (Commit) and the
// runtime swapped in with one atomic store. An invalid file, or any part
// failing to build, is refused and logged; the running config keeps
// serving, unchanged.
func (a *App) Reload() error {
	if a.src.Path == "" {
		return errors.New("no config file to reload (started from flags)")
	}
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	cfg, err := a.src.Load()
	if err != nil {
		return a.refuseReload(err)
	}
	if err := checkAuthKept(cfg, a.gw.Runtime().Config); err != nil {
		return a.refuseReload(err)
	}
	// The pair is read on every reload, changed or not: a renewed
	// certificate at the same paths is what certbot and cert-manager leave.
	cert, err := loadCert(cfg.TLS)
	if err != nil {
		return a.refuseReload(errWithPath(a.src.Path, err))
	}
	if err := a.checkBatchWebhooks(cfg); err != nil {
		return a.refuseReload(errWithPath(a.src.Path, err))
	}
	next, err := Build(cfg, a.deps, a.built)
	if err != nil {
		return a.refuseReload(errWithPath(a.src.Path, err))
	}
	old := a.gw.Runtime().Config
	var applied []string
	if a.reloadBatchWebhooks(cfg, old) {
		applied = append(applied, "queue.batch_webhooks")
		a.log.Info("config reload: queue.batch_webhooks applied: batches ending from now on send their events to these endpoints; events already recorded keep theirs, but those pending for a removed endpoint are dropped at their next attempt",
			"endpoints", len(cfg.Queue.BatchWebhooks), "before", len(old.Queue.BatchWebhooks))
	}
	a.warnRestartOnly(cfg, old, applied...)
	logConfigWarnings(a.log, cfg)
	warnings := append(cfg.Warnings(), reloadWarnings(next, cfg.Auth.JWT)...)
	prev := a.gw.Runtime()
	revokedBefore := a.gw.RevocationGen()
	a.install(next)
	a.recordRevocations(prev, next.Runtime)
	if a.gw.RevocationGen() != revokedBefore {
		a.wakeRevokeSweep()
	}
	a.logPoolChanges(prev, next.Runtime, "config reload")
	if a.discovering {
		a.disc.Sync(discoverySources(cfg))
	}
	a.syncChecker(cfg.Health.Active)
	a.syncScraper(cfg)
	a.applyServerLimits(cfg.Server, cfg.Log.Access)
	a.applyAdminLimits(cfg.Admin, cfg.Server.Linger, cfg.Log.Access)
	if a.tls != nil && cert != nil {
		a.tls.Store(cert)
	}
	a.applyLogLevel(cfg.Log.Level)
	a.reloads.applied(a.deps.Now(), warnings)
	if len(warnings) > 0 {
		a.log.Warn("config reloaded with warnings", "path", a.src.Path, "models", len(next.Runtime.Models), "warnings", warnings)
	} else {
		a.log.Info("config reloaded", "path", a.src.Path, "models", len(next.Runtime.Models))
	}
	return nil
}

// reloadWarnings is what a reload to next takes but cannot put to use
// yet, for its log line and /status (config.last_reload_warnings): an
// auth.jwt.jwks_url whose key set was never fetched (a new one whose first
// fetch failed, or one kept from before and still down: a second reload
// must not clear the warning while the outage lasts). The reload is
// applied (refusing it would also refuse it while the issuer is briefly
// down, and the static keys and API keys it brings are good), but every
// bearer token is answered 503 auth_keys_unavailable until a fetch
// succeeds. At the start the same outage holds readiness (/readyz
// "jwks"), which a reload's does not (every replica takes a reload at
// once), so before this it showed only as the fetch's own warning among
// the log lines. A key set of new jwks_* settings but the same URL that
// could not be fetched serves the keys fetched before the reload
// (auth.NewJWKSAfter): that is said too, tokens being served meanwhile.
func reloadWarnings(next *Built, jwt config.JWT) []string {
	var out []string
	for _, j := range next.jwks {
		where := jwksURLPath(jwt, j.Settings()) + ": the issuer's key set could not be fetched (" + telemetry.RedactURL(j.Settings().URL) + "); "
		switch {
		case j.HandedOver():
			out = append(out, where+"the keys fetched before the reload verify bearer tokens until a fetch with the new settings succeeds "+
				"(retried every jwks_min_refresh; /readyz \"jwks\" degraded)")
		case j.Fetched().IsZero():
			out = append(out, where+"bearer tokens are answered 503 auth_keys_unavailable until a fetch succeeds (retried every jwks_min_refresh; /readyz \"jwks\")")
		}
	}
	return out
}

// jwksURLPath is the key path of the jwks_url a key set of settings set
// was made for: auth.jwt.jwks_url in the single form, the first
// auth.jwt.issuers entry of those settings with several (entries of the
// same settings share one key set).
func jwksURLPath(jwt config.JWT, set auth.JWKSSettings) string {
	for i, ic := range jwt.IssuerConfigs() {
		if ic.Name != "" && ic.JWT.JWKSURL != "" && auth.JWKSSettingsOf(ic.JWT) == set {
			return fmt.Sprintf("auth.jwt.issuers[%d].jwks_url", i)
		}
	}
	return "auth.jwt.jwks_url"
}

// logConfigWarnings logs what cfg's file says that is valid but probably
// not meant (config.Warnings), a line each, at a start, a reload and
// `sluice check`.
func logConfigWarnings(log *slog.Logger, cfg *config.Config) {
	for _, w := range cfg.Warnings() {
		log.Warn("config: " + w)
	}
}

func (a *App) refuseReload(err error) error {
	a.reloads.refused(a.deps.Now(), config.RedactEnv(a.src.Path, err.Error()))
	a.log.Error("config reload refused; keeping the running config", "path", a.src.Path, "error", err.Error())
	return err
}

// applyLogLevel sets the logger's level from log.level, where the logger's
// level can change (Source.LogLevel). The line saying so is logged at the
// higher of the two levels, so that either one shows it.
func (a *App) applyLogLevel(level string) {
	v := a.src.LogLevel
	if v == nil {
		return
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return // validated with the config: not reached
	}
	old := v.Level()
	if old == l {
		return
	}
	v.Set(l)
	a.log.Log(context.Background(), max(old, l), "config reload: log level changed", "old", old.String(), "new", l.String())
}

// reloadDebounce coalesces the burst of events an editor's save produces
// (write, chmod, rename) into one reload.
const reloadDebounce = 250 * time.Millisecond

// watchReloads reloads on SIGHUP and when the config file, or the TLS
// certificate pair it names, changes. Directories are watched, not files,
// because editors and Kubernetes ConfigMaps replace the file by rename.
// ready is closed once the signal and the watch are in place, so a change
// made after Run serves is seen.
func (a *App) watchReloads(ctx context.Context, ready chan<- struct{}) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	var events chan fsnotify.Event
	watcher, err := fsnotify.NewWatcher()
	if err == nil {
		defer watcher.Close()
		if err = watcher.Add(filepath.Dir(a.src.Path)); err == nil {
			events = watcher.Events
		}
	}
	if err != nil {
		a.log.Warn("config file watch unavailable; reload with SIGHUP", "error", err.Error())
	}
	conf := newConfigWatch(a.src.Path)
	var certs certWatch
	if events != nil {
		conf.sync(watcher, a.log)
		certs.sync(watcher, tlsFiles(a.gw.Runtime().Config), a.log)
	}
	// Only now: a link's target directory and the TLS files' directories
	// are watched by the syncs above, and a change made there before them
	// would be missed for good.
	close(ready)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			a.log.Info("SIGHUP: reloading config")
			a.Reload()
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if abs, _ := filepath.Abs(ev.Name); (conf.changes(abs) || certs.changes(abs)) && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
				timer.Reset(reloadDebounce)
			}
		case <-timer.C:
			if _, err := os.Stat(a.src.Path); err == nil {
				a.Reload()
				if events != nil {
					conf.sync(watcher, a.log)                                   // a link may now lead elsewhere
					certs.sync(watcher, tlsFiles(a.gw.Runtime().Config), a.log) // the reload may name other files
				}
			}
		}
	}
}

// configWatch is what the file watch follows of the config file: its
// path, and, when the path is a link, the file the link leads to. A
// Kubernetes ConfigMap is such a link ("sluice.yaml -> ..data/sluice.yaml",
// "..data -> ..2026_12_05_20_01_02.123"): an update writes a new
// timestamped directory and renames a new "..data" link over the old one,
// so the only event in the config's directory is on "..data", never on
// the config's own name (before, such an update was never seen). A link
// to a file elsewhere (/etc/sluice.yaml -> /srv/conf/sluice.yaml) changes
// where that file is written, in a directory watched too.
type configWatch struct {
	path   string          // the config file's absolute path
	dir    string          // its directory
	target string          // where its links lead ("" if that cannot be resolved now)
	dirs   map[string]bool // directories added to the watcher
}

func newConfigWatch(path string) *configWatch {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	return &configWatch{path: abs, dir: filepath.Dir(abs), dirs: map[string]bool{}}
}

// sync watches the config's directory and that of the file it leads to
// now; a directory that goes away (an old ConfigMap revision) leaves the
// watcher by itself.
func (w *configWatch) sync(watcher *fsnotify.Watcher, log *slog.Logger) {
	w.target = ""
	if real, err := filepath.EvalSymlinks(w.path); err == nil && real != w.path {
		if abs, err := filepath.Abs(real); err == nil {
			w.target = abs
		}
	}
	for _, dir := range []string{w.dir, filepath.Dir(w.target)} {
		if w.target == "" && dir != w.dir {
			continue
		}
		if err := watcher.Add(dir); err != nil {
			if !w.dirs[dir] {
				log.Warn("config file watch unavailable for a directory; reload with SIGHUP", "dir", dir, "error", err.Error())
			}
			continue
		}
		w.dirs[dir] = true
	}
}

// changes reports whether an event on path may change the config: on the
// config's path, on the file its links lead to, or on a "..data"-style
// link in its directory (a ConfigMap or Secret update).
func (w *configWatch) changes(path string) bool {
	if path == w.path || (w.target != "" && path == w.target) {
		return true
	}
	return filepath.Dir(path) == w.dir && strings.HasPrefix(filepath.Base(path), "..")
}

// certWatch is what of the TLS files the file watch follows, so a renewed
// pair (certbot, cert-manager) or CA bundle is used without a SIGHUP.
type certWatch struct {
	files map[string]bool // the files' absolute paths
	dirs  map[string]bool // their directories, each added to the watcher once
}

// tlsFiles are the files cfg's TLS reads: the listener's pair (when on)
// and every upstream tls block's CA bundle and client pair.
func tlsFiles(cfg *config.Config) []string {
	var out []string
	if cfg.TLS.Enabled() {
		out = append(out, cfg.TLS.CertFile, cfg.TLS.KeyFile)
	}
	up := func(t *config.UpstreamTLS) {
		if t != nil {
			out = append(out, t.CAFile, t.CertFile, t.KeyFile)
		}
	}
	up(&cfg.UpstreamTLS)
	for i := range cfg.Models {
		for _, b := range cfg.Models[i].Backends {
			up(b.TLS)
		}
		for _, d := range cfg.Models[i].Discovery {
			up(d.TLS)
		}
	}
	return slices.DeleteFunc(out, func(f string) bool { return f == "" })
}

// sync follows files (none: the watch follows the config file alone).
func (w *certWatch) sync(watcher *fsnotify.Watcher, files []string, log *slog.Logger) {
	w.files = map[string]bool{}
	if len(files) == 0 {
		return
	}
	if w.dirs == nil {
		w.dirs = map[string]bool{}
	}
	for _, f := range files {
		abs, err := filepath.Abs(f)
		if err != nil {
			continue
		}
		w.files[abs] = true
		dir := filepath.Dir(abs)
		if w.dirs[dir] {
			continue
		}
		if err := watcher.Add(dir); err != nil {
			log.Warn("tls certificate watch unavailable; reload with SIGHUP", "dir", dir, "error", err.Error())
			continue
		}
		w.dirs[dir] = true
	}
}

// changes reports whether an event on path may change the pair: one of
// its files, or, in a directory of the pair, Kubernetes' "..data" link,
// which a Secret update swaps (the files are links through it).
func (w *certWatch) changes(path string) bool {
	if w.files[path] {
		return true
	}
	return w.dirs[filepath.Dir(path)] && strings.HasPrefix(filepath.Base(path), "..")
}
