package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/sluice-gw/sluice/internal/telemetry"
)

// ErrStoreFailing refuses a job, batch or file because the embedded
// queue's disk refused a write (no space left, a read-only or failing
// filesystem). Unlike ErrStoreFull it is not the store's own bound: the
// embedded server recovers by itself once the data directory takes writes
// again (Embedded's recovery), so the caller answers 503 with Retry-After.
var ErrStoreFailing = errors.New("job store cannot write to its disk")

// storeFaultMarkers are the lines nats-server logs when its file store
// cannot write. It reports them only in its log: a stream whose block
// write failed keeps that error for every later write (the file store's
// write error is sticky) and, for "no space left", the whole of JetStream
// is shut down; neither comes back until JetStream is started again.
var storeFaultMarkers = []string{
	"Critical write error",         // filestore.setWriteErr
	"critical write error",         // stream.setWriteErr
	"will be DISABLED",             // handleOutOfSpace: JetStream shut down
	"Filesystem permission denied", // stream: JetStream shut down
	"disabling JetStream",          // the same, and raft's
	"no space left on device",      // a write that failed with ENOSPC
	"read-only file system",        // EROFS
}

// refusedStoreMarker is logged for every message a stream in that state
// refuses: counted, never logged past the fault's first line, but not the
// start of a fault by itself (it also reports other refusals).
const refusedStoreMarker = "JetStream failed to store a msg on "

// isStoreFaultLine reports a nats-server log line about a write its file
// store could not make. "resource limits exceeded" (the store's bound) is
// not one: that is ErrStoreFull, the store's own budget.
func isStoreFaultLine(line string) bool {
	if strings.Contains(line, "resource limits exceeded") || strings.Contains(line, "maximum bytes exceeded") {
		return false
	}
	for _, m := range storeFaultMarkers {
		if strings.Contains(line, m) {
			return true
		}
	}
	return false
}

// storeFault is the embedded store's disk state: a fault from the first
// write failure nats-server reported until a restart of the server on a
// directory that takes writes again.
type storeFault struct {
	mu    sync.Mutex
	since time.Time // zero: no fault
	first string    // nats-server's first line about it
	// failures counts the write failures nats-server reported, every one
	// (sluice_jobs_store_write_failures_total); recoveries the restarts
	// of the server that ended a fault.
	failures, recoveries atomic.Uint64
	failing              atomic.Bool
	// startFailures counts the restarts whose new server did not start
	// (sluice_jobs_store_restart_failures_total); down is the latest's
	// error while no server runs, downTries how many in a row, nextTry
	// when the recovery loop tries again ("" and zero once one starts).
	startFailures atomic.Uint64
	down          string
	downTries     int
	nextTry       time.Time
}

// note records a write failure; it reports whether it began a fault, so
// the caller logs the fault once, not every failed write.
func (f *storeFault) note(line string, now time.Time) bool {
	f.failures.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.since.IsZero() {
		return false
	}
	f.since, f.first = now, line
	f.failing.Store(true)
	return true
}

func (f *storeFault) clear() (since time.Time, first string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	since, first, f.since, f.first = f.since, f.first, time.Time{}, ""
	f.down, f.downTries, f.nextTry = "", 0, time.Time{}
	f.failing.Store(false)
	return since, first
}

// startFailed records a restart whose new server did not start: the
// fault it was to end goes on, from its start and with its first report
// (before, the failed start began a "new" fault, its time and report
// replacing the disk's), not counted as a write the disk refused.
func (f *storeFault) startFailed(since time.Time, first, line string, inARow int, next time.Time) {
	f.startFailures.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.since.IsZero() || since.Before(f.since) {
		f.since, f.first = since, first
	}
	f.down, f.downTries, f.nextTry = line, inARow, next
	f.failing.Store(true)
}

// StoreFault is the embedded store's disk fault: nil when it writes, else
// an error wrapping ErrStoreFailing with nats-server's first report (for
// the log and the admin listener; never a client's answer).
func (e *Embedded) StoreFault() error {
	if e == nil || !e.fault.failing.Load() {
		return nil
	}
	e.fault.mu.Lock()
	defer e.fault.mu.Unlock()
	if e.fault.since.IsZero() {
		return nil
	}
	err := fmt.Errorf("%w (data directory %s, since %s): %s", ErrStoreFailing, e.dir, e.fault.since.UTC().Format(time.RFC3339), e.fault.first)
	if e.fault.downTries > 0 {
		err = fmt.Errorf("%w; its server did not start again (%d tries in a row, the next at %s): %s", err,
			e.fault.downTries, e.fault.nextTry.UTC().Format(time.RFC3339), e.fault.down)
	}
	return err
}

// StoreRestartFailures counts the restarts of a recovery whose new
// server did not start.
func (e *Embedded) StoreRestartFailures() uint64 { return e.fault.startFailures.Load() }

// StoreWriteFailures counts the write failures nats-server reported.
func (e *Embedded) StoreWriteFailures() uint64 { return e.fault.failures.Load() }

// StoreRecoveries counts the faults ended by restarting the server.
func (e *Embedded) StoreRecoveries() uint64 { return e.fault.recoveries.Load() }

// noteServerLine is the server's log, seen by the gateway: a line about a
// write failure begins (or continues) the fault. It returns whether the
// line should be logged as it is: only the first of a fault is, with the
// data directory named, so a full disk is one error line and not one per
// refused write.
func (e *Embedded) noteServerLine(line string) (logIt bool) {
	if !isStoreFaultLine(line) {
		if strings.Contains(line, refusedStoreMarker) && e.fault.failing.Load() {
			e.fault.failures.Add(1)
			return false
		}
		return true
	}
	now := e.now()
	if !e.fault.note(line, now) {
		return false
	}
	e.faultBegan(now, line)
	e.kick()
	return false
}

// faultBegan logs a fault's start: an ERROR line if it begins an episode,
// else (a flapping disk) at debug, counted for the episode's summary.
func (e *Embedded) faultBegan(now time.Time, line string) {
	news, sums := e.episode.began(now, line)
	for _, s := range sums {
		e.logEpisode(s)
	}
	if news == newsBegan {
		e.log.Error("job store cannot write to its data directory: new jobs, batches and files are refused (503 storage_unavailable) and workers wait until it can; the gateway retries by itself (repeats within a minute of a recovery are summarised once a minute)",
			"data_dir", e.dir, "error", line, "retry_every", e.recoverEvery.String())
		return
	}
	e.log.Debug("job store cannot write to its data directory again", "data_dir", e.dir, "error", line)
}

// tickEpisode logs a flapping disk's summary when one is due while
// nothing else happens, and its episode's end.
func (e *Embedded) tickEpisode() {
	if s := e.episode.tick(e.now(), e.fault.failing.Load()); s != nil {
		e.logEpisode(s)
	}
}

// logEpisode logs a flapping disk's summary, or its episode's end.
func (e *Embedded) logEpisode(s *episodeSummary) {
	if s.ended {
		e.log.Info("job store writes steadily again: no write refused for a minute since its last recovery",
			"data_dir", e.dir, "faults", s.totalFaults, "recoveries", s.totalRecoveries,
			"since", s.since.UTC().Format(time.RFC3339), "last_error", s.lastError)
		return
	}
	e.log.Warn("job store's data directory keeps refusing writes after recoveries (a disk near full?); repeats summarised once a minute",
		"data_dir", e.dir, "faults", s.faults, "recoveries", s.recoveries,
		"episode_faults", s.totalFaults, "episode_recoveries", s.totalRecoveries,
		"since", s.since.UTC().Format(time.RFC3339), "failing", e.fault.failing.Load(), "failed_starts", s.failedStarts,
		"last_error", s.lastError)
}

// recoveryProbeBytes is written and synced to the data directory before
// JetStream is started again: a directory that takes it has room for
// JetStream's own metadata writes at start.
const recoveryProbeBytes = 256 << 10

// ProbeDir reports whether dir takes a write of 256 KiB, synced: what the
// embedded store checks before starting its server again on a disk that
// refused writes. nats-server's own errors do not always carry the
// disk's (a stream it could not create is "error creating store").
func ProbeDir(dir string) error { return probeDir(dir) }

// probeDir reports whether dir takes a write of recoveryProbeBytes, synced.
func probeDir(dir string) error {
	path := filepath.Join(dir, ".sluice-write-probe")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(path)
	_, werr := f.Write(make([]byte, recoveryProbeBytes))
	serr := f.Sync()
	cerr := f.Close()
	return errors.Join(werr, serr, cerr)
}

// recoverLoop tries, while there is a fault, every recoverEvery (or at
// once when kicked), to start the server again; it ends with stop.
func (e *Embedded) recoverLoop() {
	defer close(e.loopDone)
	t := time.NewTicker(e.recoverEvery)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
		case <-e.kicked:
		}
		e.recoverStep()
	}
}

// recoverStep is one turn of the recovery loop: a restart of JetStream
// if the store has a fault and its episode's backoff allows one
// (faultEpisode.restartDue), then the episode's log.
func (e *Embedded) recoverStep() {
	e.tryRecover(true)
	e.tickEpisode()
}

func (e *Embedded) kick() {
	select {
	case e.kicked <- struct{}{}:
	default:
	}
}

// TryRecover starts the server again (a new one on the same directory
// and port, restart.go) if the store has a fault and its data directory
// takes writes again: nats-server keeps a stream's write error (and its
// own shutdown of JetStream after "no space left") until then, so
// without it the store stays refused after space came back. Stored data
// is read back from disk, as at a start; clients reconnect. It reports
// whether the store has no fault afterwards.
func (e *Embedded) TryRecover() bool { return e.tryRecover(false) }

// tryRecover is TryRecover; backOff (the recovery loop's) restarts only
// when the episode's backoff allows it. That is decided under recoverMu:
// decided before it, a turn that waited there on another recovery
// restarted on the next fault with the previous one's decision.
func (e *Embedded) tryRecover(backOff bool) bool {
	e.recoverMu.Lock()
	defer e.recoverMu.Unlock()
	if !e.fault.failing.Load() {
		return true
	}
	if backOff && !e.episode.restartDue(e.now(), e.recoverEvery) {
		return false
	}
	if err := e.probe(e.dir); err != nil {
		e.log.Debug("job store's data directory still refuses writes", "data_dir", e.dir, "error", telemetry.FileCause(err), "detail", telemetry.Clip(err.Error()))
		return false
	}
	stop, start := e.stopServer, e.restartServer
	if e.restartSeam != nil {
		stop, start = e.restartSeam[0], e.restartSeam[1]
	}
	e.episode.setRestarting(true)
	defer e.episode.setRestarting(false)
	if err := stop(); err != nil {
		e.log.Warn("job store: stopping its server to recover it", "data_dir", e.dir, "error", telemetry.FileCause(err), "detail", telemetry.Clip(err.Error()))
		return false
	}
	// Cleared first: lines logged while JetStream starts again belong to
	// the next fault, if any.
	since, first := e.fault.clear()
	if err := start(); err != nil {
		e.restartFailed(since, first, err)
		return false
	}
	e.fault.recoveries.Add(1)
	now := e.now()
	news, failed, sum := e.episode.recovered(now)
	level := slog.LevelDebug
	if news == newsRecovered {
		level = slog.LevelInfo
	}
	e.log.Log(context.Background(), level, "job store writes again: its server restarted on its data directory", "data_dir", e.dir,
		"failing_for", now.Sub(since).Round(time.Millisecond).String(), "write_failures", e.fault.failures.Load(),
		"failed_starts", failed)
	if sum != nil {
		e.logEpisode(sum)
	}
	return true
}

// restartFailed is a restart whose new server did not start: no server
// runs until one does. The recovery loop tries again with the episode's
// backoff (faultEpisode.restartDue), the first failure in a row logged
// as an ERROR line with the error and the next try, the others at debug
// (the episode's summary counts them).
func (e *Embedded) restartFailed(since time.Time, first string, err error) {
	now, line := e.now(), "starting the job store's server again: "+err.Error()
	e.faultBegan(now, line) // one more fault of the episode, which keeps it open
	n, next := e.episode.startFailed(now, e.recoverEvery)
	e.fault.startFailed(since, first, line, n, next)
	level := slog.LevelDebug
	if n == 1 {
		level = slog.LevelError
	}
	e.log.Log(context.Background(), level, "job store's server did not start again after a disk fault: the job queue is down until it does; retrying with a backoff",
		"data_dir", e.dir, "error", telemetry.FileCause(err), "detail", telemetry.Clip(err.Error()), "tries_in_a_row", n, "next_try", next.UTC().Format(time.RFC3339))
}

// jetStreamConfigOf is the JetStream limits srv settled on at its start,
// which a recovery's new server keeps (startServer): MaxStore 0 is
// nats-server's share of the disk's free space at the first start.
func jetStreamConfigOf(srv *server.Server, dir string) server.JetStreamConfig {
	c := server.JetStreamConfig{StoreDir: dir}
	if cur := srv.JetStreamConfig(); cur != nil {
		c.MaxStore, c.MaxMemory, c.SyncInterval, c.SyncAlways = cur.MaxStore, cur.MaxMemory, cur.SyncInterval, cur.SyncAlways
	}
	return c
}

// serverLog passes nats-server's warnings and errors to slog, those about
// failed writes through noteServerLine (debug past a fault's first).
func (e *Embedded) serverLog(level slog.Level, line string) {
	e.audit.noteStartLine(line)
	if !e.noteServerLine(line) {
		level = slog.LevelDebug
	}
	e.log.Log(context.Background(), level, line, "component", "nats")
}

// diskFaultTexts are the strerror texts of a disk that refuses writes, as
// they reach the gateway inside nats-server's API errors (text only).
var diskFaultTexts = []string{"no space left on device", "read-only file system", "input/output error",
	"disk quota exceeded", "file too large"}

// IsDiskFault reports an error caused by a disk refusing writes (full,
// read-only, failing), directly or as nats-server reported it: at start
// the gateway serves without its embedded queue and retries, as with an
// external NATS that is away, rather than refusing to start.
func IsDiskFault(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EIO) ||
		errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EFBIG) {
		return true
	}
	text := err.Error()
	for _, t := range diskFaultTexts {
		if strings.Contains(text, t) {
			return true
		}
	}
	return false
}

// DiskFault is the embedded store's disk fault (Embedded.StoreFault): nil
// with an external NATS or while the disk takes writes.
func (s *Store) DiskFault() error { return s.o.Embedded.StoreFault() }
