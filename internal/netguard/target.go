package netguard

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
)

// ErrInternalTarget is a dial refused because the address is internal
// (InternalAddr): the gateway must not reach it on a client's behalf.
var ErrInternalTarget = errors.New("internal address refused")

// blockedPrefixes are the non-public ranges that netip's predicates do not
// name. IPv4: "this network", carrier-grade NAT (where Alibaba's metadata
// lives), IETF protocol assignments, benchmarking, reserved and broadcast.
// IPv6: the deprecated IPv4-compatible ::/96 (::7f00:1 is ::127.0.0.1;
// Linux may route it through the sit tunnel), IPv4-translated
// ::ffff:0:0:0/96 (RFC 2765), the local-use NAT64 prefix 64:ff9b:1::/48
// (RFC 8215: it leads wherever the operator's translator does), the
// discard prefix 100::/64 and deprecated site-local fec0::/10 (netip's
// IsPrivate names only fc00::/7).
var blockedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("::/96"),
	netip.MustParsePrefix("::ffff:0:0:0/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("100::/64"),
	netip.MustParsePrefix("fec0::/10"),
}

// Prefixes whose addresses carry an IPv4 address a translator or relay
// would reach: each is refused when that IPv4 address is internal.
var (
	nat64   = netip.MustParsePrefix("64:ff9b::/96") // RFC 6052, IPv4 in the last 4 bytes
	sixTo4  = netip.MustParsePrefix("2002::/16")    // RFC 3056, IPv4 in bytes 2-5
	teredo  = netip.MustParsePrefix("2001::/32")    // RFC 4380, server IPv4 in bytes 4-7, client IPv4 inverted in 12-15
	ipv4All = netip.MustParsePrefix("0.0.0.0/0")
)

// InternalAddr reports whether ip is an address the gateway must not dial
// for a client unless private targets are allowed: loopback, private
// (RFC 1918, ULA: fd00:ec2::254, AWS's IPv6 metadata, is one), link-local
// (169.254.169.254, the cloud metadata address, is one), multicast,
// unspecified, the ranges in blockedPrefixes, and an IPv6 address that
// embeds an internal IPv4 address (mapped, NAT64, 6to4, Teredo).
func InternalAddr(ip netip.Addr) bool {
	if !ip.IsValid() {
		return true
	}
	ip = ip.WithZone("").Unmap()
	for _, v4 := range embeddedIPv4(ip) {
		if internalAddr(v4) {
			return true
		}
	}
	return internalAddr(ip)
}

func internalAddr(ip netip.Addr) bool {
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return true
	}
	for _, p := range blockedPrefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// embeddedIPv4 is the IPv4 addresses an IPv6 address carries for a
// translator or relay to reach, none for any other address.
func embeddedIPv4(ip netip.Addr) []netip.Addr {
	if ipv4All.Contains(ip) {
		return nil
	}
	b := ip.As16()
	switch {
	case nat64.Contains(ip):
		return []netip.Addr{netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})}
	case sixTo4.Contains(ip):
		return []netip.Addr{netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})}
	case teredo.Contains(ip):
		return []netip.Addr{
			netip.AddrFrom4([4]byte{b[4], b[5], b[6], b[7]}),
			netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]}),
		}
	}
	return nil
}

// InternalHost reports whether host (a name or an IP literal, no port, as
// written in a URL or as dialled) is a place the gateway must not reach
// for a client: a localhost name ("localhost" and every name under it,
// reserved for loopback by RFC 6761, with or without the trailing dot) or
// an internal address literal (InternalAddr). Other names are not resolved
// here: RefuseInternal checks the address they resolve to when dialled.
func InternalHost(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && InternalAddr(ip)
}

// NumericHost reports whether host ends in a number (decimal, or 0x hex:
// octal is decimal digits) without being an IP literal netip reads: the
// legacy IPv4 forms 2130706433, 0x7f000001, 0x7f.1, 0177.0.0.1 and 127.1.
// Browsers (the WHATWG URL parser) and inet_aton read them as 127.0.0.1,
// Go's resolver as a name; no public DNS name ends in a number, so callers
// refuse such a host outright.
func NumericHost(host string) bool {
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

// RefuseInternal is a net.Dialer Control func: it runs on the address
// actually dialled, after DNS resolution and before connect, so a name that
// resolves (or re-resolves, DNS rebinding) to an internal address is
// refused as well as a literal. Its errors wrap ErrInternalTarget.
func RefuseInternal(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInternalTarget, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInternalTarget, err)
	}
	if InternalAddr(ip) {
		return fmt.Errorf("%w: %s", ErrInternalTarget, host)
	}
	return nil
}
