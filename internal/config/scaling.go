package config

import "time"

// Scaling configures the scaling signals: sluice_model_desired_backends and
// the figures behind it, on /metrics and as JSON on the admin listener's
// /scaling (docs/DEPLOY.md, "Scaling signals").
type Scaling struct {
	// Window is the time constant the arrival, refusal, wait and service
	// rates decay over: after a change the rates have moved 63% of the way
	// in one window. Demand is also measured over a fifth of it and the
	// larger counts, so desired backends follows a rise within a fifth of
	// the window and a fall over the whole (default 10s).
	Window Duration `yaml:"window"`
	// Headroom is the capacity kept free above the demand: a pool at its
	// desired size runs at 1/(1+headroom) of its measured service rate
	// (default 0.2).
	Headroom float64 `yaml:"headroom"`
	// Lead is how far ahead desired backends looks when forecast.enabled:
	// the forecast p90 arrival rate at now+lead counts as demand, so a
	// scaler acting on the signal starts servers before the traffic needs
	// them. Set it to a backend's start-up time (model load included);
	// default 3m, 0 turns the forecast's lead off (desired backends then
	// uses the measured rate alone).
	Lead Duration `yaml:"lead"`
	// ScaleInHold is how long desired backends holds its highest value
	// before it may fall, when forecast.enabled: scale-in waits this long
	// after the demand (or the forecast) dropped; scale-out is never
	// delayed. Default 5m, 0: none. Without a forecast the signal follows
	// the measured demand down and the scaler's own stabilisation holds it.
	ScaleInHold Duration `yaml:"scale_in_hold"`
}

func defaultScaling() Scaling {
	return Scaling{Window: Duration(10 * time.Second), Headroom: 0.2,
		Lead: Duration(3 * time.Minute), ScaleInHold: Duration(5 * time.Minute)}
}

// maxScalingWindow bounds scaling.window: a longer one reacts after any
// scaler would have given up.
const maxScalingWindow = 10 * time.Minute

func (c *Config) validateScaling(bad badFunc) {
	s := c.Scaling
	if w := s.Window.D(); w < time.Second || w > maxScalingWindow {
		bad("scaling.window", "must be between 1s and 10m, got %s", w)
	}
	if !(s.Headroom >= 0 && s.Headroom <= 10) {
		bad("scaling.headroom", "must be between 0 and 10 (a share of capacity: 0.2 keeps 20%% free), got %g", s.Headroom)
	}
	if l := s.Lead.D(); l < 0 || l > 24*time.Hour {
		bad("scaling.lead", "must be between 0 and 24h (a backend's start-up time, e.g. 3m), got %s", l)
	} else if c.Forecast.Enabled && l > c.Forecast.MaxHorizon.D() {
		bad("scaling.lead", "must not exceed forecast.max_horizon (%s): the forecast does not reach that far, got %s", c.Forecast.MaxHorizon.D(), l)
	}
	if h := s.ScaleInHold.D(); h < 0 || h > 24*time.Hour {
		bad("scaling.scale_in_hold", "must be between 0 and 24h, got %s", h)
	}
}
