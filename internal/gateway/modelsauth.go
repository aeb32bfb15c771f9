package gateway

import (
	"net/http"
	"sync/atomic"
)

// checked reports whether callers are identified at all: API keys or JWTs
// configured, or require_key. Open mode (none) checks nothing.
func (t *tenants) checked() bool { return t.require || t.tokens != nil || len(t.byKey) > 0 }

// modelsAllowed applies the inference routes' credential check to
// /v1/models and /v1/models/{id} (OpenAI's list needs a key too): with
// require_key (or a JWT required) a caller without a valid credential is
// refused with the same 401, WWW-Authenticate and auth-failure count; a
// credential presented and refused is refused wherever keys or JWTs are
// configured; an anonymous caller the inference routes would serve is
// served. Every tenant may use every model, so the list is the same for
// all callers admitted. The priority header is not read: it asks for
// nothing here.
func (g *Gateway) modelsAllowed(w http.ResponseWriter, r *http.Request, memo *atomic.Value) bool {
	t := g.rt.Load().tenants
	if !t.checked() {
		return true
	}
	c := t.client(r, memo)
	if _, err := t.identifyFrom(r.Context(), credential(r.Header["Authorization"]), "", &c); err != nil {
		g.refuseAuth(w, err)
		writeError(w, apiError(err, ""))
		return false
	}
	return true
}
