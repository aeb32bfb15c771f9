package app

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/forecast"
)

// openSnapshot decides where the forecast's snapshot lives and takes it for
// this gateway. forecast.snapshot "" is forecast.snapshot in the data
// directory (queue.data_dir, else config.DefaultDataDir()): nothing is written
// outside it. The file is owned by one process at a time through an
// exclusive lock on a file beside it, held until release: two gateways on
// one machine with the same data directory do not restore or overwrite
// each other's learned traffic (writes are atomic renames besides, so a
// crash mid-save leaves the previous snapshot whole). Forecasting is on by
// default, so nothing here may keep the gateway from starting: a directory
// that cannot be written, or a snapshot another gateway owns, is said once
// and the forecast runs without being saved or restored (store nil).
func openSnapshot(cfg config.Forecast, dataDir string, maxBytes int64, log *slog.Logger) (store forecast.Store, release func()) {
	path := strings.TrimSpace(cfg.Snapshot)
	switch path {
	case config.ForecastSnapshotOff:
		return nil, func() {}
	case "":
		if dataDir == "" {
			dataDir = config.DefaultDataDir()
		}
		path = filepath.Join(dataDir, config.ForecastSnapshotFile)
	}
	release, err := takeSnapshot(path)
	if err != nil {
		log.Warn("forecast snapshot off: the forecast runs but is not saved or restored", "path", path, "error", err.Error())
		return nil, func() {}
	}
	return forecast.FileStore{Path: path, MaxBytes: maxBytes}, release
}

// takeSnapshot locks path's lock file, checks that its directory takes the
// temporary files a save renames into place, and removes those a crash
// mid-save left (only the lock's owner writes them).
func takeSnapshot(path string) (release func(), err error) {
	dir, base := filepath.Dir(path), filepath.Base(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("forecast snapshot directory: %w", err)
	}
	unlock, err := takeLock(path + ".lock")
	if errors.Is(err, errLockHeld) {
		return nil, fmt.Errorf("another sluice gateway owns this snapshot: its lock is %w (give each gateway its own forecast.snapshot or queue.data_dir)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("forecast snapshot lock: %w", err)
	}
	stale, _ := filepath.Glob(filepath.Join(dir, base+".*.tmp"))
	for _, s := range stale {
		os.Remove(s)
	}
	probe, err := os.CreateTemp(dir, base+".*.tmp")
	if err != nil {
		unlock()
		return nil, fmt.Errorf("forecast snapshot directory not writable: %w", err)
	}
	probe.Close()
	os.Remove(probe.Name())
	return unlock, nil
}
