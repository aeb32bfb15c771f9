package gateway

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/netguard"
)

// client is where a request comes from, as far as limits, fairness and
// the upstream X-Forwarded-For are concerned.
type client struct {
	// addr is the client address: the connection's peer, or, when the peer
	// is a trusted proxy, the rightmost address its forwarding header names
	// that is not itself a trusted proxy.
	addr string
	// key is addr as the key of per-client limits (the open-mode tenant,
	// per_ip rate limits): IPv6 by its /64, as the connection caps count
	// (netguard.ClientKey).
	key string
	// forwardedFor is the X-Forwarded-For sent upstream: the believed part
	// of the chain (from addr on) and the peer, never what an untrusted
	// client wrote.
	forwardedFor string
	// openTenant is "ip:"+key, the tenant of an anonymous caller
	// (identify), when made ahead (tenants.client); "" otherwise.
	openTenant string
}

// peerMemo is a connection's client, when it is the peer's own (no
// trusted proxy in between, so no header of a request can change it), for
// the tenants that resolved it (a reload's new trusted proxies resolve it
// again).
type peerMemo struct {
	remote string // the r.RemoteAddr it is for
	by     *tenants
	c      client
}

// client is realIP.client(r), resolved once per connection when it can
// be (peerMemo, kept in slot, r's connection's netguard.ConnMemo; nil:
// none): a connection's every request comes from the same peer, and
// parsing and formatting its address, and naming its open-mode tenant,
// would be the same work each time.
func (t *tenants) client(r *http.Request, slot *atomic.Value) client {
	if slot != nil {
		if m, _ := slot.Load().(*peerMemo); m != nil && m.by == t && m.remote == r.RemoteAddr {
			return m.c
		}
	}
	c, a, peerOnly := t.realIP.resolve(r)
	c = withKey(c, a)
	if slot != nil && peerOnly {
		c.openTenant = "ip:" + c.key
		slot.Store(&peerMemo{remote: r.RemoteAddr, by: t, c: c})
	}
	return c
}

// realIP resolves client addresses: X-Forwarded-For or Forwarded (RFC
// 7239) is believed only when the connection comes from a trusted proxy,
// and then read from the right, skipping trusted proxies, as nginx's
// real_ip_recursive and Envoy's xff_num_trusted_hops do. Only one header
// is read (auth.forwarded_header): a proxy that sets one passes the other
// through from the client untouched, so reading both would let a client
// choose its own address.
type realIP struct {
	trusted   []netip.Prefix
	forwarded bool // read Forwarded, not X-Forwarded-For
}

// newRealIP parses auth.trusted_proxies (validated by config) and
// auth.forwarded_header.
func newRealIP(proxies []string, header string) realIP {
	r := realIP{forwarded: strings.EqualFold(header, config.HeaderForwarded)} // anything else: X-Forwarded-For
	for _, p := range proxies {
		if pfx, err := parsePrefix(p); err == nil {
			r.trusted = append(r.trusted, pfx)
		}
	}
	return r
}

// parsePrefix reads a CIDR or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (ri realIP) isTrusted(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, p := range ri.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// client is the single place that decides a request's client address.
func (ri realIP) client(r *http.Request) client {
	c, a, _ := ri.resolve(r)
	return withKey(c, a)
}

// withKey sets c.key from c.addr, whose address is a when valid.
func withKey(c client, a netip.Addr) client {
	switch {
	case a.Is4():
		c.key = c.addr // the peer, already a's text (peerAddr): its own key, not formatted again
	case a.IsValid():
		c.key = netguard.AddrKey(a, c.addr)
	default:
		c.key = netguard.ClientKey(c.addr)
	}
	return c
}

// resolve finds the client address; peerOnly when it is the peer's own
// without looking at the request's headers (the peer is not a trusted
// proxy), so the same for every request of the connection.
func (ri realIP) resolve(r *http.Request) (_ client, _ netip.Addr, peerOnly bool) {
	peer, pa := peerAddr(r.RemoteAddr)
	if !pa.IsValid() || len(ri.trusted) == 0 || !ri.isTrusted(pa) {
		return client{addr: peer, forwardedFor: peer}, pa, true
	}
	var chain []string
	if ri.forwarded {
		chain = forwardedFor(r.Header.Values("Forwarded"))
	} else {
		chain = xffList(r.Header.Values("X-Forwarded-For"))
	}
	addr, from := resolveChain(chain, ri.isTrusted)
	if from < 0 {
		return client{addr: peer, forwardedFor: peer}, pa, false
	}
	believed := append(append(make([]string, 0, len(chain)-from+1), chain[from:]...), peer)
	return client{addr: addr, forwardedFor: strings.Join(believed, ", ")}, netip.Addr{}, false
}

// resolveChain walks a forwarding chain from the right: trusted proxies
// are skipped; the first other address is the client. A malformed entry
// (or "unknown") ends the walk: the hop right of it, a trusted proxy, is
// then the client, since nothing left of it can be believed. When every
// entry is trusted the leftmost is the client. from is the client's index
// in chain, -1 when the chain is empty or its rightmost entry is malformed.
func resolveChain(chain []string, trusted func(netip.Addr) bool) (addr string, from int) {
	from = -1
	for i := len(chain) - 1; i >= 0; i-- {
		a, ok := parseHop(chain[i])
		if !ok {
			break
		}
		addr, from = a.String(), i
		if !trusted(a) {
			break
		}
	}
	if from >= 0 {
		chain[from] = addr // canonical form, without port or brackets
	}
	return addr, from
}

// parseHop reads one forwarding-chain entry: an address, optionally with
// a port ("1.2.3.4:80", "[::1]:80"), IPv4-mapped IPv6 unmapped.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	return netip.Addr{}, false
}

// xffList splits X-Forwarded-For header lines into entries, in order.
func xffList(lines []string) []string {
	var out []string
	for _, l := range lines {
		for _, e := range strings.Split(l, ",") {
			out = append(out, strings.TrimSpace(e))
		}
	}
	return out
}

// forwardedFor reads the for= parameter of each element of Forwarded
// header lines (RFC 7239 section 4), in order. An element without for= is
// kept as "" so the chain's hop count stays right (and "" is malformed).
func forwardedFor(lines []string) []string {
	var out []string
	for _, l := range lines {
		for _, elem := range splitQuoted(l, ',') {
			v := ""
			for _, pair := range splitQuoted(elem, ';') {
				k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if ok && strings.EqualFold(strings.TrimSpace(k), "for") {
					v = unquote(strings.TrimSpace(val))
				}
			}
			out = append(out, v)
		}
	}
	return out
}

// splitQuoted splits s at sep outside double-quoted strings (with their
// backslash escapes).
func splitQuoted(s string, sep byte) []string {
	var out []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == sep && !quoted:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// unquote removes a quoted-string's quotes and escapes; a token is
// returned as it is.
func unquote(s string) string {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return s
	}
	var b strings.Builder
	for i := 1; i < len(s)-1; i++ {
		if s[i] == '\\' && i+1 < len(s)-1 {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// peerAddr is the connection's remote host, and its address when it is
// one (parsed once: the caller needs both).
func peerAddr(remote string) (string, netip.Addr) {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		a, _ := netip.ParseAddr(remote)
		return remote, a
	}
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap().WithZone("")
		return netguard.AddrString(a, host), a
	}
	return host, netip.Addr{}
}
