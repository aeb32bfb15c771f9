package main

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/jobs"
)

// checkBatchHookEntry checks one --batch-webhooks entry as far as a
// worker can. The gateway warns of a queue.batch_webhooks tenant no
// caller can have by its auth section (config.batchTenantWarnings); a
// worker has no auth, so it cannot tell a typo of a tenant ("acmee") from
// one it does not know of. What it can check is refused at start, naming
// the entry: the URL (as Open would, but before it, with the entry named),
// and a tenant's form as the gateway makes tenants:
//
//   - not empty;
//   - "ip:<address>": an anonymous caller's tenant, as netguard.ClientKey
//     writes the address: IPv4 in its usual form, IPv6 as its /64 prefix
//     ("ip:2001:db8:1:2::/64"): any other form is a tenant nobody has;
//   - "key:<12 hex digits>": a key naming no tenant (the start of its
//     digest, lower case);
//   - "jwt:<claim>": a token's tenant, the claim not empty nor itself
//     reserved ("ip:", "key:": auth refuses such claims);
//   - anything else: a name, as auth.keys[].tenant.
func checkBatchHookEntry(tenant, u string, scoped, allowPrivate bool) error {
	if err := jobs.CheckWebhookURL(u, allowPrivate); err != nil {
		if !allowPrivate && jobs.CheckWebhookURL(u, true) == nil { // refused only for its internal address
			return fmt.Errorf("%w (--allow-private-webhooks allows it)", err)
		}
		return err
	}
	if !scoped {
		return nil
	}
	if tenant == "" {
		return errors.New("want TENANT=URL or a URL")
	}
	switch {
	case strings.HasPrefix(tenant, "ip:"):
		return checkIPTenant(strings.TrimPrefix(tenant, "ip:"))
	case strings.HasPrefix(tenant, "key:"):
		h := strings.TrimPrefix(tenant, "key:")
		if len(h) != 12 || strings.Trim(h, "0123456789abcdef") != "" {
			return fmt.Errorf("tenant %q: a key's own tenant is \"key:\" and 12 lower-case hex digits (as /status and the logs show it)", tenant)
		}
	case strings.HasPrefix(tenant, config.TokenTenantPrefix):
		claim := strings.TrimPrefix(tenant, config.TokenTenantPrefix)
		if claim == "" || strings.HasPrefix(claim, "ip:") || strings.HasPrefix(claim, "key:") {
			return fmt.Errorf("tenant %q: a token's tenant is %q and its claim, which is neither empty nor starts with \"ip:\" or \"key:\"", tenant, config.TokenTenantPrefix)
		}
	}
	return nil
}

// checkIPTenant checks the address of an "ip:" tenant: the form the
// gateway names anonymous callers with.
func checkIPTenant(addr string) error {
	if a, err := netip.ParseAddr(addr); err == nil {
		switch {
		case a.Is4() && a.String() == addr:
			return nil
		case a.Is4In6() || a.Is4():
			return fmt.Errorf("tenant \"ip:%s\": an IPv4 caller's tenant is \"ip:%s\"", addr, a.Unmap().WithZone(""))
		default:
			p := netip.PrefixFrom(a.WithZone(""), 64).Masked()
			return fmt.Errorf("tenant \"ip:%s\": an IPv6 caller's tenant is its /64, \"ip:%s\"", addr, p)
		}
	}
	if p, err := netip.ParsePrefix(addr); err == nil && p.Addr().Is6() && !p.Addr().Is4In6() && p.Bits() == 64 && p.Masked().String() == addr {
		return nil
	}
	return fmt.Errorf("tenant \"ip:%s\": an anonymous caller's tenant is \"ip:\" and its IPv4 address or IPv6 /64 (\"ip:203.0.113.5\", \"ip:2001:db8:1:2::/64\")", addr)
}
