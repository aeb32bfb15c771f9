package jobs

import (
	"sync"
	"time"
)

// A disk at its limit flaps: the recovery probe (256 KiB) passes,
// JetStream starts again (it mostly reads), and the next write fails and
// begins a new fault. Logged per fault, that was an ERROR line and an
// INFO line every RecoverEvery (5 s), measured with the probe forced to
// pass and every block write refused: 3 recoveries and 6 fault ERROR
// lines in one test (RELIABILITY, review2's doubts). As nginx or Envoy
// damp a repeating error, the store's faults are logged by episode: one
// ERROR when an episode begins, one INFO at its first recovery, and the
// faults and recoveries that follow within faultRepeatWindow of the last
// recovery summarised, at most one WARN line per faultRepeatWindow with
// their counts. The episode ends once the store has written for a whole
// faultRepeatWindow since its last recovery; an episode that repeated
// says so then with one INFO line. Counters and /status are unchanged:
// every fault and recovery is still counted there.

// faultRepeatWindow is how long after a recovery a new fault still
// belongs to the same episode, and the least time between two summary
// lines.
const faultRepeatWindow = time.Minute

// faultEpisode is the store's faults as logged; its methods say what to
// log, Embedded logs it.
type faultEpisode struct {
	mu   sync.Mutex
	open bool
	// start is the episode's first fault; lastRecovery its latest
	// recovery (zero: none yet); lastLine the latest line logged about it.
	start, lastRecovery, lastLine time.Time
	faults, recoveries            int // in the episode
	// unsaidFaults and unsaidRecoveries are those since the last line.
	unsaidFaults, unsaidRecoveries int
	lastError                      string // nats-server's line of the latest fault
	// restarting is a restart under way (TryRecover): the fault is
	// cleared before it and the recovery recorded after it, so until then
	// lastRecovery is the previous one's and says nothing of the store.
	restarting bool
	// failedStarts is the restarts in a row whose new server did not
	// start (its port taken, JetStream refused on the directory), the
	// latest at lastFailedStart; a recovery resets it.
	failedStarts    int
	lastFailedStart time.Time
}

// episodeNews is what one event of the store's disk should log.
type episodeNews int

const (
	newsNone      episodeNews = iota // debug only
	newsBegan                        // ERROR: an episode begins
	newsRecovered                    // INFO: the episode's first recovery
)

// episodeSummary is a summary line's content: the faults and recoveries
// since the previous line, the episode's totals.
type episodeSummary struct {
	faults, recoveries           int // since the previous line
	totalFaults, totalRecoveries int
	since                        time.Time
	lastError                    string
	failedStarts                 int  // restarts in a row whose server did not start
	ended                        bool // the store has written for faultRepeatWindow: the episode is over
}

// endedLocked closes an episode whose last recovery is a whole window
// old, returning its closing summary if it repeated.
func (ep *faultEpisode) endedLocked(now time.Time, failing bool) *episodeSummary {
	if !ep.open || failing || ep.restarting || ep.lastRecovery.IsZero() || now.Sub(ep.lastRecovery) < faultRepeatWindow {
		return nil
	}
	ep.open = false
	if ep.faults <= 1 {
		return nil // its recovery line said it all
	}
	s := ep.summaryLocked(now)
	s.ended = true
	return s
}

func (ep *faultEpisode) summaryLocked(now time.Time) *episodeSummary {
	s := &episodeSummary{faults: ep.unsaidFaults, recoveries: ep.unsaidRecoveries,
		totalFaults: ep.faults, totalRecoveries: ep.recoveries, since: ep.start, lastError: ep.lastError,
		failedStarts: ep.failedStarts}
	ep.unsaidFaults, ep.unsaidRecoveries, ep.lastLine = 0, 0, now
	return s
}

// dueLocked is a summary of the unsaid repeats if the last line is a
// window old.
func (ep *faultEpisode) dueLocked(now time.Time) *episodeSummary {
	if ep.unsaidFaults+ep.unsaidRecoveries == 0 || now.Sub(ep.lastLine) < faultRepeatWindow {
		return nil
	}
	return ep.summaryLocked(now)
}

// began records a fault's start (line: nats-server's report). It
// returns newsBegan for an episode's first fault, else newsNone and the
// summaries due: the previous episode's end, the repeats' summary.
func (ep *faultEpisode) began(now time.Time, line string) (episodeNews, []*episodeSummary) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	var out []*episodeSummary
	if s := ep.endedLocked(now, false); s != nil {
		out = append(out, s)
	}
	ep.lastError = line
	if !ep.open {
		ep.open, ep.start, ep.lastRecovery, ep.lastLine = true, now, time.Time{}, now
		ep.faults, ep.recoveries, ep.unsaidFaults, ep.unsaidRecoveries = 1, 0, 0, 0
		ep.failedStarts, ep.lastFailedStart = 0, time.Time{}
		return newsBegan, out
	}
	ep.faults++
	ep.unsaidFaults++
	if s := ep.dueLocked(now); s != nil {
		out = append(out, s)
	}
	return newsNone, out
}

// recovered records a recovery: newsRecovered for the episode's first
// or one after failed starts (failed: how many, in a row), else newsNone
// and the summary if one is due.
func (ep *faultEpisode) recovered(now time.Time) (news episodeNews, failed int, sum *episodeSummary) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	first := ep.recoveries == 0
	ep.recoveries++
	ep.lastRecovery = now
	failed, ep.failedStarts = ep.failedStarts, 0
	if first || !ep.open || failed > 0 {
		ep.lastLine = now
		return newsRecovered, failed, nil
	}
	ep.unsaidRecoveries++
	return newsNone, 0, ep.dueLocked(now)
}

// startFailed records a restart whose new server did not start (after
// its fault was counted, faultBegan): it reports how many in a row, and
// when the recovery loop tries next.
func (ep *faultEpisode) startFailed(now time.Time, base time.Duration) (inARow int, next time.Time) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	ep.failedStarts++
	ep.lastFailedStart = now
	return ep.failedStarts, now.Add(restartWait(base, ep.recoveries+ep.failedStarts))
}

// setRestarting marks a restart under way (TryRecover) or over: while
// one is, the episode does not end. Without it a fault logged by the new
// server as it started, a failed start, or a look at the episode between
// the fault's clearing and the recovery's record, found the store "not
// failing" with its last recovery minutes old: the episode ended (its
// "writes steadily again" line logged), the next fault began a new one,
// and the restarts' backoff began again from RecoverEvery (a flapping
// disk's hour: 23 restarts instead of 17).
func (ep *faultEpisode) setRestarting(on bool) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	ep.restarting = on
}

// maxRestartWait bounds the backoff of the server's restarts within an
// episode.
const maxRestartWait = 5 * time.Minute

// restartDue reports whether the recovery loop may start the server again
// now: at once for an episode's first fault, then, after its r-th
// recovery, base<<(r-1) after that recovery, at most maxRestartWait.
// Made when each restart of JetStream in process leaked goroutines (a
// disk flapping every 5 s was 720 restarts an hour); the whole server is
// restarted now, which leaks nothing (restart.go), and the backoff is
// kept: each restart drops every client's connection (the gateway's and
// `sluice worker`s), and a flapping disk's restarts are its log lines.
// The probe waits with the restart: a disk given room back during an
// episode recovers within the backoff.
//
// A restart whose new server does not start counts as one more try: the
// next waits base<<(tries-1) after it. Before, such a restart was none
// (no recovery): the loop tried again at every turn, every RecoverEvery,
// for as long as the start failed, each try an ERROR line from
// nats-server and, with its port taken, a 10 s wait for a server that
// would never listen, back to back.
func (ep *faultEpisode) restartDue(now time.Time, base time.Duration) bool {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if !ep.open {
		return true
	}
	if ep.failedStarts > 0 {
		return !now.Before(ep.lastFailedStart.Add(restartWait(base, ep.recoveries+ep.failedStarts)))
	}
	if ep.recoveries == 0 {
		return true
	}
	return !now.Before(ep.lastRecovery.Add(restartWait(base, ep.recoveries)))
}

// restartWait is the wait after an episode's tries-th restart: base
// doubling, at most maxRestartWait.
func restartWait(base time.Duration, tries int) time.Duration {
	if shift := tries - 1; shift < 16 && base<<shift < maxRestartWait {
		return base << shift
	}
	return maxRestartWait
}

// tick is the recovery loop's look at the episode: its end, or a summary
// due while nothing else happens.
func (ep *faultEpisode) tick(now time.Time, failing bool) *episodeSummary {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if s := ep.endedLocked(now, failing); s != nil {
		return s
	}
	if !ep.open {
		return nil
	}
	return ep.dueLocked(now)
}
