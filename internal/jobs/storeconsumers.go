package jobs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// A durable consumer's files damaged between two runs (its o.dat cut or
// overwritten: a failing disk, a bad copy) make nats-server skip the
// consumer at start ("corrupt state file", a warning) and refuse to
// create it again over the same directory ("error creating store for
// consumer"). The gateway's workers create their consumer at start, so
// that refusal stopped them all: measured through the binary, one ERROR
// line "job worker stopped", then the queued jobs stayed queued for good,
// /status and the metrics saying nothing (RELIABILITY, "Consumer state
// damaged between runs"). A consumer's directory removed, emptied, or
// with an unreadable meta.inf was recreated and its jobs ran once.
//
// The work queue's consumer state is expendable: an acknowledged message
// is removed from the stream, so a consumer made again from nothing
// delivers exactly the messages still queued, those in flight at the
// stop included (which a stop hands back to the queue, or AckWait would
// deliver again after a crash). So a consumer directory nats-server did
// not load is moved out of its tree, to be recreated by the workers, and
// reported with the start's damage: no job is lost or run twice by it
// beyond what a crash does.

// consumerDirsOnDisk lists each stream's consumer directories under
// storeDir (obs/<name>).
func consumerDirsOnDisk(storeDir string, streams []string) map[string][]string {
	out := map[string][]string{}
	for _, st := range streams {
		ents, err := os.ReadDir(filepath.Join(streamsDir(storeDir), st, "obs"))
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.IsDir() {
				out[st] = append(out[st], e.Name())
			}
		}
	}
	return out
}

// loadedConsumers is each stream's consumers nats-server has loaded.
func (e *Embedded) loadedConsumers() (map[string][]string, error) {
	info, err := e.server().Jsz(&server.JSzOptions{Accounts: true, Streams: true, Consumer: true})
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, acc := range info.AccountDetails {
		for _, s := range acc.Streams {
			for _, c := range s.Consumer {
				if c != nil {
					out[s.Name] = append(out[s.Name], c.Name)
				}
			}
		}
	}
	return out, nil
}

// keepConsumersAside moves the consumer directories that were on disk
// before the start but that nats-server did not load out of its tree,
// under <storeDir>/damaged-<time>/<stream>/obs/, and records them as the
// start's damage. Called after the start, before any worker creates its
// consumer.
func (e *Embedded) keepConsumersAside(now time.Time) {
	a := &e.audit
	if len(a.consumersOnDisk) == 0 {
		return
	}
	loaded, err := e.loadedConsumers()
	if err != nil {
		e.log.Warn("job store: reading its consumers", "data_dir", e.dir, "error", err.Error())
		return
	}
	stamp := now.UTC().Format("20060102T150405Z")
	for _, st := range slices.Sorted(func(yield func(string) bool) {
		for n := range a.consumersOnDisk {
			if !yield(n) {
				return
			}
		}
	}) {
		for _, name := range a.consumersOnDisk[st] {
			if slices.Contains(loaded[st], name) {
				continue
			}
			dir := filepath.Join(streamsDir(e.dir), st, "obs", name)
			if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
				continue // removed by nats-server itself (an ephemeral's)
			}
			kept := filepath.Join(e.dir, "damaged-"+stamp, st, "obs", name)
			problem := fmt.Sprintf("consumer %s unreadable (nats-server did not load it); ", name)
			if err := moveDir(dir, kept); err != nil {
				problem += "moving it aside failed, its workers cannot start: " + err.Error()
			} else {
				problem += "moved to " + kept + " and made again by the workers: its queued jobs, those in flight at the last stop included, are delivered again"
			}
			a.skipped = appendProblem(a.skipped, st, problem)
		}
	}
}

// moveDir renames dir to kept, making kept's parent first.
func moveDir(dir, kept string) error {
	if err := os.MkdirAll(filepath.Dir(kept), 0o700); err != nil {
		return err
	}
	return os.Rename(dir, kept)
}

// appendProblem adds problem to stream's entry in ds, or a new entry.
func appendProblem(ds []StreamDamage, stream, problem string) []StreamDamage {
	for i := range ds {
		if ds[i].Stream == stream {
			ds[i].Problem += "; " + problem
			return ds
		}
	}
	return append(ds, StreamDamage{Stream: stream, Problem: problem})
}
