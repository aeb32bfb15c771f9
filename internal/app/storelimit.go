package app

import (
	"io/fs"
	"log/slog"
	"path/filepath"
)

// embeddedStoreLimit is the embedded queue's store bound: queue.max_store_bytes,
// lowered to what the data directory's disk can hold (three quarters of
// its free space, plus what the store already holds), as nats-server's own
// default is. A fixed default (10GiB) on a smaller disk would otherwise let
// the store fill it, and the gateway's logs and everything else on it with
// them. configured 0 (unbounded, set on purpose) is kept.
func embeddedStoreLimit(configured int64, dataDir, storeDir string, log *slog.Logger) int64 {
	if configured <= 0 {
		return configured
	}
	free, ok := diskFree(dataDir)
	if !ok {
		return configured
	}
	room := free/4*3 + dirBytes(storeDir)
	if room >= configured {
		return configured
	}
	log.Warn("queue.max_store_bytes lowered to what the data directory's disk can hold",
		"configured", configured, "limit", room, "disk_free", free, "data_dir", dataDir)
	return room
}

// dirBytes is the size of the regular files under dir (0 if it does not
// exist yet): the store a restart finds.
func dirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}
