package gateway

import (
	"context"
	"crypto/sha256"
	"sync"

	"github.com/sluice-gw/sluice/internal/proxy"
)

// keyRequests are the requests running under each API key (by its
// digest, as tenants holds keys), so that a reload that removes a key
// ends them: a key is revoked because it leaked or its holder is gone,
// and a stream opened with it (minutes of generation, charged to the
// key's tenant) must not outlive the revocation by its whole length. An
// edit that keeps a key (same digest) cuts nothing: config reloads leave
// in-flight requests alone, as Envoy's and nginx's do. Tokens are not
// here: a JWT is good until its exp (no revocation list).
type keyRequests struct {
	mu   sync.Mutex
	next uint64
	// running holds the requests by a serial: one map for the gateway's
	// life, so a request adds and removes an entry and makes no map (a
	// map per key was made and dropped by every request whose key had no
	// other running). cut, on a reload, walks them all.
	running map[uint64]keyRequest
}

// keyRequest is a running request: its key's digest, and how to end it.
type keyRequest struct {
	digest [sha256.Size]byte
	cancel context.CancelCauseFunc
}

// track derives ctx for a request under the key with digest d and
// registers it; done unregisters it (and releases ctx).
func (k *keyRequests) track(ctx context.Context, d [sha256.Size]byte) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	k.mu.Lock()
	if k.running == nil {
		k.running = make(map[uint64]keyRequest)
	}
	k.next++
	n := k.next
	k.running[n] = keyRequest{digest: d, cancel: cancel}
	k.mu.Unlock()
	return ctx, func() {
		k.mu.Lock()
		delete(k.running, n)
		k.mu.Unlock()
		cancel(nil)
	}
}

// cut cancels, with proxy.ErrKeyRevoked as the cause, every request
// running under a key that next refuses. It returns how many it cut.
func (k *keyRequests) cut(next *tenants) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, r := range k.running {
		if next.revoked(r.digest) {
			r.cancel(proxy.ErrKeyRevoked)
			n++
		}
	}
	return n
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

// trackKey registers x, served under a listed API key, among keyRequests
// so that a reload removing the key ends it (Swap). A reload that swapped
// in between identify and here is caught by looking at the runtime now:
// Swap stores the runtime before it cuts, under the same lock.
func (g *Gateway) trackKey(x *exchange) {
	d := x.id.digest // identify's, as it found the key
	ctx, done := g.keyReqs.track(x.r.Context(), d)
	x.r = x.r.WithContext(ctx)
	x.rec.ctx = ctx
	x.untrack = done
	if cur := g.rt.Load(); cur != x.rt && cur.tenants.revoked(d) {
		g.keyReqs.cut(cur.tenants)
	}
}
