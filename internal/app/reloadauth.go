package app

import (
	"context"
	"errors"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/gateway"
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

// revocationWrite bounds a reload's writes to the revocation record.
const revocationWrite = 10 * time.Second

// recordRevocations writes to the job store's revocation record the
// tenants the reload from prev to next left without an API key and the
// token namespaces whose issuer it removed, and clears the record of
// those a key or an issuer names again (gateway.RevocationChange,
// gateway.RevokedSpaces), so that a gateway restarted with the key or
// issuer removed, and every replica sharing the store whose config does
// not name the tenant, refuse its queued jobs as this process does from
// memory. Without a connected queue (or when the write fails) the
// revocation holds in this process alone, as before the record, and the
// log says so.
func (a *App) recordRevocations(prev, next *gateway.Runtime) {
	lost, found := gateway.RevocationChange(prev, next)
	lostSpaces, foundSpaces := gateway.RevokedSpaces(prev, next)
	if len(lost)+len(found)+len(lostSpaces)+len(foundSpaces) == 0 {
		return
	}
	a.jobsMu.Lock()
	q := a.jobs
	a.jobsMu.Unlock()
	if q == nil {
		if len(lost)+len(lostSpaces) > 0 {
			a.log.Warn("config reload: revoked tenants not recorded in the job store (the queue is off or not connected): only this process refuses their queued jobs",
				"tenants", len(lost), "token_namespaces", len(lostSpaces))
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), revocationWrite)
	defer cancel()
	if err := errors.Join(q.store.ClearRevoked(ctx, found), q.store.ClearRevokedSpaces(ctx, foundSpaces)); err != nil {
		a.log.Warn("config reload: the revocation record of tenants named again not cleared: processes whose config does not name them refuse their jobs until queue.retention",
			"tenants", len(found), "token_namespaces", len(foundSpaces), "error", err.Error())
	}
	if err := errors.Join(q.store.RecordRevoked(ctx, lost), q.store.RecordRevokedSpaces(ctx, lostSpaces)); err != nil {
		a.log.Warn("config reload: revoked tenants not recorded in the job store: only this process refuses their queued jobs",
			"tenants", len(lost), "token_namespaces", len(lostSpaces), "error", err.Error())
		return
	}
	if len(lost)+len(lostSpaces) > 0 {
		a.log.Info("config reload: revoked tenants recorded in the job store: every gateway sharing it whose config does not name them refuses their queued jobs",
			"tenants", len(lost), "token_namespaces", len(lostSpaces))
	}
}
