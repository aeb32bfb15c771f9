package app

import (
	"github.com/sluice-gw/sluice/internal/config"
)

// authOn reports whether cfg checks credentials: API keys listed, or
// bearer tokens verified. Neither is open mode, where every caller is
// served as its client address.
func authOn(cfg *config.Config) bool {
	return len(cfg.Auth.Keys) > 0 || cfg.Auth.JWT.Enabled()
}

// checkAuthKept refuses a reload that would turn a gateway checking
// credentials into an open one: the last API key removed with no
// auth.jwt, or auth.jwt removed with no key left. Before, such a reload
// was applied: every caller was served, as ip:<address>, a removed or
// invented key included, so a key list emptied by mistake (a bad
// template, a secret not mounted) dropped authentication on a production
// gateway without a word but "config reloaded". Open mode is a choice
// made at start (the zero-setup demo), like listen: a restart-only
// change, except that it is refused rather than kept aside, since
// applying the rest of such a file (its keys' tenants, its limits) with
// the old credentials would be neither config. The running config stays
// in force and the reload is reported failed (log, /status, the reload
// metrics).
func checkAuthKept(cfg, old *config.Config) error {
	if !authOn(old) || authOn(cfg) {
		return nil
	}
	key, what := "auth.keys", "removes the last API key and auth.jwt is not set"
	if len(old.Auth.Keys) == 0 {
		key, what = "auth.jwt", "removes auth.jwt and no API key is listed"
	}
	return cfg.KeyError(key, "the reload "+what+", which would serve every caller unauthenticated (open mode); "+
		"refused, the running keys and tokens stay in force: list a key, or restart the gateway to run open")
}
