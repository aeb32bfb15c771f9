//go:build race

package gateway

// raceEnabled: the race detector enlarges frames, so stack sizes are
// asserted only without it.
const raceEnabled = true
