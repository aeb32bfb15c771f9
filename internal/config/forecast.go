package config

import (
	"time"
)

// The forecast snapshot's file in the data directory when
// forecast.snapshot is unset, and the value that turns saving off.
const (
	ForecastSnapshotFile = "forecast.snapshot"
	ForecastSnapshotOff  = "off"
)

// Forecast configures the traffic forecaster (internal/forecast): each
// model's arrival rate, requests/s and tokens/s (estimated as admission
// does: prompt bytes / 4 + max_tokens), counted as live requests arrive
// (refused ones included; async jobs not), forecast up to max_horizon
// ahead with a p90, and exported as sluice_forecast_* metrics. Its learned
// state is saved to a snapshot file every snapshot_interval and at
// shutdown, and restored at start. Changes need a restart.
//
// It is on by default: the scaling signal (sluice_model_desired_backends,
// /scaling) looks scaling.lead ahead only with a forecast, and users run
// the defaults. Counting an arrival is O(1) and allocation-free.
type Forecast struct {
	Enabled bool `yaml:"enabled"` // default true
	// Interval between rate updates: whole seconds, from 1s to 10m,
	// dividing 10m. Default 1m.
	Interval Duration `yaml:"interval"`
	// MaxHorizon is the longest forecast, from interval to 24h (at most
	// 1440 intervals). Default 60m.
	MaxHorizon Duration `yaml:"max_horizon"`
	// PerTenant forecasts each tenant whose rate reaches MinTenantRate
	// (requests/s) on its own too. Default true and 1.
	PerTenant     bool    `yaml:"per_tenant"`
	MinTenantRate float64 `yaml:"min_tenant_rate"`
	// MaxSeries bounds the models and tenants forecast. Default 256. When
	// full, a model takes the place of the least busy tenant, and a busy
	// tenant that of one gone quiet (forecast/room.go).
	MaxSeries int `yaml:"max_series"`
	// MaxGap has no effect on the gateway; it is still accepted (and must
	// not be negative) so that configs that set it load. It bounded the
	// data-gap rule (a rate below 5% of the level skipped as missing data),
	// which is for recorded traces (`sluice bench forecast`, set in code):
	// the gateway counts every request, so a drop in what it sees is
	// demand, believed at once, and intervals in which its ticker did not
	// run at all (a paused process) are unknown, never zeros, however
	// short (forecast.Config.Live).
	MaxGap Duration `yaml:"max_gap"`
	// Snapshot is the state file; default forecast.snapshot in the data
	// directory (queue.data_dir, else $XDG_DATA_HOME/sluice or
	// ~/.local/share/sluice); "off": nothing is saved. One gateway process
	// owns a snapshot file at a time (a lock file beside it); a second one
	// on the same file, or a directory that cannot be written, runs without
	// saving and says so once at start: it never keeps the gateway from
	// starting.
	Snapshot string `yaml:"snapshot"`
	// SnapshotInterval between saves while running, at least 1s. Default 5m.
	SnapshotInterval Duration `yaml:"snapshot_interval"`
}

func defaultForecast() Forecast {
	return Forecast{Enabled: true, Interval: Duration(time.Minute), MaxHorizon: Duration(time.Hour), PerTenant: true,
		MinTenantRate: 1, MaxSeries: 256, MaxGap: Duration(4 * time.Hour), SnapshotInterval: Duration(5 * time.Minute)}
}

func (c *Config) validateForecast(bad badFunc) {
	f := c.Forecast
	if !f.Enabled {
		return
	}
	iv := f.Interval.D()
	if iv < time.Second || iv > 10*time.Minute || (10*time.Minute)%iv != 0 || iv%time.Second != 0 {
		bad("forecast.interval", "must be whole seconds from 1s to 10m that divide 10m evenly (1s, 2s, 5s, 10s, 30s, 1m, 2m, 5m, 10m...), got %v", iv)
	} else if h := f.MaxHorizon.D(); h < iv || h > 24*time.Hour || (h+iv-1)/iv > 1440 {
		bad("forecast.max_horizon", "must be from forecast.interval to 24h and at most 1440 intervals, got %v", h)
	}
	if !(f.MinTenantRate > 0 && f.MinTenantRate <= 1e9) {
		bad("forecast.min_tenant_rate", "must be a positive rate in requests/s (per_tenant: false turns tenants off), got %v", f.MinTenantRate)
	}
	if f.MaxSeries < 1 || f.MaxSeries > 100_000 {
		bad("forecast.max_series", "must be from 1 to 100000, got %d", f.MaxSeries)
	}
	if f.MaxGap < 0 {
		bad("forecast.max_gap", "must not be negative")
	}
	if f.SnapshotInterval.D() < time.Second {
		bad("forecast.snapshot_interval", "must be at least 1s, got %v", f.SnapshotInterval.D())
	}
}
