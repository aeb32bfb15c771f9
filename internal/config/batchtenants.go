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
//   - with auth.jwt: "jwt:<claim>" (any claim: tokens' tenants), and a
//     name matching auth.jwt.shared_tenants (a claim used as is);
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
	anonymous := !a.RequireKey // callers without a key are served as ip:<address>
	var out []*FieldError
	for i, e := range c.Queue.BatchWebhooks {
		for j, t := range e.Tenants {
			var why string
			switch {
			case strings.HasPrefix(t, TokenTenantPrefix):
				if !jwt {
					why = "a token's tenant, and auth.jwt is not configured"
				}
			case strings.HasPrefix(t, "ip:"):
				if !anonymous {
					why = "an anonymous caller's tenant, and auth.require_key refuses callers without a key"
				}
			case strings.HasPrefix(t, "key:"):
				if !keyOwn {
					why = "the tenant of a key naming none, and every auth.keys entry names its tenant"
				}
			case slices.Contains(named, t), jwt && SharedTenant(a.JWT.SharedTenants, t):
			default:
				why = "no auth.keys entry has it as its tenant"
				if jwt {
					why += " and auth.jwt.shared_tenants does not match it (a token's tenant is \"" + TokenTenantPrefix + "<claim>\")"
				}
			}
			if why == "" {
				continue
			}
			key := fmt.Sprintf("queue.batch_webhooks[%d].tenants[%d]", i, j)
			out = append(out, &FieldError{Key: key, Line: lines.lineOf(key),
				Problem: fmt.Sprintf("%q is no tenant a caller can have (%s): this endpoint receives nothing for it; %s", t, why, knownTenants(named, jwt, anonymous, keyOwn))})
		}
	}
	return out
}

// knownTenants says which tenants callers can have, for a warning.
func knownTenants(named []string, jwt, anonymous, keyOwn bool) string {
	var parts []string
	if len(named) > 0 {
		parts = append(parts, "auth.keys' tenants: "+strings.Join(named, ", "))
	}
	if jwt {
		parts = append(parts, "tokens': "+TokenTenantPrefix+"<claim> or a shared_tenants match")
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
