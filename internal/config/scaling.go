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
}

func defaultScaling() Scaling {
	return Scaling{Window: Duration(10 * time.Second), Headroom: 0.2}
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
}
