package telemetry

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

// FuzzRedactURLs: a URL list as configured (any scheme, user, password,
// host and path, a password with '%', '@' or ':' in it, a second URL in
// the list) is shown without its password: the password's text appears
// nowhere in the output, also when it holds '/', '?', '#' or ','. A
// password holding "://" is left out: it reads as a nested URL; so is a
// user opening with '[' whose text with the password makes an IPv6
// literal ("[" and ":1]:80/x"): userinfo holds no '[' (RFC 3986), and
// such an authority is read as the host it spells (RedactURL).
func FuzzRedactURLs(f *testing.F) {
	f.Add("nats", "u", "50%off", "h:4222", "", "nats://b:4222")
	f.Add("redis", "", "p@ss:word", "r:6379", "/0?x=a@b", "")
	f.Add("http", "user", "s3cr%zzet", "[::1]:8000", "/v1", "http://v:other@h")
	f.Fuzz(func(t *testing.T, scheme, user, pass, host, path, other string) {
		if scheme == "" || strings.ContainsAny(scheme, ":/?#@,") || strings.ContainsAny(user, ":/?#@,") ||
			strings.Contains(":"+pass, "://") || strings.ContainsAny(host, "/?#@,") ||
			path != "" && path[0] != '/' || strings.Contains(path, ",") || strings.Contains(other, ",") || len(pass) < 4 {
			return
		}
		list := scheme + "://" + user + ":" + pass + "@" + host + path
		if ipLiteralEnd(list[len(scheme)+3:]) > 0 {
			return
		}
		if other != "" {
			list += "," + other
		}
		// The password must be its own text, not a piece of the rest.
		if rest := scheme + "://" + user + ":@" + host + path + "," + other + "xxxxx"; strings.Contains(rest, pass) {
			return
		}
		if out := RedactURLs(list); strings.Contains(out, pass) {
			t.Fatalf("RedactURLs(%q) = %q shows the password", list, out)
		}
	})
}

// FuzzRedactURLKeepsIPLiteralHosts: a URL whose host is an IPv6 literal,
// with or without a port, and whose path or query holds '@' (an e-mail
// address, "/a@b") has no userinfo and is shown as it is: userinfo holds
// no '[' (RFC 3986 §3.2.1). Before 2026-12-06 it showed as
// "http://[:xxxxx@b".
func FuzzRedactURLKeepsIPLiteralHosts(f *testing.F) {
	f.Add([]byte{0: 0, 15: 1}, uint16(8000), true, "/a@b")
	f.Add([]byte{0: 0xfe, 1: 0x80, 15: 1}, uint16(0), false, "?e=a@b.com#x@y")
	f.Fuzz(func(t *testing.T, addr []byte, port uint16, withPort bool, path string) {
		if len(addr) != net.IPv6len || path == "" || !strings.ContainsRune("/?#", rune(path[0])) {
			return
		}
		ip := net.IP(addr)
		if ip.To4() != nil { // an IPv4-mapped address prints without ':'
			return
		}
		u := "http://[" + ip.String() + "]"
		if withPort {
			u += ":" + strconv.Itoa(int(port))
		}
		u += path
		if strings.Contains(path, "://") { // a nested URL: RedactURL stops its search there
			return
		}
		if got := RedactURL(u); got != u {
			t.Fatalf("RedactURL(%q) = %q, want it unchanged: an IPv6 literal is a host, the '@' past it", u, got)
		}
	})
}
