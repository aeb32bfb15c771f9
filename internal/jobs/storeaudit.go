package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/sluice-gw/sluice/internal/telemetry"
)

// A store file damaged between two runs (a block truncated by a failing
// disk, a meta file overwritten) is not an error to nats-server: it skips
// a stream whose metadata fails its checksum, and a stream whose blocks
// are cut is rebuilt from what is left, each with one WARN line. The
// gateway then serves as if nothing had happened while the records in
// the lost part are gone: a job accepted with 202 answers 404, a queued
// job never runs. Measured through the binary (RELIABILITY, "A damaged
// job store"): half of KV_sluice_jobs' block cut, 1 of 3 jobs 404;
// SLUICE_JOBS' block emptied, a backlog of 4 became 0.
//
// The store's audit makes that loss visible. Before nats-server starts it
// lists the stream directories on disk and reads the marks the gateway
// wrote at its last start and clean stop: each stream's last sequence,
// message count and oldest message's time. After the gateway has created
// its streams (Store.Open) it compares:
//   - a stream whose directory was there but which nats-server did not
//     load (its metadata unreadable): the gateway's own create rewrites the
//     metadata and nats-server reads the blocks back (measured: nothing
//     lost); the damaged meta files are kept aside for the operator;
//   - a stream's last sequence below its mark: the tail of the stream is
//     gone (JetStream never moves a last sequence back, not on deletes,
//     acks, expiry or purges);
//   - fewer messages than at the last clean stop, while none can have
//     expired, in a stream whose state nats-server could not take from
//     its own index (it said it rebuilt it, or index.db was gone): a cut
//     block keeps the last sequence and nats-server counts the missing
//     messages as deleted. A stream it read back from its index is what
//     nats-server itself wrote at its stop, so a count below the mark
//     there is a removal between the mark and that stop (a worker's ack,
//     a purge), not a loss (see rebuiltStreamOf);
//   - nats-server's own count of what it could not read back (StreamState
//     .Lost).
//
// Any of these is logged as one ERROR line and kept for /status
// (jobs.store_damaged), the dashboard and sluice_jobs_store_damaged_streams
// until the next start. The gateway keeps serving: what is left is
// consistent, and refusing to start would turn a partial loss into an
// outage.

// storeMarksFile is written beside nats-server's own "jetstream" directory.
const storeMarksFile = "sluice-stream-marks.json"

// storeMarks is each stream as the gateway last saw it.
type storeMarks struct {
	Written time.Time `json:"written"`
	// Clean: written at a clean stop, so nothing was removed since and
	// Msgs can be compared; marks written at a start (a crash may follow,
	// after acks and deletes) are compared by LastSeq only.
	Clean   bool                  `json:"clean"`
	Streams map[string]streamMark `json:"streams"`
}

// streamMark is one stream's state when marked.
type streamMark struct {
	LastSeq uint64 `json:"last_seq"`
	Msgs    uint64 `json:"msgs"`
	// Oldest is its oldest message's time: no message can have expired
	// (MaxAge) before the next start while now-MaxAge is before it.
	Oldest time.Time `json:"oldest"`
	// MaxAge is the stream's MaxAge when marked (0: none). A restart
	// with a longer queue.retention loads the stream with this one and
	// expires by it before the gateway's create raises it: the shorter
	// of the two decides whether messages can have expired.
	MaxAge time.Duration `json:"max_age,omitempty"`
}

// StreamDamage is one stream found damaged at start.
type StreamDamage struct {
	Stream string
	// Problem is what was found, for the operator.
	Problem string
	// LostMsgs is how many messages are known lost (0: none or unknown).
	LostMsgs uint64
	// KeptAt is where the damaged files were moved, "" if none.
	KeptAt string
}

// storeAudit is Embedded's record of what the start found.
type storeAudit struct {
	mu      sync.Mutex
	marks   storeMarks
	onDisk  []string // stream directories before nats-server started
	skipped []StreamDamage
	damage  []StreamDamage
	audited bool // AuditStore ran: the marks may be written from now on
	// noIndex are the streams on disk without nats-server's index.db
	// before the start: rebuilt from their blocks, silently.
	noIndex map[string]bool
	// consumersOnDisk are each stream's consumer directories before the
	// start (storeconsumers.go).
	consumersOnDisk map[string][]string
	// rebuilt are the streams whose state nats-server said, at this
	// start, it could not take from its index (noteStartLine); its own
	// goroutines write it, hence the lock of its own.
	rebuiltMu sync.Mutex
	rebuilt   map[string]bool
}

// streamStateWarnings begin nats-server's warnings (after "Filestore
// [<stream>] ") about a stream whose state it could not take from its
// index.db and rebuilt from the blocks (filestore.go, recoverFullState):
// the only starts whose message count can differ from the one it wrote
// at its stop, hence the only ones a count below the mark is a loss in.
var streamStateWarnings = []string{"Stream state ", "Recovering stream state", "Could not read stream state"}

// rebuiltStreamOf is the stream a nats-server line says it rebuilt the
// state of, if it is one of those.
func rebuiltStreamOf(line string) (string, bool) {
	rest, ok := strings.CutPrefix(line, "Filestore [")
	if !ok {
		return "", false
	}
	name, what, ok := strings.Cut(rest, "] ")
	if !ok || name == "" {
		return "", false
	}
	for _, w := range streamStateWarnings {
		if strings.HasPrefix(what, w) {
			return name, true
		}
	}
	return "", false
}

// noteStartLine records the streams nats-server says it rebuilt. Only the
// start's lines matter (the audit reads them once); lines of a later
// in-process restart add to a map bounded by the store's streams.
func (a *storeAudit) noteStartLine(line string) {
	name, ok := rebuiltStreamOf(line)
	if !ok {
		return
	}
	a.rebuiltMu.Lock()
	defer a.rebuiltMu.Unlock()
	if a.rebuilt == nil {
		a.rebuilt = map[string]bool{}
	}
	a.rebuilt[name] = true
}

// countTrusted reports whether a stream's message count at this start
// can be compared with a clean stop's: nats-server rebuilt its state
// (from blocks that disagreed with its index, or without an index).
func (a *storeAudit) countTrusted(name string) bool {
	a.rebuiltMu.Lock()
	defer a.rebuiltMu.Unlock()
	return a.rebuilt[name] || a.noIndex[name]
}

// streamsDir is where nats-server keeps the global account's streams.
func streamsDir(storeDir string) string {
	return filepath.Join(storeDir, server.JetStreamStoreDir, server.DEFAULT_GLOBAL_ACCOUNT, "streams")
}

// streamDirsOnDisk lists the stream directories under storeDir.
func streamDirsOnDisk(storeDir string) ([]string, error) {
	ents, err := os.ReadDir(streamsDir(storeDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() && !strings.Contains(e.Name(), ".damaged-") {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// parseStoreMarks reads the marks file's content; a file it cannot read
// gives no marks (the audit then relies on nats-server's own reports).
func parseStoreMarks(b []byte) (storeMarks, error) {
	var m storeMarks
	if err := json.Unmarshal(b, &m); err != nil {
		return storeMarks{}, fmt.Errorf("jobs: reading %s: %w", storeMarksFile, err)
	}
	for name := range m.Streams {
		if name == "" || strings.ContainsAny(name, "/\\") {
			return storeMarks{}, fmt.Errorf("jobs: reading %s: bad stream name %q", storeMarksFile, name)
		}
	}
	return m, nil
}

func readStoreMarks(storeDir string) (storeMarks, error) {
	b, err := os.ReadFile(filepath.Join(storeDir, storeMarksFile))
	if errors.Is(err, fs.ErrNotExist) {
		return storeMarks{}, nil
	}
	if err != nil {
		return storeMarks{}, err
	}
	return parseStoreMarks(b)
}

// writeStoreMarks replaces the marks file, synced, by a rename (the
// directory synced after it): a crash mid-write leaves the previous marks.
func writeStoreMarks(storeDir string, m storeMarks) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	path := filepath.Join(storeDir, storeMarksFile)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(b)
	serr := f.Sync()
	if err := errors.Join(werr, serr, f.Close()); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	syncDir(storeDir)
	return nil
}

// syncDir makes a rename in dir durable: without it a power cut can bring
// back the previous marks file, and with it a false alarm at the next
// start. Best effort: some systems (Windows) cannot sync a directory, and
// the marks are only a check.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}

// beforeStart takes the inventory nats-server's start is compared with
// and cuts the KV blocks damaged in place (storeblocks.go). Every start of
// a server on the store runs it, the first and a disk fault's recovery
// (restartServer): damage is likeliest during a fault. At a recovery the
// store has been audited already: what it found then stays reported
// (a.damage), the new findings start afresh, and the marks are the ones
// the gateway last wrote (in memory: its disk may still be failing).
func (e *Embedded) beforeStart(now time.Time) {
	a := &e.audit
	a.mu.Lock()
	defer a.mu.Unlock()
	restart := a.audited
	if restart {
		a.skipped = nil
	}
	var err error
	if a.onDisk, err = streamDirsOnDisk(e.dir); err != nil {
		e.log.Warn("job store: listing its streams on disk", "data_dir", e.dir, "error", telemetry.FileCause(err), "detail", telemetry.Clip(err.Error()))
	}
	a.consumersOnDisk = consumerDirsOnDisk(e.dir, a.onDisk)
	a.noIndex = map[string]bool{}
	for _, name := range a.onDisk {
		_, err := os.Stat(filepath.Join(streamsDir(e.dir), name, "msgs", "index.db"))
		if errors.Is(err, fs.ErrNotExist) {
			a.noIndex[name] = true
		}
	}
	e.cutDamagedKVBlocks(now)
	if restart {
		return
	}
	if a.marks, err = readStoreMarks(e.dir); err != nil {
		e.log.Warn("job store: its stream marks are unreadable; damage is found from nats-server's reports only", "data_dir", e.dir, "error", telemetry.FileCause(err), "detail", telemetry.Clip(err.Error()))
	}
}

// loadedStream is a stream nats-server has: its state and MaxAge.
type loadedStream struct {
	state  server.StreamState
	maxAge time.Duration
}

// loadedStreams is each stream nats-server has.
func (e *Embedded) loadedStreams() (map[string]loadedStream, error) {
	streams, _, err := e.loadedStore(false)
	return streams, err
}

// loadedStore is each stream nats-server has and, withConsumers, each
// stream's consumers it loaded: one Jsz call (it walks every account's
// streams) serves both.
func (e *Embedded) loadedStore(withConsumers bool) (map[string]loadedStream, map[string][]string, error) {
	info, err := e.server().Jsz(&server.JSzOptions{Accounts: true, Streams: true, Config: true, Consumer: withConsumers})
	if err != nil {
		return nil, nil, err
	}
	streams := map[string]loadedStream{}
	consumers := map[string][]string{}
	for _, acc := range info.AccountDetails {
		for _, s := range acc.Streams {
			ls := loadedStream{state: s.State}
			if s.Config != nil {
				ls.maxAge = s.Config.MaxAge
			}
			streams[s.Name] = ls
			for _, c := range s.Consumer {
				if c != nil {
					consumers[s.Name] = append(consumers[s.Name], c.Name)
				}
			}
		}
	}
	return streams, consumers, nil
}

// afterStart compares what was on disk before the start with what
// nats-server loaded, read once: the streams it skipped get their meta
// files kept aside (keepStreamMetaAside), the consumers it skipped their
// directories (keepConsumersAside).
func (e *Embedded) afterStart(now time.Time) {
	a := &e.audit
	if len(a.onDisk) == 0 {
		return
	}
	streams, consumers, err := e.loadedStore(len(a.consumersOnDisk) > 0)
	if err != nil {
		e.log.Warn("job store: reading its streams' state", "data_dir", e.dir, "error", telemetry.FileCause(err), "detail", telemetry.Clip(err.Error()))
		return
	}
	e.keepStreamMetaAside(now, streams)
	e.keepConsumersAside(now, consumers)
}

// keepStreamMetaAside finds the streams whose directory was on disk but
// that nats-server did not load (not in loaded), and keeps their meta
// files aside: the gateway's create writes new ones over the same blocks.
func (e *Embedded) keepStreamMetaAside(now time.Time, loaded map[string]loadedStream) {
	a := &e.audit
	for _, name := range a.onDisk {
		if _, ok := loaded[name]; ok {
			continue
		}
		d := StreamDamage{Stream: name, Problem: "metadata unreadable (nats-server skipped the stream); recreated from the gateway's config over its message blocks"}
		dir := filepath.Join(streamsDir(e.dir), name)
		kept := dir + ".damaged-" + now.UTC().Format("20060102T150405Z")
		if err := keepMetaAside(dir, kept); err != nil {
			d.Problem += "; keeping its meta files aside failed: " + err.Error()
		} else {
			d.KeptAt = kept
		}
		a.skipped = append(a.skipped, d)
	}
}

// keepMetaAside moves a stream's meta files (meta.inf, meta.sum, the
// ones nats-server refused) into kept.
func keepMetaAside(dir, kept string) error {
	if err := os.MkdirAll(kept, 0o700); err != nil {
		return err
	}
	for _, f := range []string{"meta.inf", "meta.sum", "meta.key"} {
		err := os.Rename(filepath.Join(dir, f), filepath.Join(kept, f))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// AuditStore compares the store as the gateway's streams now stand with
// what was on disk and marked before the start (see above), logs the
// damage found as one error line, and marks the streams' current last
// sequences. Store.Open calls it once its streams are created.
func (e *Embedded) AuditStore() []StreamDamage {
	if e == nil {
		return nil
	}
	a := &e.audit
	a.mu.Lock()
	defer a.mu.Unlock()
	return e.auditLocked(time.Now(), "at start")
}

// auditAfterRestart is the start's audit for a recovery's new server,
// once the store has had its first (AuditStore; before it, Store.Open's
// audit covers this start too): what beforeStart cut and the streams'
// last sequences against the marks, the new damage logged and added to
// what earlier starts found.
func (e *Embedded) auditAfterRestart(now time.Time) {
	a := &e.audit
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.audited {
		return
	}
	before := a.damage
	found := e.auditLocked(now, "at a recovery restart")
	for i := range found {
		found[i].Problem = "at a recovery restart at " + now.UTC().Format(time.RFC3339) + ": " + found[i].Problem
	}
	a.damage = append(slices.Clone(before), found...)
}

// auditLocked is AuditStore's comparison (see above), when says which
// start found the damage; a.mu is held.
func (e *Embedded) auditLocked(now time.Time, when string) []StreamDamage {
	a := &e.audit
	loaded, err := e.loadedStreams()
	if err != nil {
		e.log.Warn("job store: reading its streams' state", "data_dir", e.dir, "error", telemetry.FileCause(err), "detail", telemetry.Clip(err.Error()))
		return nil
	}
	damage := slices.Clone(a.skipped)
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for n := range loaded {
			if !yield(n) {
				return
			}
		}
	}) {
		st := loaded[name].state
		var problems []string
		var lost uint64
		if st.Lost != nil && (len(st.Lost.Msgs) > 0 || st.Lost.Bytes > 0) {
			lost = uint64(len(st.Lost.Msgs))
			problems = append(problems, fmt.Sprintf("nats-server could not read back %d messages (%d bytes)", len(st.Lost.Msgs), st.Lost.Bytes))
		}
		if mark, ok := a.marks.Streams[name]; ok {
			if p, gone := compareMark(mark, a.marks.Clean && a.countTrusted(name), st, loaded[name].maxAge, now); gone > 0 {
				lost = max(lost, gone)
				problems = append(problems, p)
			}
		}
		if len(problems) == 0 {
			continue
		}
		i := slices.IndexFunc(damage, func(d StreamDamage) bool { return d.Stream == name })
		if i < 0 {
			damage = append(damage, StreamDamage{Stream: name})
			i = len(damage) - 1
		}
		damage[i].LostMsgs = lost
		damage[i].Problem = strings.Join(append([]string{damage[i].Problem}, problems...), "; ")
		damage[i].Problem = strings.TrimPrefix(damage[i].Problem, "; ")
	}
	a.damage, a.audited = damage, true
	if len(damage) > 0 {
		var lost uint64
		for _, d := range damage {
			lost += d.LostMsgs
		}
		e.log.Error("job store found damaged on disk "+when+": accepted jobs, batches or files in a stream with lost messages answer 404 or never run; the gateway serves what is left; see docs/DEPLOY.md \"When the store comes back damaged\"",
			"data_dir", e.dir, "streams", len(damage), "lost_messages", lost, "damage", damageText(damage))
	}
	e.writeMarksLocked(loaded, false)
	return damage
}

// compareMark reports the messages a stream lost since mark: nats-server
// keeps a stream's last sequence (its index) when blocks are cut and
// counts the missing messages as deleted, not as lost (measured: half a
// block cut, Lost nil, NumDeleted 2), so the count is the only witness.
// It is trusted (clean) only after a clean stop, in a stream nats-server
// rebuilt (countTrusted: clients may remove messages between the mark
// and the stop), and while no message can have expired since, by the
// MaxAge marked or the current one (maxAge), whichever is shorter.
func compareMark(mark streamMark, clean bool, st server.StreamState, maxAge time.Duration, now time.Time) (string, uint64) {
	if st.LastSeq < mark.LastSeq {
		gone := mark.LastSeq - st.LastSeq
		return fmt.Sprintf("last sequence %d, marked %d: the last %d messages are gone", st.LastSeq, mark.LastSeq, gone), gone
	}
	if !clean || st.LastSeq != mark.LastSeq || st.Msgs >= mark.Msgs {
		return "", 0
	}
	if mark.MaxAge > 0 && (maxAge <= 0 || mark.MaxAge < maxAge) {
		maxAge = mark.MaxAge // the retention the stream was loaded with
	}
	if maxAge > 0 && (mark.Oldest.IsZero() || !now.Add(-maxAge).Before(mark.Oldest)) {
		return "", 0 // some may have expired: not a certain loss
	}
	gone := mark.Msgs - st.Msgs
	return fmt.Sprintf("%d messages at the last clean stop, %d now: %d lost", mark.Msgs, st.Msgs, gone), gone
}

// writeMarksLocked records each stream's state. A damaged stream's mark
// comes down to what is left: its loss is reported once, by the start
// that found it.
func (e *Embedded) writeMarksLocked(loaded map[string]loadedStream, clean bool) {
	m := storeMarks{Written: time.Now().UTC(), Clean: clean, Streams: map[string]streamMark{}}
	for name, ls := range loaded {
		m.Streams[name] = streamMark{LastSeq: ls.state.LastSeq, Msgs: ls.state.Msgs, Oldest: ls.state.FirstTime.UTC(), MaxAge: ls.maxAge}
	}
	e.audit.marks = m
	if err := writeStoreMarks(e.dir, m); err != nil {
		e.log.Warn("job store: writing its stream marks", "data_dir", e.dir, "error", telemetry.FileCause(err), "detail", telemetry.Clip(err.Error()))
	}
}

// markOnStop writes the streams' last sequences before a clean stop, so
// the next start compares with them rather than with this start's.
func (e *Embedded) markOnStop() {
	a := &e.audit
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.audited || e.fault.failing.Load() || !e.server().JetStreamEnabled() {
		return
	}
	if loaded, err := e.loadedStreams(); err == nil {
		e.writeMarksLocked(loaded, true)
	}
}

// StoreDamage is what the start found damaged (AuditStore), nil if none.
func (e *Embedded) StoreDamage() []StreamDamage {
	if e == nil {
		return nil
	}
	e.audit.mu.Lock()
	defer e.audit.mu.Unlock()
	return slices.Clone(e.audit.damage)
}

func damageText(ds []StreamDamage) string {
	parts := make([]string, 0, len(ds))
	for _, d := range ds {
		s := d.Stream + ": " + d.Problem
		if d.KeptAt != "" {
			s += " (damaged files kept at " + d.KeptAt + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " | ")
}

// StoreDamageText is the damage found at start (and at a recovery
// restart, each such entry saying so), for /status; "" if none.
func (e *Embedded) StoreDamageText() string {
	ds := e.StoreDamage()
	if len(ds) == 0 {
		return ""
	}
	return fmt.Sprintf("found at start in data directory %s: %s", e.dir, damageText(ds))
}
