package config

import (
	"fmt"
	"slices"
	"strings"
)

// Warnings are what a valid file says that is probably not meant, each
// "FILE:LINE: key.path: problem" as errors are: the file is taken (a
// start serves, a reload is applied), and serve, a reload (also in
// /status's config.last_reload_warnings) and `sluice check` say them.
func (c *Config) Warnings() []string {
	out := make([]string, len(c.warnings))
	for i, w := range c.warnings {
		out[i] = w.Error()
	}
	return out
}

// batchTenantWarnings names each queue.batch_webhooks[].tenants entry that
// no caller can have as its tenant: the endpoint would silently receive
// nothing for it (a typo: "acmee"). A warning, not an error: the tenants
// of tokens and anonymous callers are made at run time, and an endpoint
// may be configured ahead of the key that will use it. What is known:
//
//   - a name of auth.keys[].tenant;
//   - with auth.jwt: "jwt:<claim>" (any claim: tokens' tenants), with two
//     or more issuers "jwt:<name>:<claim>" of a listed name, and a name
//     matching the shared_tenants an issuer's verifier reads (a claim
//     used as is: each entry's own, auth.jwt's being only their default);
//   - with anonymous callers served (auth.require_key false, as it must
//     be with neither keys nor jwt): "ip:<address>";
//   - with a key that names no tenant: "key:<hash>" (the tenant of its
//     own /status and logs show).
func (c *Config) batchTenantWarnings(lines keyLines) []*FieldError {
	a := c.Auth
	var named []string // auth.keys' tenants, in file order
	keyOwn := false    // some key names no tenant: a key:<hash> tenant
	for _, k := range a.Keys {
		switch {
		case k.Tenant == "":
			keyOwn = true
		case !slices.Contains(named, k.Tenant):
			named = append(named, k.Tenant)
		}
	}
	jwt := a.JWT.Enabled()
	var shared, issuerNames []string // what tokens' verifiers share; their names when namespaced
	for _, ic := range a.JWT.IssuerConfigs() {
		shared = append(shared, ic.JWT.SharedTenants...)
		if a.JWT.Namespaced() {
			issuerNames = append(issuerNames, ic.Name)
		}
	}
	anonymous := !a.RequireKey // callers without a key are served as ip:<address>
	var out []*FieldError
	for i, e := range c.Queue.BatchWebhooks {
		for j, t := range e.Tenants {
			var why string
			switch {
			case strings.HasPrefix(t, TokenTenantPrefix):
				why = tokenTenantProblem(a.JWT, issuerNames, t)
			case strings.HasPrefix(t, "ip:"):
				if !anonymous {
					why = "an anonymous caller's tenant, and auth.require_key refuses callers without a key"
				}
			case strings.HasPrefix(t, "key:"):
				if !keyOwn {
					why = "the tenant of a key naming none, and every auth.keys entry names its tenant"
				}
			case slices.Contains(named, t), jwt && SharedTenant(shared, t):
			default:
				why = "no auth.keys entry has it as its tenant"
				if jwt {
					why += " and no issuer's shared_tenants matches it (a token's tenant is \"" + tokenTenantForm(issuerNames) + "\")"
				}
			}
			if why == "" {
				continue
			}
			key := fmt.Sprintf("queue.batch_webhooks[%d].tenants[%d]", i, j)
			out = append(out, &FieldError{Key: key, Line: lines.lineOf(key),
				Problem: fmt.Sprintf("%q is no tenant a caller can have (%s): this endpoint receives nothing for it; %s", t, why, knownTenants(named, jwt, issuerNames, anonymous, keyOwn))})
		}
	}
	return out
}

// knownTenants says which tenants callers can have, for a warning.
func knownTenants(named []string, jwt bool, issuerNames []string, anonymous, keyOwn bool) string {
	var parts []string
	if len(named) > 0 {
		parts = append(parts, "auth.keys' tenants: "+strings.Join(named, ", "))
	}
	if jwt {
		parts = append(parts, "tokens': "+tokenTenantForm(issuerNames)+" or a shared_tenants match")
	}
	if anonymous {
		parts = append(parts, "anonymous callers': ip:<address>")
	}
	if keyOwn {
		parts = append(parts, "keys naming none: key:<hash>")
	}
	if len(parts) == 0 {
		return "no tenant is known"
	}
	return "known: " + strings.Join(parts, "; ")
}

// tokenTenantProblem is why no token can have the tenant t (prefixed
// TokenTenantPrefix), "" when one can: with auth.jwt off, none; with two
// or more issuers (names), only "jwt:<name>:<claim>" of a listed name, so
// "jwt:alice" (the one-issuer form) or an unknown name reaches nobody.
func tokenTenantProblem(j JWT, names []string, t string) string {
	if !j.Enabled() {
		return "a token's tenant, and auth.jwt is not configured"
	}
	rest := strings.TrimPrefix(t, TokenTenantPrefix)
	if len(names) == 0 {
		if rest == "" {
			return "a token's tenant with no claim"
		}
		return ""
	}
	name, claim, ok := strings.Cut(rest, ":")
	switch {
	case !ok || claim == "":
		return "with several auth.jwt.issuers a token's tenant is \"" + tokenTenantForm(names) + "\""
	case !slices.Contains(names, name):
		return fmt.Sprintf("no auth.jwt.issuers entry is named %q", name)
	}
	return ""
}

// tokenTenantForm is the shape of a token's tenant, for a warning.
func tokenTenantForm(names []string) string {
	if len(names) == 0 {
		return TokenTenantPrefix + "<claim>"
	}
	return TokenTenantPrefix + "<name>:<claim>, <name> one of " + strings.Join(names, ", ")
}
