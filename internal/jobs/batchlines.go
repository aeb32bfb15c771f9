package jobs

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultMaxBatchLines is the most lines (requests) a batch's input may
// have through the Batch API (OpenAI's per-batch limit; batchapi's
// default). A tracker holds a state for each line of every batch it
// follows, so that and Options.MaxActiveBatches bound what it holds:
// sluice_jobs_batch_lines_limit.
const DefaultMaxBatchLines = 50_000

// lineState is where a batch's line is, as its tracker's actor knows it.
type lineState uint8

const (
	lineQueued lineState = iota
	lineRunning
	lineCompleted // a 2xx answer: the output file
	lineFailed    // any other end, its batch's expiry or cancellation included: the error file
	lineCancelled // cancelled by itself: in neither file
	lineStates
)

var lineStateLabels = [lineStates]string{"queued", "running", "completed", "failed", "cancelled"}

// lineStateOf is st's line state.
func lineStateOf(st *jobState) lineState {
	switch {
	case st.status == StatusRunning:
		return lineRunning
	case !st.status.Terminal():
		return lineQueued
	case st.kind == lineOutput:
		return lineCompleted
	case st.kind == lineError:
		return lineFailed
	}
	return lineCancelled
}

// batchLines counts, for the metrics, the lines the tracker's actors
// hold a state for, by state, and the actors (one watch each). Each
// actor keeps its own map (its goroutine only); these are the sums it
// moves as its lines change, and takes back when it ends: read at
// scrape time without a lock on any actor.
type batchLines struct {
	n      [lineStates]atomic.Int64
	actors atomic.Int64
}

// moved counts a line now in state to, and no longer in from (nil: new
// to its actor).
func (b *batchLines) moved(from, to *jobState) {
	if from != nil {
		b.n[lineStateOf(from)].Add(-1)
	}
	b.n[lineStateOf(to)].Add(1)
}

// dropped takes back the lines of an actor that ended.
func (b *batchLines) dropped(jobs map[int]*jobState) {
	for _, st := range jobs {
		b.n[lineStateOf(st)].Add(-1)
	}
}

var (
	batchLinesDesc = prometheus.NewDesc("sluice_jobs_batch_lines",
		"Lines (requests) of the unfinished batches this process's tracker follows, each held in memory, by state: queued, running, completed (the output file), failed (the error file: failed, or ended by its batch's expiry or cancellation), cancelled (by itself: in neither file). A batch's progress is completed+failed+cancelled against the sum.",
		[]string{"state"}, nil)
	batchLinesLimitDesc = prometheus.NewDesc("sluice_jobs_batch_lines_limit",
		"Most lines the tracker may hold: the active batches' bound (queue.max_active_batches) times a batch's most lines through the Batch API (50,000).", nil, nil)
	trackedBatchesDesc = prometheus.NewDesc("sluice_jobs_tracked_batches",
		"Batches this process's tracker follows now (a watch of its job records and a state per line each); finished ones leave at once.", nil, nil)
)

// collectLines sends the tracker's line counts.
func (c *collector) collectLines(ch chan<- prometheus.Metric) {
	for s, label := range lineStateLabels {
		ch <- prometheus.MustNewConstMetric(batchLinesDesc, prometheus.GaugeValue, float64(c.s.lines.n[s].Load()), label)
	}
	ch <- prometheus.MustNewConstMetric(batchLinesLimitDesc, prometheus.GaugeValue, float64(c.s.o.MaxActiveBatches)*DefaultMaxBatchLines)
	ch <- prometheus.MustNewConstMetric(trackedBatchesDesc, prometheus.GaugeValue, float64(c.s.lines.actors.Load()))
}
