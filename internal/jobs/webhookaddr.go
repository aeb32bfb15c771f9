package jobs

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
)

// ErrWebhookTarget is a webhook destination the sender refuses: an
// internal address (unless private targets are allowed) or a URL that is
// not absolute http(s).
var ErrWebhookTarget = errors.New("webhook target refused")

// ErrWebhookNumericHost is the ErrWebhookTarget of a host that ends in a
// number without being an IP literal (numericHost): refused whether or not
// private targets are allowed, so its 400 says so rather than "private".
var ErrWebhookNumericHost = fmt.Errorf("%w: a host that ends in a number must be a dotted-quad IPv4 address", ErrWebhookTarget)

// blockedPrefixes are the non-public ranges that netip's predicates do not
// name: carrier-grade NAT (where Alibaba's metadata lives), "this network",
// IETF protocol assignments, benchmarking, reserved and broadcast, and the
// NAT64 prefix (checked again on the embedded IPv4 address).
var blockedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// internalAddr reports whether ip is an address a webhook must not reach
// unless private targets are allowed: loopback, private (RFC 1918, ULA:
// fd00:ec2::254, AWS's IPv6 metadata, is one), link-local (169.254.169.254,
// the cloud metadata address, is one), multicast, unspecified, and the
// ranges in blockedPrefixes.
func internalAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if nat64.Contains(ip) {
		b := ip.As16()
		ip = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() || !ip.IsValid() {
		return true
	}
	for _, p := range blockedPrefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// internalHost is the one private-address check, shared by the early check
// at submit time (CheckWebhookURL) and the dial-time guard (dialGuard):
// whether host (a name or an IP literal, no port, as written in a URL or as
// dialled) is a place a webhook must not reach unless private targets are
// allowed. That is a localhost name ("localhost" and every name under it,
// reserved for loopback by RFC 6761) or an internal address literal
// (internalAddr). Other names are not resolved here: the dial-time guard
// checks the address they resolve to.
func internalHost(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && internalAddr(ip)
}

// dialGuard is a net.Dialer Control func: it runs on the address actually
// dialled, after DNS resolution, so a name that resolves (or re-resolves,
// DNS rebinding) to an internal address is refused as well as a literal.
func dialGuard(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrWebhookTarget, err)
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Errorf("%w: %w", ErrWebhookTarget, err)
	}
	if internalHost(host) {
		return fmt.Errorf("%w: %s is an internal address (queue.allow_private_webhooks is off)", ErrWebhookTarget, host)
	}
	return nil
}

// CheckWebhookURL is the early check at submit time: the URL must be
// absolute http or https, and unless allowPrivate its host must not be
// internal (internalHost). Names are only checked when the webhook is sent
// (dialGuard), on the address they resolve to then.
func CheckWebhookURL(raw string, allowPrivate bool) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: want an absolute http or https URL", ErrWebhookTarget)
	}
	if numericHost(u.Hostname()) {
		return fmt.Errorf("%w: %s", ErrWebhookNumericHost, u.Hostname())
	}
	if !allowPrivate && internalHost(u.Hostname()) {
		return fmt.Errorf("%w: %s is an internal address", ErrWebhookTarget, u.Hostname())
	}
	return nil
}

// numericHost reports whether host ends in a number (decimal, or 0x hex:
// octal is decimal digits) without being an IP literal netip reads: the
// legacy IPv4 forms 2130706433, 0x7f000001, 0177.0.0.1 and 127.1. Browsers
// (the WHATWG URL parser) and inet_aton read them as 127.0.0.1, Go's
// resolver as a name that never resolves; no public DNS name ends in a
// number, so such a host is refused at submit instead of accepted and then
// retried until the delivery budget is spent.
func numericHost(host string) bool {
	host = strings.TrimSuffix(host, ".")
	if _, err := netip.ParseAddr(host); err == nil {
		return false
	}
	last := host[strings.LastIndexByte(host, '.')+1:]
	if hex, ok := strings.CutPrefix(strings.ToLower(last), "0x"); ok {
		return strings.Trim(hex, "0123456789abcdef") == ""
	}
	return last != "" && strings.Trim(last, "0123456789") == ""
}
