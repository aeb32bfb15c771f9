package gateway

import (
	"context"
	"crypto/sha256"
	"slices"
	"strings"
	"sync"

	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/jobs"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// keyRequests are the requests running under each API key (by its digest,
// as tenants holds keys) and each verified token (by its issuer's iss and
// auth.Trust: its audience, the key material that verified it and its
// alg), so that a reload that removes the key, or stops trusting the
// issuer or the token's key, ends them: a key is revoked because it
// leaked or its holder is gone, an issuer removed (or its audience, or
// the static key, secret or key set URL that verified the token, changed,
// or the token's alg dropped from the issuer's algorithms) because its
// tokens are no longer to be trusted, and a stream opened with either
// (minutes of generation, charged to its tenant) must not outlive the
// revocation by its whole length. An edit that keeps a key (same digest)
// or an issuer (same iss and Trust) cuts nothing: config reloads leave
// in-flight requests alone, as Envoy's and nginx's do. A token's own exp
// is not checked again (no revocation list per token).
type keyRequests struct {
	mu   sync.Mutex
	next uint64
	// running holds the requests by a serial: one map for the gateway's
	// life, so a request adds and removes an entry and makes no map (a
	// map per key was made and dropped by every request whose key had no
	// other running). cut, on a reload, walks them all.
	running map[uint64]keyRequest
}

// keyRequest is a running request: its credential, and how to end it.
type keyRequest struct {
	cred   heldCredential
	cancel context.CancelCauseFunc
}

// heldCredential is what a request was admitted on: a listed key (its
// digest), or a token (token set: its issuer's iss and Trust).
type heldCredential struct {
	digest [sha256.Size]byte
	token  bool
	iss    string
	trust  auth.Trust
}

// track derives ctx for a request under the credential c and registers
// it; done unregisters it (and releases ctx).
func (k *keyRequests) track(ctx context.Context, c heldCredential) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	k.mu.Lock()
	if k.running == nil {
		k.running = make(map[uint64]keyRequest)
	}
	k.next++
	n := k.next
	k.running[n] = keyRequest{cred: c, cancel: cancel}
	k.mu.Unlock()
	return ctx, func() {
		k.mu.Lock()
		delete(k.running, n)
		k.mu.Unlock()
		cancel(nil)
	}
}

// cut cancels, with proxy.ErrKeyRevoked as the cause (the same answer for
// a key and a token: 401 api_key_revoked, or an in-band error event),
// every request running under a credential that next refuses. It returns
// how many it cut of keys and of tokens.
func (k *keyRequests) cut(next *tenants) (keys, tokens int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, r := range k.running {
		if next.refusesHeld(r.cred) {
			r.cancel(proxy.ErrKeyRevoked)
			if r.cred.token {
				tokens++
			} else {
				keys++
			}
		}
	}
	return keys, tokens
}

// refusesHeld reports whether t refuses the credential c a running
// request was admitted on (a key: revoked; a token: tokenRevoked).
func (t *tenants) refusesHeld(c heldCredential) bool {
	if c.token {
		return t.tokenRevoked(c.iss, c.trust)
	}
	return t.revoked(c.digest)
}

// revoked reports whether the key with digest d is refused by t: keys or
// tokens are checked and d is not listed. A reload to open mode (neither)
// revokes nothing: the key's holder would be served again, as anyone.
func (t *tenants) revoked(d [sha256.Size]byte) bool {
	if len(t.byKey) == 0 && t.tokens == nil {
		return false
	}
	_, listed := t.byKey[d]
	return !listed
}

// trusting is a token verifier that tells whether it still trusts a token
// accepted on trust by iss (auth.Issuers).
type trusting interface {
	Trusts(iss string, trust auth.Trust) bool
}

// tokenRevoked reports whether t no longer trusts a token of the issuer
// iss accepted on trust: credentials are checked and no issuer of t has
// that iss with that Trust (JWTs off, the issuer removed, its audience
// changed, the key material that verified the token removed or changed,
// or its alg no longer allowed; another key of the issuer removed, or a
// kid given or renamed over the same key, is not the token's). "The same
// issuer" is the same iss and Trust, whatever its name or namespace (jobs
// judge by namespace, lostTenants: a job belongs to a tenant, a running
// request to the token that opened it). Open mode revokes nothing, as
// revoked says.
func (t *tenants) tokenRevoked(iss string, trust auth.Trust) bool {
	if !t.authOn() {
		return false
	}
	if t.tokens == nil {
		return true
	}
	if tr, ok := t.tokens.(trusting); ok {
		return !tr.Trusts(iss, trust)
	}
	return !slices.ContainsFunc(t.spaces, func(s tokenSpace) bool { return s.iss == iss })
}

// trackKey registers x, served under a listed API key or a verified
// token, among keyRequests so that a reload removing the key or the
// token's issuer ends it (Swap). A reload that swapped in between
// identify and here is caught by looking at the runtime now: Swap stores
// the runtime before it cuts, under the same lock.
func (g *Gateway) trackKey(x *exchange) {
	c := heldCredential{digest: x.id.digest, token: x.id.token, iss: x.id.iss, trust: x.id.trust} // identify's
	ctx, done := g.keyReqs.track(x.r.Context(), c)
	x.r = x.r.WithContext(ctx)
	x.rec.ctx = ctx
	x.untrack = done
	if cur := g.rt.Load(); cur != x.rt && cur.tenants.refusesHeld(c) {
		g.keyReqs.cut(cur.tenants)
	}
}

// orphaned reports whether no credential t accepts can act as tenant: keys
// or tokens are checked, no listed key names it, and no token can (it is
// not a token's namespace, "jwt:", nor one of auth.jwt.shared_tenants).
// An anonymous tenant ("ip:") is never orphaned, nor is anyone in open
// mode, as revoked says.
//
// Not enough alone to refuse a job: a replica whose config has not yet
// got a key another replica added would take the new tenant for
// orphaned, and fail for good work a client was promised (202). A job is
// refused when its tenant is orphaned now and a reload of this process
// removed its last key (lostTenants).
func (t *tenants) orphaned(tenant string) bool {
	if !t.authOn() || strings.HasPrefix(tenant, "ip:") || strings.HasPrefix(tenant, config.TokenTenantPrefix) {
		return false
	}
	if _, ok := t.named[tenant]; ok {
		return false
	}
	return t.tokens == nil || !config.SharedTenant(t.shared, tenant)
}

// errTenantRevoked answers a job whose tenant is lost, before it
// reaches a backend: the worker ends it failed with jobs.CodeRevoked,
// unrun, and cancels its batch (jobs.ErrRevoked). Not a 401 or 403: a
// worker takes those for its own credential refused.
var errTenantRevoked = &openai.Error{Status: jobs.StatusRevoked, Type: openai.TypeInvalidRequest, Code: jobs.CodeRevoked,
	Message: "the job's API key was removed from the gateway's configuration and no key of its owner remains: the job is not run"}

// lostTenants are the tenants whose last key a reload of this process
// removed: their queued jobs and batch lines are refused before any
// backend (errTenantRevoked), for as long as no key names them again. A
// set of names, bounded by the keys the configs ever listed; no scan of
// the job store: each job is judged when a worker takes it.
type lostTenants struct {
	mu  sync.Mutex
	set map[string]struct{}
	// spaces are the token namespaces of issuers a reload removed (prefix
	// -> the issuer's iss), shares the shared_tenants patterns no issuer
	// shares any more (revoketokens.go).
	spaces map[string]string
	shares map[string]struct{}
}

// update records the reload from prev to next: the tenants prev's keys
// named that next orphans are lost, and a lost tenant next names (or no
// longer orphans: open mode, a shared tenant of tokens) is found again.
// It returns how many tenants were lost by this reload, and how many
// token namespaces and shared patterns (updateTokens).
func (l *lostTenants) update(prev, next *tenants) (tenants, fromTokens int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fromTokens = l.updateTokens(prev, next)
	for t := range l.set {
		if !next.orphaned(t) {
			delete(l.set, t)
		}
	}
	n := 0
	for t := range prev.named {
		if _, known := l.set[t]; known || !next.orphaned(t) {
			continue
		}
		if l.set == nil {
			l.set = make(map[string]struct{})
		}
		l.set[t] = struct{}{}
		n++
	}
	return n, fromTokens
}

// refuses is the answer to a job of tenant, nil to run it: a tenant whose
// last key a reload removed, or one a removed issuer's tokens named (its
// namespace, or a shared_tenants pattern), that cur, the runtime the job
// is judged on, names no more. Open mode and anonymous ("ip:") tenants
// are never refused.
func (l *lostTenants) refuses(tenant string, cur *tenants) *openai.Error {
	if !cur.authOn() || strings.HasPrefix(tenant, "ip:") {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if strings.HasPrefix(tenant, config.TokenTenantPrefix) {
		if l.refusesToken(tenant, cur) {
			return errIssuerRevoked
		}
		return nil
	}
	if !cur.orphaned(tenant) {
		return nil
	}
	if _, ok := l.set[tenant]; ok {
		return errTenantRevoked
	}
	if l.sharedLost(tenant) {
		return errIssuerRevoked
	}
	return nil
}
