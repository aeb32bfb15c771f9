package netguard

import "net/netip"

// ipv6Group is the prefix an IPv6 client is known by: a /64 is what one
// subscriber, one host or one cloud VM is given, and the host picks any of
// its 2^64 addresses at will (privacy extensions, or on purpose), so a cap
// keyed on the whole address caps nothing. Cloudflare's and Fastly's rate
// limits and fail2ban's ipv6 mode group by /64 for the same reason.
const ipv6Group = 64

// ClientKey is a client address as the key of a per-client cap (the
// connection caps, the open-mode tenant, per_ip rate limits): an IPv4
// address as it is, an IPv6 address as its /64 ("2001:db8:1:2::/64"). An
// IPv4-mapped IPv6 address is its IPv4 address; a zone is dropped. A
// string that is not an address is its own key.
func ClientKey(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	return AddrKey(a, addr)
}

// AddrKey is ClientKey of a, parsed from s.
func AddrKey(a netip.Addr, s string) string {
	if a.Is4() {
		return AddrString(a, s)
	}
	return keyOf(a)
}

// AddrString is a.String() without a new string when s, the text a was
// parsed from, is already that text (the usual IPv4 "10.0.0.1"): a
// gateway formats its client's address several times per request.
func AddrString(a netip.Addr, s string) string {
	var buf [len("255.255.255.255")]byte
	if len(s) <= len(buf) && string(a.AppendTo(buf[:0])) == s {
		return s
	}
	return a.String()
}

func keyOf(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	return netip.PrefixFrom(a, ipv6Group).Masked().String()
}
