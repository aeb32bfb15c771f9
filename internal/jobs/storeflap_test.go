package jobs

import (
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestFlappingDiskLoggedByEpisode: a disk near full flaps for two
// minutes, a fault every 5 s and a recovery in between (the recovery's
// probe passes, the next write fails). JetStream's restart is the seam's:
// nats-server's, 24 times back to back, races with itself. The old code logged an ERROR line
// per fault and an INFO line per recovery (24 and 24 here), with the
// fault's start on the wall clock. Now: one ERROR, one INFO, a WARN
// summary at most once a minute, one INFO when the store has written for
// a minute; the fault's start is the app's clock's.
func TestFlappingDiskLoggedByEpisode(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()).UTC() }
	advance := func(d time.Duration) { clock.Add(int64(d)) }
	var writable atomic.Bool
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e, err := StartEmbedded(EmbeddedOptions{Dir: t.TempDir(), Port: -1, Logger: log, RecoverEvery: time.Hour, Now: now,
		probe: func(string) error {
			if writable.Load() {
				return nil
			}
			return syscall.ENOSPC
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	var restarts atomic.Int64
	e.restartSeam = &[2]func() error{func() error { return nil }, func() error { restarts.Add(1); return nil }}
	const faultLine = "Filestore [KV_sluice_jobs] Critical write error: write blk: no space left on device"
	count := func(level, msg string) int {
		n := 0
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "level="+level) && strings.Contains(l, msg) {
				n++
			}
		}
		return n
	}
	const flaps = 24
	for range flaps {
		e.serverLog(slog.LevelError, faultLine)
		if err := e.StoreFault(); err == nil || !strings.Contains(err.Error(), "since "+now().Format(time.RFC3339)) {
			t.Fatalf("fault at %s (the app's clock): %v", now().Format(time.RFC3339), err)
		}
		advance(2500 * time.Millisecond)
		writable.Store(true)
		ok := e.TryRecover()
		writable.Store(false)
		if !ok {
			t.Fatal("no recovery with the probe passing")
		}
		advance(2500 * time.Millisecond)
		e.tickEpisode()
	}
	if n := count("ERROR", "cannot write to its data directory"); n != 1 {
		t.Errorf("%d fault ERROR lines in %d flaps over 2 minutes, want 1\n%s", n, flaps, logs.String())
	}
	if n := count("INFO", "job store writes again"); n != 1 {
		t.Errorf("%d recovery INFO lines, want 1", n)
	}
	if n := count("WARN", "keeps refusing writes"); n < 1 || n > 2 {
		t.Errorf("%d summary lines over 2 minutes, want 1 or 2", n)
	}
	if got := e.StoreWriteFailures(); got != flaps {
		t.Errorf("write failures counted %d, want %d", got, flaps)
	}
	if got := restarts.Load(); got != flaps {
		t.Errorf("JetStream started again %d times, want %d", got, flaps)
	}
	if got := e.StoreRecoveries(); got != flaps {
		t.Errorf("recoveries counted %d, want %d", got, flaps)
	}
	advance(30 * time.Second)
	e.tickEpisode()
	if n := count("INFO", "writes steadily again"); n != 0 {
		t.Errorf("episode ended %d times 35 s after its last recovery", n)
	}
	advance(30 * time.Second)
	e.tickEpisode()
	if n := count("INFO", "writes steadily again"); n != 1 || !strings.Contains(logs.String(), "faults=24") {
		t.Errorf("%d end lines with the episode's count, want 1\n%s", n, logs.String())
	}
	e.serverLog(slog.LevelError, faultLine) // a new episode
	if n := count("ERROR", "cannot write to its data directory"); n != 2 {
		t.Errorf("a fault after the episode ended: %d ERROR lines, want 2", n)
	}
}

// TestFlappingDiskRestartsBackOff: an hour of a disk that refuses the
// first write after every recovery, the recovery loop turning every 5 s.
// Each of nats-server's in-process restarts leaves GOMAXPROCS goroutines
// behind; the old loop restarted JetStream at every turn with a fault,
// 720 times here. Now restarts within an episode back off (5 s doubling,
// at most 5 min): 17 or so, and the store still recovers every time.
func TestFlappingDiskRestartsBackOff(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()).UTC() }
	e, err := StartEmbedded(EmbeddedOptions{Dir: t.TempDir(), Port: -1, RecoverEvery: 5 * time.Second, Now: now,
		probe: func(string) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	var restarts atomic.Int64
	e.restartSeam = &[2]func() error{func() error { return nil }, func() error { restarts.Add(1); return nil }}
	for range 720 {
		if e.StoreFault() == nil {
			e.serverLog(slog.LevelError, "Filestore [KV_sluice_jobs] Critical write error: write blk: no space left on device")
		}
		e.recoverStep()
		clock.Add(int64(5 * time.Second))
	}
	if n := restarts.Load(); n < 10 || n > 20 {
		t.Errorf("JetStream started again %d times in an hour of a flapping disk, want 10 to 20 (every 5 s was 720)", n)
	}
	clock.Add(int64(maxRestartWait))
	e.recoverStep()
	if e.StoreFault() != nil {
		t.Error("no recovery once the backoff has passed")
	}
}

// TestRestartKeepsItsEpisode: a fault that comes during a restart, its
// last recovery more than a minute old (a flapping disk's backoff past
// 40 s). The fault is cleared before the new server starts and the
// recovery recorded after it; the old code, looking at the episode in
// between (a fault logged by the new server as it starts, a start that
// fails, the recovery loop's turn), found the store not failing with its
// last recovery over a minute old: it logged "writes steadily again",
// began a new episode with a second ERROR line, and the restarts' backoff
// began again from RecoverEvery. Now the restart's fault is one more of
// the same episode.
func TestRestartKeepsItsEpisode(t *testing.T) {
	const faultLine = "Filestore [KV_sluice_jobs] Critical write error: write blk: no space left on device"
	for _, tc := range []struct {
		name    string
		start   func(e *Embedded) error
		recover bool
		faults  int
		writes  uint64 // the write failures counted: the two faults' lines, and one the new server logs
	}{
		{"a fault logged as the new server starts", func(e *Embedded) error {
			e.serverLog(slog.LevelError, faultLine)
			return nil
		}, true, 3, 3},
		{"the new server does not start", func(*Embedded) error { return errors.New("not ready") }, false, 3, 2},
		// nats-server gives up its start in a Fatalf line that names the
		// disk (server.Start: "Can't start JetStream: ..."), taken as
		// startServer takes it: the start's error, one fault of the
		// episode, not also a write the disk refused (it counted twice).
		{"the new server does not start for a full disk", func(e *Embedded) error {
			fatal := make(chan string, 1)
			e.startFatal.Store(&fatal)
			defer e.startFatal.Store(nil)
			slogAdapter{e}.Fatalf("Can't start JetStream: %v", "could not create storage directory - mkdir /data/jetstream: no space left on device")
			return errors.New("jobs: embedded NATS did not start: " + <-fatal)
		}, false, 3, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var clock atomic.Int64
			clock.Store(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC).UnixNano())
			now := func() time.Time { return time.Unix(0, clock.Load()).UTC() }
			logs := &lockedBuffer{}
			log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
			// RecoverEvery an hour: the loop, kicked at each fault, never
			// restarts past the first recovery; the test restarts.
			e, err := StartEmbedded(EmbeddedOptions{Dir: t.TempDir(), Port: -1, Logger: log, RecoverEvery: time.Hour, Now: now,
				probe: func(string) error { return nil }})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Shutdown()
			var starts atomic.Int64
			e.restartSeam = &[2]func() error{func() error { return nil }, func() error {
				if starts.Add(1) == 1 {
					return nil
				}
				return tc.start(e)
			}}
			e.serverLog(slog.LevelError, faultLine)
			if !e.TryRecover() {
				t.Fatal("no first recovery")
			}
			clock.Add(int64(5 * time.Second))
			e.serverLog(slog.LevelError, faultLine) // the disk flaps
			clock.Add(int64(65 * time.Second))
			if got := e.TryRecover(); got != tc.recover {
				t.Fatalf("restart reported %v, want %v", got, tc.recover)
			}
			e.tickEpisode()
			if n := strings.Count(logs.String(), "cannot write to its data directory"); n != 1 {
				t.Errorf("%d fault ERROR lines, want 1 (one episode)\n%s", n, logs.String())
			}
			if strings.Contains(logs.String(), "writes steadily again") {
				t.Errorf("the episode ended during a restart\n%s", logs.String())
			}
			e.episode.mu.Lock()
			faults, recoveries := e.episode.faults, e.episode.recoveries
			e.episode.mu.Unlock()
			wantRecoveries := 1
			if tc.recover {
				wantRecoveries = 2
			}
			if faults != tc.faults || recoveries != wantRecoveries {
				t.Errorf("episode has %d faults and %d recoveries, want %d and %d (its backoff kept)", faults, recoveries, tc.faults, wantRecoveries)
			}
			if got := e.StoreWriteFailures(); got != tc.writes {
				t.Errorf("%d write failures counted, want %d", got, tc.writes)
			}
		})
	}
}
