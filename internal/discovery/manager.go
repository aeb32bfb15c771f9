package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// Sources are one model's sources, with a key that says when two
// configurations of them are the same (unchanged sources keep running
// across a reload).
type Sources struct {
	Key  string
	List []Source
}

// Manager runs every model's sources and keeps the last set each reported.
// It owns their goroutines: Sync starts and stops them, Stop ends all.
// Changes are signalled on Changed (coalesced), never by calling out, so a
// source never waits for the consumer.
type Manager struct {
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time
	changed chan struct{}

	mu      sync.Mutex
	running map[string]*running // by model
	synced  bool                // Sync has run: later models are not the startup's
}

type running struct {
	key    string
	kinds  []string // by source: "file", "dns", ... (kindOf)
	cancel context.CancelFunc
	wg     sync.WaitGroup
	sets   [][]endpoint.Spec // by source; nil until it reported
	// known is whether the model's membership was ever known: a source
	// reported a set, or the sources these replaced had (carried). Until
	// then the model is initialising (State.Known).
	known bool
	// startup: started by the first Sync (the gateway's start), or
	// replacing sources that were and never found a set (State.Startup).
	startup bool
	// since are, by source, when its current run of failures began
	// (zero while it does not fail).
	since []time.Time
	// unsettled are, by source, whether it has told of a read it holds
	// back (Unsettled) since its last report: logged once per run.
	unsettled []bool
	// failing is, by source, whether its last report was a failure: a
	// source that fails again and again is logged once, when it starts
	// failing, and once when it reports a set again.
	failing []bool
	// errs are, by source, the last failure's text while it fails.
	errs []string
	// carried is the set of the sources these replaced (a reload that
	// changed them), served until one of these reports: a changed
	// source must not empty the pool while it starts.
	carried []endpoint.Spec
}

// NewManager makes a manager; reg may be nil, now nil is time.Now (it
// dates failures: State.FailingSince).
func NewManager(reg prometheus.Registerer, log *slog.Logger, now func() time.Time) *Manager {
	if now == nil {
		now = time.Now
	}
	return &Manager{log: log, metrics: newMetrics(reg), now: now, changed: make(chan struct{}, 1), running: map[string]*running{}}
}

// Changed receives a value after some model's set changed.
func (m *Manager) Changed() <-chan struct{} { return m.changed }

// Sync makes the running sources match want (by model): a model whose
// key is unchanged keeps its sources and their sets; others are stopped,
// new ones started. A model whose sources changed keeps the old ones'
// set until a new one reports.
func (m *Manager) Sync(want map[string]Sources) {
	m.mu.Lock()
	var stop []*running
	carried := map[string][]endpoint.Spec{}
	known, startup := map[string]bool{}, map[string]bool{}
	for model, r := range m.running {
		if w, ok := want[model]; !ok || w.Key != r.key {
			stop = append(stop, r)
			carried[model] = m.setLocked(model)
			known[model], startup[model] = r.known, r.startup
			delete(m.running, model)
			m.metrics.forget(model)
		}
	}
	for model, w := range want {
		if _, ok := m.running[model]; ok || len(w.List) == 0 {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		n := len(w.List)
		r := &running{key: w.Key, cancel: cancel, sets: make([][]endpoint.Spec, n), known: known[model],
			startup: !m.synced || startup[model],
			failing: make([]bool, n), errs: make([]string, n), since: make([]time.Time, n),
			unsettled: make([]bool, n), carried: carried[model]}
		for _, src := range w.List {
			r.kinds = append(r.kinds, kindOf(src))
		}
		m.running[model] = r
		m.metrics.setKnown(model, r.known)
		for i, src := range w.List {
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				src.Run(ctx, &sink{m: m, r: r, model: model, i: i})
			}()
		}
	}
	m.synced = true
	m.mu.Unlock()
	for _, r := range stop {
		r.cancel()
		r.wg.Wait()
	}
	if len(stop) > 0 {
		m.signal()
	}
}

// Stop ends every source and waits for them.
func (m *Manager) Stop() { m.Sync(nil) }

// Set is the model's discovered backends: every source's last set, each
// backend once.
func (m *Manager) Set(model string) []endpoint.Spec {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.setLocked(model)
}

// maxStateError bounds one source's error in State.
const maxStateError = 300

// State is what a model's sources know now, for /readyz and /status.
type State struct {
	Sources  int // running
	Failing  int // whose last attempt failed: their last set is kept
	Pending  int // that have reported neither a set nor a failure yet
	Backends int // in the model's set (Set), each once
	// Known: the model's membership has been known at least once (a
	// source reported a set, or the sources a reload replaced had one).
	// Until then it is initialising: nothing was found, not even a set
	// that a failure now keeps.
	Known bool
	// Startup: the model's sources were started with the gateway (the
	// first Sync), not added by a reload. A startup model not Known is
	// what a replica waits for before it is ready; one a reload added
	// is not (a broken new block would take every replica out at once).
	Startup bool
	// FailingSince is when the oldest run of failures among the failing
	// sources began; zero while none fails.
	FailingSince time.Time
	// Failures are the failing sources, "source N (kind)", in order;
	// Errors the same with their last errors, "source N (kind): text".
	Failures []string
	Errors   []string
}

// State is model's discovery state; false when it has no source running.
func (m *Manager) State(model string) (State, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.running[model]
	if r == nil {
		return State{}, false
	}
	st := State{Sources: len(r.sets), Backends: len(m.setLocked(model)), Known: r.known, Startup: r.startup}
	for i := range r.sets {
		switch {
		case r.failing[i]:
			st.Failing++
			e := r.errs[i]
			if len(e) > maxStateError { // a registry's answer quoted whole
				e = strings.ToValidUTF8(e[:maxStateError], "") + "…"
			}
			name := fmt.Sprintf("source %d (%s)", i, r.kinds[i])
			st.Failures = append(st.Failures, name)
			st.Errors = append(st.Errors, name+": "+e)
			if st.FailingSince.IsZero() || r.since[i].Before(st.FailingSince) {
				st.FailingSince = r.since[i]
			}
		case r.sets[i] == nil:
			st.Pending++
		}
	}
	return st, true
}

// kindOf names a source's type for State: what an operator wrote as
// the discovery block's type.
func kindOf(src Source) string {
	switch src.(type) {
	case Static:
		return "static"
	case File:
		return "file"
	case DNS:
		return "dns"
	case Consul:
		return "consul"
	case Kubernetes:
		return "kubernetes"
	}
	return "source"
}

func (m *Manager) setLocked(model string) []endpoint.Spec {
	r := m.running[model]
	if r == nil {
		return nil
	}
	if r.carried != nil {
		return slices.Clone(r.carried)
	}
	var out []endpoint.Spec
	seen := map[string]bool{} // by Key: a scan of out grew as the square of the set
	for _, set := range r.sets {
		for _, s := range set {
			if k := s.Key(); !seen[k] {
				seen[k] = true
				out = append(out, s)
			}
		}
	}
	return out
}

func (m *Manager) signal() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// sink is one source's view of the manager.
type sink struct {
	m     *Manager
	r     *running
	model string
	i     int
}

// Update takes the source's set; one of more than maxTargets backends is
// refused as a failure (the last set stands). A set equal to the one the source last
// reported changes nothing (no rebuild); a source reports one after a
// failure to say it recovered.
func (s *sink) Update(set []endpoint.Spec) {
	if len(set) > maxTargets {
		// A registry gone wrong (a selector matching every pod, a zone
		// of thousands of records) must not turn into thousands of
		// backends, each with its state and its place in every picker.
		s.Fail(fmt.Errorf("%d backends, more than %d: refused", len(set), maxTargets))
		return
	}
	s.m.mu.Lock()
	if s.m.running[s.model] != s.r { // stopped: a late report
		s.m.mu.Unlock()
		return
	}
	recovered := s.r.failing[s.i]
	s.r.failing[s.i], s.r.errs[s.i], s.r.since[s.i], s.r.unsettled[s.i] = false, "", time.Time{}, false
	s.r.known = true
	s.m.metrics.setFailing(s.model, s.r.failing, s.r.since)
	s.m.metrics.setKnown(s.model, true)
	same := s.r.carried == nil && s.r.sets[s.i] != nil && slices.Equal(s.r.sets[s.i], set)
	if !same {
		s.r.sets[s.i] = set
		s.r.carried = nil
		// The gauge is set under the lock: two sources reporting at once
		// would otherwise write their sizes in either order, leaving the
		// gauge at the older one.
		s.m.metrics.updated(s.model, len(s.m.setLocked(s.model)))
	}
	s.m.mu.Unlock()
	if recovered {
		s.m.log.Info("discovery recovered", "model", s.model, "source", s.i, "backends", len(set))
	}
	if same {
		return
	}
	s.m.log.Info("discovery: backend set changed", "model", s.model, "source", s.i, "backends", len(set))
	s.m.signal()
}

// Fail counts the failure; only the first of a run of them is logged
// (a source retries with backoff, an agent down for an hour must not
// write a line per retry). The failing gauge shows the run.
func (s *sink) Fail(err error) {
	s.m.mu.Lock()
	if s.m.running[s.model] != s.r {
		s.m.mu.Unlock()
		return
	}
	first := !s.r.failing[s.i]
	if first {
		s.r.since[s.i] = s.m.now()
	}
	s.r.failing[s.i], s.r.errs[s.i], s.r.unsettled[s.i] = true, err.Error(), false
	known := s.r.known
	s.m.metrics.failed(s.model)
	s.m.metrics.setFailing(s.model, s.r.failing, s.r.since)
	s.m.mu.Unlock()
	switch {
	case first && known:
		s.m.log.Warn("discovery failed; keeping the last known backends until it recovers",
			"model", s.model, "source", s.i, "error", err.Error())
	case first:
		s.m.log.Warn("discovery failed before it found any backend; the model waits for it (readiness too, without static backends)",
			"model", s.model, "source", s.i, "error", err.Error())
	}
}

// Unsettled counts a read the source holds back (UnsettledSink: a file
// caught mid-write, a Kubernetes Service, a DNS name or a Consul service
// briefly empty): the first of a
// run is logged, at info (it is not a failure yet).
func (s *sink) Unsettled(err error) {
	s.m.mu.Lock()
	if s.m.running[s.model] != s.r {
		s.m.mu.Unlock()
		return
	}
	first := !s.r.unsettled[s.i]
	s.r.unsettled[s.i] = true
	kind := s.r.kinds[s.i]
	s.m.metrics.unsettled(s.model)
	s.m.mu.Unlock()
	msg := "discovery: read held back until the file settles; keeping the last known backends"
	if kind == "kubernetes" || kind == "dns" || kind == "consul" { // an empty answer held (kubeSettle, emptyHold)
		msg = "discovery: empty set held back briefly; keeping the last known backends"
	}
	if first {
		s.m.log.Info(msg, "model", s.model, "source", s.i, "error", err.Error())
	}
}
