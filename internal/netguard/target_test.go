package netguard

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestInternalAddr(t *testing.T) {
	for addr, internal := range map[string]bool{
		"127.0.0.1": true, "::1": true, "10.1.2.3": true, "172.16.0.1": true, "192.168.1.1": true,
		"169.254.169.254": true, "fd00:ec2::254": true, "fe80::1": true, "fe80::1%eth0": true, "0.0.0.0": true,
		"::": true, "224.0.0.1": true, "ff02::1": true, "ff05::1": true, "100.100.100.200": true,
		"0.1.2.3": true, "192.0.0.8": true, "198.19.0.1": true, "240.0.0.1": true, "255.255.255.255": true,
		"fc00::1": true, "fec0::1": true, "100::1": true,
		// IPv6 carrying 127.0.0.1 or 169.254.169.254.
		"::ffff:127.0.0.1": true, "::7f00:1": true, "::127.0.0.1": true, "::808:808": true,
		"::ffff:0:7f00:1": true, "64:ff9b::7f00:1": true, "64:ff9b::a9fe:a9fe": true,
		"64:ff9b:1::7f00:1": true, "64:ff9b:1::808:808": true, "2002:7f00:1::1": true,
		"2002:a9fe:a9fe::1": true, "2001:0:4136:e378:8000:63bf:80ff:fffe": true, "2001:0:7f00:1::1": true,
		// Public, plainly or inside the same forms.
		"8.8.8.8": false, "2606:4700:4700::1111": false, "64:ff9b::808:808": false, "2002:808:808::1": false,
		"2001:0:4136:e378:8000:63bf:f7f7:f7f7": false, "2001:db8::1": false, "192.0.2.2": false,
	} {
		if got := InternalAddr(netip.MustParseAddr(addr)); got != internal {
			t.Errorf("InternalAddr(%s) = %v, want %v", addr, got, internal)
		}
	}
	if !InternalAddr(netip.Addr{}) {
		t.Error("the zero Addr is not internal")
	}
}

func TestInternalHostAndNumericHost(t *testing.T) {
	for host, internal := range map[string]bool{
		"localhost": true, "LOCALHOST.": true, "a.localhost": true, "a.localhost.": true, "127.0.0.1.": true,
		"::7f00:1": true, "example.com": false, "example.com.": false, "localhost.example.com": false,
	} {
		if got := InternalHost(host); got != internal {
			t.Errorf("InternalHost(%q) = %v, want %v", host, got, internal)
		}
	}
	for host, numeric := range map[string]bool{
		"2130706433": true, "0x7f000001": true, "0x7f.1": true, "0177.0.0.1": true, "127.1": true, "0": true,
		"127.1.": true, "127.0.0.1": false, "::1": false, "example.com": false, "a1.example": false, "": false,
	} {
		if got := NumericHost(host); got != numeric {
			t.Errorf("NumericHost(%q) = %v, want %v", host, got, numeric)
		}
	}
}

// RefuseInternal as a dialer's Control: the dial never connects.
func TestRefuseInternalAtDial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := &net.Dialer{Control: RefuseInternal}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	for _, host := range []string{"127.0.0.1", "[::ffff:127.0.0.1]", "[::7f00:1]", "[2002:7f00:1::1]"} {
		c, err := d.Dial("tcp", host+":"+port)
		if err == nil {
			c.Close()
		}
		if !errors.Is(err, ErrInternalTarget) {
			t.Errorf("dial %s: %v, want ErrInternalTarget", host, err)
		}
	}
}

// Every IPv4 address is judged the same inside each IPv6 form that carries
// it for a translator or relay, and no host string panics the checks.
func FuzzInternalAddr(f *testing.F) {
	f.Add([]byte{127, 0, 0, 1}, "127.0.0.1")
	f.Add([]byte{8, 8, 8, 8}, "0x7f.1")
	f.Add([]byte{100, 64, 0, 1}, "[::7f00:1]")
	f.Add([]byte{169, 254, 169, 254}, "A.LOCALHOST.")
	f.Fuzz(func(t *testing.T, b []byte, host string) {
		InternalHost(host)
		NumericHost(host)
		if ip, err := netip.ParseAddr(strings.TrimSuffix(host, ".")); err == nil && !InternalHost(host) && InternalAddr(ip) {
			t.Fatalf("InternalHost(%q) false for an internal address", host)
		}
		if len(b) < 4 {
			return
		}
		v4 := netip.AddrFrom4([4]byte(b[:4]))
		want := InternalAddr(v4)
		var mapped, nat, sixTo4, teredoClient [16]byte
		mapped[10], mapped[11] = 0xff, 0xff
		copy(mapped[12:], b[:4])
		copy(nat[:], []byte{0, 0x64, 0xff, 0x9b})
		copy(nat[12:], b[:4])
		copy(sixTo4[:], []byte{0x20, 0x02})
		copy(sixTo4[2:], b[:4])
		copy(teredoClient[:], []byte{0x20, 0x01, 0, 0, 8, 8, 8, 8})
		for i := range 4 {
			teredoClient[12+i] = ^b[i]
		}
		for name, a := range map[string][16]byte{"mapped": mapped, "nat64": nat, "6to4": sixTo4, "teredo": teredoClient} {
			if got := InternalAddr(netip.AddrFrom16(a)); got != want {
				t.Fatalf("%s %s: InternalAddr = %v, %s alone %v", name, netip.AddrFrom16(a), got, v4, want)
			}
		}
		var compat [16]byte
		copy(compat[12:], b[:4])
		if !InternalAddr(netip.AddrFrom16(compat)) {
			t.Fatalf("IPv4-compatible %s not internal", netip.AddrFrom16(compat))
		}
	})
}
