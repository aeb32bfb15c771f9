package app

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/forecast"
	"github.com/sluice-gw/sluice/internal/gateway"
	"github.com/sluice-gw/sluice/internal/scaling"
)

// forecastRun is a running gateway's traffic forecaster: the gateway's
// demand stage feeds it (Arrival), a ticker closes its intervals, and its
// state is saved to the store every snapshot_interval and when Run ends,
// and restored when it is built.
type forecastRun struct {
	fc    *forecast.Forecaster
	hist  *arrivalHistory // /status's forecast against actual
	store forecast.Store  // nil: snapshot "off", or not ours (openSnapshot)
	// release gives the snapshot up (its lock): App.release, after the
	// last save.
	release func()
	// failing is set while saves fail, so that a failure is logged once
	// and not every snapshot_interval (the run loop only).
	failing bool
	every   time.Duration
	now     func() time.Time
	log     *slog.Logger
	tick    gateway.Ticker
	// meter is the scaling signals' meter: its service rates measured at
	// capacity are saved with the snapshot and restored into it, so that
	// a restart does not plan on the optimistic rates of backends not yet
	// full (internal/scaling/restore.go).
	meter *scaling.Meter
	// pending sums the arrivals of one model and tenant in a row, passed
	// on to fc and hist together (see Arrival).
	pending pendingArrivals
}

// pendingArrivals are arrivals of one model and tenant, all before until,
// not yet passed on to the forecaster and the history. Both count an
// arrival before their open interval's end into that interval and close
// nothing, and sum what they count, so n arrivals passed on as one with
// their sums are counted as they would have been one by one: before, each
// arrival of a cache hit took both their locks, interval checks and tally
// look-ups (~30 code lines a hit, docs/BENCHMARKS.md §9 Step 4i); now
// one lock and three compares. Nothing else may advance fc or hist while
// arrivals are pending: every close goes through advance, which passes
// them on first (under mu).
type pendingArrivals struct {
	mu            sync.Mutex
	armed         bool // model, tenant and until are set
	model, tenant string
	// until is the earlier of the two open intervals' ends, read after
	// the arrival that armed the batch had been counted.
	until time.Time
	// untilSec and untilNsec are until's wall clock (Unix seconds and
	// nanoseconds), compared inline on every arrival: t.Before(until) was
	// a call of its own (~3 code lines a hit, docs/BENCHMARKS.md §9 Step
	// 8). until has no monotonic reading (arm drops any), so Before
	// compared the wall clocks too: the same order.
	untilSec         int64
	untilNsec        int
	at               time.Time // the first pending arrival's time
	requests, tokens float64   // 0 requests: none pending
}

// newForecastRun builds the forecaster from cfg and restores its snapshot
// (openSnapshot: where it is, and why it may be off). A snapshot that
// cannot be read or is from another interval is logged and ignored: the
// forecast starts afresh rather than the gateway not starting. Call close
// when done with it.
func newForecastRun(cfg config.Forecast, dataDir string, now func() time.Time, log *slog.Logger) (*forecastRun, error) {
	minTenant := cfg.MinTenantRate
	if !cfg.PerTenant {
		minTenant = -1
	}
	fc, err := forecast.New(forecast.Config{Interval: cfg.Interval.D(), MaxHorizon: cfg.MaxHorizon.D(),
		MaxGap: cfg.MaxGap.D(), MaxSeries: cfg.MaxSeries, MinTenantRate: minTenant, Live: true})
	if err != nil {
		return nil, err
	}
	r := &forecastRun{fc: fc, hist: newArrivalHistory(fc), every: cfg.SnapshotInterval.D(), now: now, log: log, tick: func(d time.Duration) (<-chan time.Time, func()) {
		t := time.NewTicker(d)
		return t.C, t.Stop
	}}
	r.store, r.release = openSnapshot(cfg, dataDir, fc.Config().MaxSnapshotBytes(), log)
	if r.store != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		switch found, err := fc.LoadFrom(ctx, r.store); {
		case err != nil:
			log.Warn("forecast snapshot not restored; the forecast starts afresh", "error", err.Error())
		case found:
			log.Info("forecast restored from its snapshot", "series", len(fc.Keys()), "service_rates", len(fc.ServiceRates()))
		}
	}
	r.meter = scaling.NewMeter(0)
	for model, sr := range fc.ServiceRates() {
		r.meter.Restore(model, scaling.Service{Slots: sr.Slots, PerSlot: sr.PerSlot, TokensPerSlot: sr.TokensPerSlot, TokensKnown: sr.TokensPerSlot > 0})
	}
	return r, nil
}

// Arrival counts one live request (gateway.Arrivals).
// An arrival for the model and tenant of the one before, in the same
// intervals, is only summed (pendingArrivals); any other passes the sum
// on, is counted itself, and starts a new sum.
func (r *forecastRun) Arrival(t time.Time, model, tenant string, tokens float64) {
	p := &r.pending
	p.mu.Lock()
	if p.armed && wallBefore(t, p.untilSec, p.untilNsec) && model == p.model && tenant == p.tenant {
		if p.requests == 0 {
			p.at = t
		}
		p.requests++
		p.tokens += tokens
		p.mu.Unlock() // not deferred: this runs on every request
		return
	}
	r.arm(t, model, tenant, tokens)
	p.mu.Unlock()
}

// arm passes the pending arrivals on, counts this one, and starts a new
// sum for its model and tenant; r.pending.mu is held. Apart from Arrival,
// so that the arrival only summed (most of them) runs few code lines.
func (r *forecastRun) arm(t time.Time, model, tenant string, tokens float64) {
	p := &r.pending
	r.passOn()
	// The open ends come back from the counts' own locks: one call each,
	// as one arrival at a time took, for the arrival that starts a sum
	// (almost every one when tenants interleave).
	p.until = r.fc.ObserveUntil(t, forecast.Key{Model: model, Tenant: tenant}, 1, tokens)
	if e := r.hist.observe(t, model, 1, tokens); e.Before(p.until) {
		p.until = e
	}
	p.until = p.until.Round(0) // no monotonic reading: Before would compare wall clocks
	p.untilSec, p.untilNsec = p.until.Unix(), p.until.Nanosecond()
	p.armed, p.model, p.tenant = true, model, tenant
}

// wallBefore is t.Before(u) for the u whose wall clock is sec and nsec
// and which has no monotonic reading.
func wallBefore(t time.Time, sec int64, nsec int) bool {
	s := t.Unix()
	return s < sec || s == sec && t.Nanosecond() < nsec
}

// passOn counts the pending arrivals into the forecaster and the history
// and disarms the batch. r.pending.mu is held.
func (r *forecastRun) passOn() {
	p := &r.pending
	if p.requests > 0 {
		r.fc.Observe(p.at, forecast.Key{Model: p.model, Tenant: p.tenant}, p.requests, p.tokens)
		r.hist.observe(p.at, p.model, p.requests, p.tokens)
	}
	p.armed, p.model, p.tenant, p.requests, p.tokens = false, "", "", 0, 0 // not the held mutex
}

// advance closes the intervals that ended at or before now: the
// forecaster's first, so that the history asks it about the new interval.
// The pending arrivals are counted first, into the intervals they arrived
// in; no arrival is summed while the intervals close.
func (r *forecastRun) advance(now time.Time) {
	r.pending.mu.Lock()
	defer r.pending.mu.Unlock()
	r.passOn()
	r.fc.Advance(now)
	r.hist.Advance(now)
}

// run closes the intervals ended by each tick's time and saves every
// snapshot interval, until ctx ends; then it saves once more.
func (r *forecastRun) run(ctx context.Context) {
	tick, stop := r.tick(r.fc.Config().Interval)
	defer stop()
	saved := r.now()
	for {
		select {
		case <-ctx.Done():
			r.advance(r.now())
			r.save()
			return
		case now := <-tick:
			r.advance(now)
			if now.Sub(saved) >= r.every {
				r.save()
				saved = now
			}
		}
	}
}

func (r *forecastRun) save() {
	if r.store == nil {
		return
	}
	rates := map[string]forecast.ServiceRate{}
	for model, sv := range r.meter.Capacities() {
		rates[model] = forecast.ServiceRate{Slots: sv.Slots, PerSlot: sv.PerSlot, TokensPerSlot: sv.TokensPerSlot}
	}
	r.fc.SetServiceRates(rates)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := r.fc.SaveTo(ctx, r.store)
	switch {
	case err != nil && !r.failing:
		r.log.Error("forecast snapshot not saved; retrying every snapshot_interval, quietly until it works", "error", err.Error())
	case err == nil && r.failing:
		r.log.Info("forecast snapshot saved again")
	}
	r.failing = err != nil
}

// close gives the snapshot file up for another gateway (after run's last
// save).
func (r *forecastRun) close() { r.release() }

// exportedHorizons are the horizons of the sluice_forecast_* metrics.
func exportedHorizons(max time.Duration) []time.Duration {
	var out []time.Duration
	for _, h := range []time.Duration{5 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour} {
		if h <= max {
			out = append(out, h)
		}
	}
	if len(out) == 0 {
		out = append(out, max)
	}
	return out
}

// forecastCollector exports each model's forecast (tenants' are available
// through App.Forecaster, not as metrics, to bound the label values).
type forecastCollector struct {
	fc                        *forecast.Forecaster
	served                    func(model string) bool // a model the runtime serves now
	horizons                  []time.Duration
	req, tok                  *prometheus.Desc
	series, limit             *prometheus.Desc
	evicted, refusedForSeries *prometheus.Desc
}

func newForecastCollector(fc *forecast.Forecaster, served func(model string) bool) *forecastCollector {
	labels := []string{"model", "horizon", "stat"}
	return &forecastCollector{fc: fc, served: served, horizons: exportedHorizons(fc.Config().MaxHorizon),
		req: prometheus.NewDesc("sluice_forecast_requests_per_second",
			"Forecast arrival rate of live requests for the interval starting this far ahead: mean and p90.", labels, nil),
		tok: prometheus.NewDesc("sluice_forecast_tokens_per_second",
			"Forecast estimated tokens per second (prompt bytes / 4 + max_tokens) of live requests: mean and p90.", labels, nil),
		series: prometheus.NewDesc("sluice_forecast_series",
			"Series the forecaster keeps now, by kind: model, or tenant (forecast.per_tenant, those reaching min_tenant_rate).", []string{"kind"}, nil),
		limit: prometheus.NewDesc("sluice_forecast_series_limit",
			"Most series the forecaster keeps (forecast.max_series), models and tenants together.", nil, nil),
		evicted: prometheus.NewDesc("sluice_forecast_series_evicted_total",
			"Tenant series given up, the table full, for a model or a busier tenant (a tenant quiet in the interval closing).", nil, nil),
		refusedForSeries: prometheus.NewDesc("sluice_forecast_series_refused_total",
			"Times a model or a tenant reaching min_tenant_rate found the series table full and no tenant series to take the place of.", nil, nil)}
}

func (c *forecastCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.req, c.tok, c.series, c.limit, c.evicted, c.refusedForSeries} {
		ch <- d
	}
}

func (c *forecastCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.fc.SeriesStats()
	ch <- prometheus.MustNewConstMetric(c.series, prometheus.GaugeValue, float64(st.Models), "model")
	ch <- prometheus.MustNewConstMetric(c.series, prometheus.GaugeValue, float64(st.Tenants), "tenant")
	ch <- prometheus.MustNewConstMetric(c.limit, prometheus.GaugeValue, float64(st.Max))
	ch <- prometheus.MustNewConstMetric(c.evicted, prometheus.CounterValue, float64(st.Evicted))
	ch <- prometheus.MustNewConstMetric(c.refusedForSeries, prometheus.CounterValue, float64(st.Refused))
	for _, k := range c.fc.Keys() {
		if k.Tenant != "" || !c.served(k.Model) {
			continue
		}
		for _, h := range c.horizons {
			f, ok := c.fc.Forecast(k, h)
			if !ok {
				continue
			}
			hl := formatHorizon(h)
			ch <- prometheus.MustNewConstMetric(c.req, prometheus.GaugeValue, f.Requests.Mean, k.Model, hl, "mean")
			ch <- prometheus.MustNewConstMetric(c.req, prometheus.GaugeValue, f.Requests.P90, k.Model, hl, "p90")
			ch <- prometheus.MustNewConstMetric(c.tok, prometheus.GaugeValue, f.Tokens.Mean, k.Model, hl, "mean")
			ch <- prometheus.MustNewConstMetric(c.tok, prometheus.GaugeValue, f.Tokens.P90, k.Model, hl, "p90")
		}
	}
}

// formatHorizon is "10m" for ten minutes (and "60m" for an hour), "90s"
// for ninety seconds.
func formatHorizon(d time.Duration) string {
	if d%time.Minute == 0 {
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}
