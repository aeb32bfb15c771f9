package gateway

import (
	"slices"
	"strings"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/jobs"
	"github.com/sluice-gw/sluice/internal/openai"
)

// tokenSpace is the tenant namespace of one JWT issuer: the prefix of the
// tenants its tokens name ("jwt:" with one issuer, "jwt:<name>:" with
// several) and the issuer (its iss) that names them. Unlike the keys'
// tenants, a namespace's tenants cannot be listed (any claim value is
// one): a reload that removes an issuer loses its namespace, and a job's
// tenant is judged by the namespace it falls in.
type tokenSpace struct{ prefix, iss string }

// tokenSpaces are the namespaces of j's issuers, in order.
func tokenSpaces(j config.JWT) []tokenSpace {
	if len(j.Issuers) == 0 {
		return []tokenSpace{{prefix: config.TokenTenantPrefix, iss: j.Issuer}}
	}
	out := make([]tokenSpace, 0, len(j.Issuers))
	for _, e := range j.Issuers {
		out = append(out, tokenSpace{prefix: j.TokenTenantPrefixFor(e.Name), iss: e.Issuer})
	}
	return out
}

// namesInSpace reports whether a token t accepts can be the token tenant
// tenant through a namespace at least minLen long: "jwt:partner:acme",
// lost with the issuer partner, is not taken back by a single remaining
// issuer's "jwt:" (whose claim would have to be "partner:acme"), only
// by an issuer called partner again.
func (t *tenants) namesInSpace(tenant string, minLen int) bool {
	for _, s := range t.spaces {
		if len(s.prefix) >= minLen && strings.HasPrefix(tenant, s.prefix) {
			return true
		}
	}
	return false
}

// sharedByTokens are the shared_tenants patterns a token t accepts may
// name as is; none with JWTs off.
func (t *tenants) sharedByTokens() []string {
	if t.tokens == nil {
		return nil
	}
	return t.shared
}

// updateTokens records, under l.mu, what the reload from prev to next
// took from tokens: the namespace of every issuer next no longer has (by
// its iss, and no issuer of next has its prefix: an issuer renamed, or
// one to several, keeps its tenants' jobs, as a replaced issuer of the
// same namespace does), and every shared_tenants pattern next no longer
// shares. A namespace or pattern next has again is found again. It
// returns how many were lost by this reload.
func (l *lostTenants) updateTokens(prev, next *tenants) int {
	for p, iss := range l.spaces {
		if next.hasSpace(p, iss) {
			delete(l.spaces, p)
		}
	}
	nextShared := next.sharedByTokens()
	for p := range l.shares {
		if slices.Contains(nextShared, p) {
			delete(l.shares, p)
		}
	}
	n := 0
	for _, s := range prev.spaces {
		if _, known := l.spaces[s.prefix]; known || next.hasSpace(s.prefix, s.iss) {
			continue
		}
		if l.spaces == nil {
			l.spaces = make(map[string]string)
		}
		l.spaces[s.prefix] = s.iss
		n++
	}
	for _, p := range prev.sharedByTokens() {
		if _, known := l.shares[p]; known || slices.Contains(nextShared, p) {
			continue
		}
		if l.shares == nil {
			l.shares = make(map[string]struct{})
		}
		l.shares[p] = struct{}{}
		n++
	}
	return n
}

// hasSpace reports whether t has an issuer of iss, or a namespace of
// prefix.
func (t *tenants) hasSpace(prefix, iss string) bool {
	return slices.ContainsFunc(t.spaces, func(s tokenSpace) bool { return s.prefix == prefix || s.iss == iss })
}

// refusesToken reports, under l.mu, whether the token tenant tenant
// ("jwt:…") fell in a lost namespace that cur names no more.
func (l *lostTenants) refusesToken(tenant string, cur *tenants) bool {
	lost := -1
	for p := range l.spaces {
		if strings.HasPrefix(tenant, p) && len(p) > lost {
			lost = len(p)
		}
	}
	return lost >= 0 && !cur.namesInSpace(tenant, lost)
}

// sharedLost reports, under l.mu, whether tenant matches a shared_tenants
// pattern a reload took from every issuer.
func (l *lostTenants) sharedLost(tenant string) bool {
	for p := range l.shares {
		if config.SharedTenant([]string{p}, tenant) {
			return true
		}
	}
	return false
}

// errIssuerRevoked answers a job of a token tenant no remaining issuer
// can name, as errTenantRevoked answers one whose last key was removed:
// the same status and code, so workers end it unrun.
var errIssuerRevoked = &openai.Error{Status: jobs.StatusRevoked, Type: openai.TypeInvalidRequest, Code: jobs.CodeRevoked,
	Message: "the job's token issuer was removed from the gateway's configuration and no remaining issuer can name its owner: the job is not run"}
