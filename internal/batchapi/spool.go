package batchapi

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/netguard"
)

// DefaultMaxSpoolBytes is Options.MaxSpoolBytes's default: five uploads
// of the default 200 MiB file limit received at once.
const DefaultMaxSpoolBytes = 1 << 30

// errSpoolFull is an upload refused because the uploads being received
// hold Options.MaxSpoolBytes of temporary disk already.
var errSpoolFull = errors.New("upload spool bound reached")

// spoolFullRetry is the Retry-After of 503 upload_spool_full: an upload
// in flight frees its spool when it is stored, seconds for a large one.
const spoolFullRetry = 5 * time.Second

// spoolBound bounds the bytes uploads hold in their spool files (disk in
// TempDir, until each upload is stored or refused) and counts them.
type spoolBound struct {
	budget  *netguard.Budget
	refused prometheus.Counter
}

func newSpoolBound(limit int64, reg prometheus.Registerer) *spoolBound {
	b := &spoolBound{budget: netguard.NewBudget(limit),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_upload_spool_refused_total",
			Help: "Batch API uploads refused 503 upload_spool_full: the uploads being received held queue.max_upload_spool_bytes of temporary disk."})}
	if reg != nil {
		reg.MustRegister(b.refused, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_upload_spool_bytes",
			Help: "Bytes of Batch API uploads being received, spooled to temporary files until stored (bounded by queue.max_upload_spool_bytes)."},
			func() float64 { return float64(b.budget.Held()) }))
	}
	return b
}

// countedSpool charges each byte written to the bound before writing it
// and gives them all back when discarded.
type countedSpool struct {
	spool
	bound *spoolBound
	n     int64
}

func (s *countedSpool) Write(p []byte) (int, error) {
	if !s.bound.budget.TryReserve(int64(len(p))) {
		s.bound.refused.Inc()
		return 0, errSpoolFull
	}
	s.n += int64(len(p))
	return s.spool.Write(p)
}

func (s *countedSpool) discard() {
	s.spool.discard()
	s.bound.budget.Release(s.n)
	s.n = 0
}
