package gateway

import "time"

// ConfigStatus is /status's "config": whether the config serving is the
// file on disk, and why the last reload that was refused was refused, so
// an operator sees a bad edit (or a ConfigMap update that never took)
// where they look at the gateway, not only in the log of the moment
// (Options.ConfigStatus; docs/STATUS.md).
type ConfigStatus struct {
	// LoadedAt is when the config serving was read: at start, then at
	// each applied reload.
	LoadedAt time.Time `json:"loaded_at"`
	// LastReloadSuccessful is false when the last reload was refused: the
	// file on disk is not the config serving. True when none was tried.
	LastReloadSuccessful bool `json:"last_reload_successful"`
	// LastRefusal is the last refused reload, kept after later ones are
	// applied; absent when none was refused.
	LastRefusal *ConfigRefusal `json:"last_refusal,omitempty"`
	// LastReloadWarnings is what the last applied reload took but could
	// not put to use when it was applied (a new auth.jwt.jwks_url whose
	// key set could not be fetched); absent when it had none, or none
	// was applied.
	LastReloadWarnings []string `json:"last_reload_warnings,omitempty"`
}

// ConfigRefusal is one refused reload: when, and its message (file, line
// and key), with every value the file takes from the environment shown
// as its reference (config.RedactEnv).
type ConfigRefusal struct {
	Time  time.Time `json:"time"`
	Error string    `json:"error"`
}
