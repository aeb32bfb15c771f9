package auth

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/rate"
	"github.com/sluice-gw/sluice/internal/ratelimit"
)

// maxTenantBytes bounds a tenant or subject from a token: they go into
// logs, metrics and rate limit keys.
const maxTenantBytes = 256

// maxWeight matches auth.keys[].weight's bound.
const maxWeight = 1e6

// identity reads the configured claims of a verified token. A claim that
// is absent keeps the default an API key entry has; one that is present
// but of the wrong kind refuses the token: the issuer is misconfigured,
// and guessing would hand out the wrong share or limits.
func (v *Verifier) identity(c jwt.MapClaims) (Identity, error) {
	var id Identity
	var err error
	cl := v.claims
	if id.Tenant, err = name(c, cl.Tenant); err != nil {
		return Identity{}, err
	}
	if id.Tenant == "" {
		return Identity{}, fail(ReasonClaims, fmt.Errorf("tenant claim %q missing", cl.Tenant))
	}
	if strings.HasPrefix(id.Tenant, "ip:") || strings.HasPrefix(id.Tenant, "key:") {
		// The gateway's own names for anonymous callers and unnamed keys.
		return Identity{}, fail(ReasonClaims, fmt.Errorf("tenant %q uses a reserved prefix", truncate(id.Tenant, 32)))
	}
	// A token's tenant is in a namespace of its own unless the operator
	// shares it: whoever can choose the claim's value at the issuer (a
	// user naming themselves, a second application of the same issuer)
	// must not become an API key's tenant and read its files, batches,
	// jobs, stored responses and cached answers, or drain its buckets.
	if !config.SharedTenant(v.shared, id.Tenant) {
		id.Tenant = v.prefix + id.Tenant
	} else if config.ReservedTenant(id.Tenant) {
		// Shared as is, "jwt:x" would be the token tenant of the claim "x".
		return Identity{}, fail(ReasonClaims, fmt.Errorf("tenant %q uses a reserved prefix", truncate(id.Tenant, 32)))
	}
	if id.Subject, err = name(c, cl.Subject); err != nil {
		return Identity{}, err
	}
	if id.Subject != "" {
		id.Key = v.prefix + id.Subject
	}
	if id.Weight, err = weight(c, cl.Weight); err != nil {
		return Identity{}, err
	}
	if id.Priority, err = priority(c, cl.Priority); err != nil {
		return Identity{}, err
	}
	if id.MaxPriority, err = priority(c, cl.MaxPriority); err != nil {
		return Identity{}, err
	}
	if raw, ok := claim(c, cl.NoFallback); ok {
		b, isBool := raw.(bool)
		if !isBool {
			return Identity{}, fail(ReasonClaims, fmt.Errorf("claim %q: want true or false", cl.NoFallback))
		}
		id.NoFallback = b
	}
	if id.Limits, err = limits(c, cl.Requests, cl.TokensPerMinute); err != nil {
		return Identity{}, err
	}
	return id, nil
}

// claim is c[name]; an unnamed claim is never read.
func claim(c jwt.MapClaims, name string) (any, bool) {
	if name == "" {
		return nil, false
	}
	v, ok := c[name]
	return v, ok && v != nil
}

// name reads a printable string claim of bounded length.
func name(c jwt.MapClaims, key string) (string, error) {
	raw, ok := claim(c, key)
	if !ok {
		return "", nil
	}
	s, isString := raw.(string)
	if !isString || len(s) > maxTenantBytes {
		return "", fail(ReasonClaims, fmt.Errorf("claim %q: want a string of at most %d bytes", key, maxTenantBytes))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return "", fail(ReasonClaims, fmt.Errorf("claim %q: control character", key))
		}
	}
	return s, nil
}

func weight(c jwt.MapClaims, key string) (float64, error) {
	raw, ok := claim(c, key)
	if !ok {
		return 0, nil
	}
	n, isNumber := raw.(json.Number)
	w, err := n.Float64()
	if !isNumber || err != nil || !(w > 0 && w <= maxWeight) {
		return 0, fail(ReasonClaims, fmt.Errorf("claim %q: want a number in (0, %g]", key, float64(maxWeight)))
	}
	return w, nil
}

func priority(c jwt.MapClaims, key string) (string, error) {
	raw, ok := claim(c, key)
	if !ok {
		return "", nil
	}
	if s, _ := raw.(string); s == "interactive" || s == "batch" {
		return s, nil
	}
	return "", fail(ReasonClaims, fmt.Errorf("claim %q: want interactive or batch", key))
}

// limits reads the subject's own rate limits: requests in nginx
// limit_req syntax, tokens per minute an integer.
func limits(c jwt.MapClaims, reqKey, tpmKey string) (*ratelimit.Rule, error) {
	var r ratelimit.Rule
	set := false
	if raw, ok := claim(c, reqKey); ok {
		s, isString := raw.(string)
		var l rate.Limit
		var err error
		if isString && len(s) <= 128 {
			if l, err = rate.ParseNginx(s); err == nil && !l.IsZero() {
				err = l.Validate()
			}
		}
		if !isString || len(s) > 128 || err != nil || l.IsZero() {
			return nil, fail(ReasonClaims, fmt.Errorf("claim %q: want nginx limit_req syntax, e.g. \"10r/s burst=20 nodelay\"", reqKey))
		}
		r.Requests, set = l, true
	}
	if raw, ok := claim(c, tpmKey); ok {
		n, isNumber := raw.(json.Number)
		tpm, err := n.Int64()
		if err == nil && tpm > 0 {
			err = rate.TokensPerMinute(tpm).Validate()
		}
		if !isNumber || err != nil || tpm <= 0 {
			return nil, fail(ReasonClaims, fmt.Errorf("claim %q: want a positive integer", tpmKey))
		}
		r.TokensPerMinute, set = tpm, true
	}
	if !set {
		return nil, nil
	}
	return &r, nil
}
