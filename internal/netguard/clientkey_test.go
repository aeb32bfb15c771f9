package netguard

import (
	"net/netip"
	"testing"
)

func TestClientKeyGroupsIPv6BySlash64(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7":                      "203.0.113.7",
		"::ffff:203.0.113.7":               "203.0.113.7",
		"2001:db8:1:2::a":                  "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff:ffff:ffff:ffff": "2001:db8:1:2::/64",
		"2001:db8:1:3::a":                  "2001:db8:1:3::/64",
		"fe80::1%eth0":                     "fe80::/64",
		"::1":                              "::/64",
		"not-an-address":                   "not-an-address",
	} {
		if got := ClientKey(in); got != want {
			t.Errorf("ClientKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// Every address of a /64 has the key of the /64's first address, and an
// IPv4 address is its own key.
func FuzzClientKey(f *testing.F) {
	f.Add("2001:db8:1:2::a")
	f.Add("::ffff:10.0.0.1")
	f.Add("10.0.0.1")
	f.Add("fe80::1%lo")
	f.Add("junk")
	f.Fuzz(func(t *testing.T, s string) {
		got := ClientKey(s)
		a, err := netip.ParseAddr(s)
		if err != nil {
			if got != s {
				t.Fatalf("ClientKey(%q) = %q, want the string itself", s, got)
			}
			return
		}
		a = a.Unmap().WithZone("")
		if a.Is4() {
			if got != a.String() {
				t.Fatalf("ClientKey(%q) = %q", s, got)
			}
			return
		}
		p, err := netip.ParsePrefix(got)
		if err != nil || p.Bits() != 64 || !p.Contains(a) || ClientKey(p.Addr().String()) != got {
			t.Fatalf("ClientKey(%q) = %q: not the /64 holding it", s, got)
		}
	})
}

// AddrString is a.String() whatever text it is given beside a: the text a
// was parsed from, another address, or junk.
func FuzzAddrString(f *testing.F) {
	f.Add("10.0.0.1", "10.0.0.1")
	f.Add("10.0.0.1", "10.0.0.2")
	f.Add("::ffff:10.0.0.1", "::ffff:10.0.0.1")
	f.Add("2001:db8::1", "2001:db8::1")
	f.Add("fe80::1%lo", "x")
	f.Fuzz(func(t *testing.T, addr, s string) {
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return
		}
		if got := AddrString(a, s); got != a.String() {
			t.Fatalf("AddrString(%v, %q) = %q", a, s, got)
		}
		if got := AddrString(a, addr); got != a.String() {
			t.Fatalf("AddrString(%v, %q) = %q", a, addr, got)
		}
	})
}
