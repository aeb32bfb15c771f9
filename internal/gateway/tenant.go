package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/openai"
)

// identity is who a request is from, as far as fairness, priority and
// limits are concerned.
type identity struct {
	// key is the configured API key presented; "" for anonymous callers
	// (no key, or open mode, where a presented key identifies nobody).
	key      string
	tenant   string
	weight   float64
	class    admission.Class
	fallback bool // may be served by a fallback model
	// preempt, when set, marks spare-capacity work (a queued job): it is
	// admitted only into a free slot and preempted by calling this when
	// live traffic needs the slot.
	preempt func()
}

// tenants resolves API keys to their configured identity, and requests to
// their client address.
type tenants struct {
	require bool
	byKey   map[string]config.Tenant
	realIP  realIP
}

func newTenants(a config.Auth) *tenants {
	t := &tenants{require: a.RequireKey, byKey: make(map[string]config.Tenant, len(a.Keys)),
		realIP: newRealIP(a.TrustedProxies, a.ForwardedHeader)}
	for _, k := range a.Keys {
		t.byKey[k.Key] = k
	}
	return t
}

func classOf(name string) admission.Class {
	if name == "batch" {
		return admission.Batch
	}
	return admission.Interactive
}

// errInvalidKey answers a request whose key is refused.
func errInvalidKey() *openai.Error {
	return &openai.Error{Status: http.StatusUnauthorized, Type: openai.TypeInvalidRequest, Code: "invalid_api_key",
		Message: "Incorrect or missing API key. Send it as 'Authorization: Bearer <key>'."}
}

// identify reads the bearer key and the priority header. With keys
// configured, a listed key is its tenant, an unlisted one is refused, and
// no key is refused with require_key or else anonymous. Anonymous callers,
// and every caller in open mode (no keys configured: a presented key is
// not checked, so it cannot name anyone), are "ip:<client address>", so
// one flood is one tenant however many keys it invents.
func (t *tenants) identify(r *http.Request, ip string) (identity, *openai.Error) {
	auth := r.Header.Get("Authorization")
	key := bearer(auth)
	id := identity{weight: 1, class: admission.Interactive, fallback: true}
	maxClass := admission.Interactive
	k, listed := t.byKey[key]
	switch {
	case listed && key != "":
		id.key, id.tenant = key, k.Tenant
		if id.tenant == "" {
			id.tenant = "key:" + shortHash(key)
		}
		if k.Weight > 0 {
			id.weight = k.Weight
		}
		id.class = classOf(k.Priority)
		maxClass = classOf(k.MaxPriority)
		id.fallback = !k.NoFallback
	case len(t.byKey) > 0 && (auth != "" || t.require):
		return id, errInvalidKey()
	default:
		id.tenant = "ip:" + ip
	}
	// A request may lower its own priority, or raise it as far as its key allows.
	class, asked, perr := parsePriority(r.Header.Get(headerPriority))
	if perr != nil {
		return id, perr
	}
	if asked {
		id.class = max(class, maxClass)
	}
	if id.class < maxClass {
		id.class = maxClass
	}
	return id, nil
}

func bearer(h string) string {
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// shortHash names an unconfigured key without putting the secret in logs
// and metrics.
func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}
