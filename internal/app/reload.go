package app

import (
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

type endpointBackend = endpoint.Backend

// reloadDebounce coalesces the burst of events an editor's save produces
// (write, chmod, rename) into one reload.
const reloadDebounce = 250 * time.Millisecond

// watchReloads reloads on SIGHUP and when the config file changes. The
// directory is watched, not the file, because editors and Kubernetes
// ConfigMaps replace the file by rename. ready is closed once the signal
// and the watch are in place, so a change made after Run serves is seen.
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
	close(ready)
	target, _ := filepath.Abs(a.src.Path)
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
			if abs, _ := filepath.Abs(ev.Name); abs == target && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
				timer.Reset(reloadDebounce)
			}
		case <-timer.C:
			if _, err := os.Stat(a.src.Path); err == nil {
				a.Reload()
			}
		}
	}
}
