package gateway

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/netguard"
)

func TestRealIPClient(t *testing.T) {
	xff := newRealIP([]string{"10.0.0.0/8", "192.0.2.1", "2001:db8::/32"}, "")
	fwd := newRealIP([]string{"10.0.0.0/8"}, "forwarded")
	for _, c := range []struct {
		name     string
		ri       realIP
		peer     string
		hdr      []string // name, value pairs
		addr, ff string
	}{
		{"untrusted peer ignores the header", xff, "203.0.113.5:1234", []string{"X-Forwarded-For", "1.1.1.1"}, "203.0.113.5", "203.0.113.5"},
		{"no proxies configured", newRealIP(nil, ""), "10.0.0.1:1", []string{"X-Forwarded-For", "1.1.1.1"}, "10.0.0.1", "10.0.0.1"},
		{"trusted peer, no header", xff, "10.0.0.1:1", nil, "10.0.0.1", "10.0.0.1"},
		{"one hop", xff, "10.0.0.1:1", []string{"X-Forwarded-For", "1.1.1.1"}, "1.1.1.1", "1.1.1.1, 10.0.0.1"},
		{"rightmost untrusted wins", xff, "10.0.0.1:1", []string{"X-Forwarded-For", "6.6.6.6, 1.1.1.1, 10.9.9.9"}, "1.1.1.1", "1.1.1.1, 10.9.9.9, 10.0.0.1"},
		{"header lines in order", xff, "10.0.0.1:1", []string{"X-Forwarded-For", "6.6.6.6", "X-Forwarded-For", "1.1.1.1"}, "1.1.1.1", "1.1.1.1, 10.0.0.1"},
		{"all trusted: leftmost", xff, "10.0.0.1:1", []string{"X-Forwarded-For", "10.0.0.7, 192.0.2.1"}, "10.0.0.7", "10.0.0.7, 192.0.2.1, 10.0.0.1"},
		{"garbage left of the client is never read", xff, "10.0.0.1:1", []string{"X-Forwarded-For", "<script>, 1.1.1.1"}, "1.1.1.1", "1.1.1.1, 10.0.0.1"},
		{"garbage rightmost: the peer", xff, "10.0.0.1:1", []string{"X-Forwarded-For", "1.1.1.1, nonsense"}, "10.0.0.1", "10.0.0.1"},
		{"garbage behind a trusted hop: that hop", xff, "10.0.0.1:1", []string{"X-Forwarded-For", "x, 10.0.0.9"}, "10.0.0.9", "10.0.0.9, 10.0.0.1"},
		{"ports and brackets", xff, "[2001:db8::1]:9", []string{"X-Forwarded-For", "[2001:db8:ffff::2]:443, 1.1.1.1:80"}, "1.1.1.1", "1.1.1.1, 2001:db8::1"},
		{"v4-mapped peer", xff, "[::ffff:10.0.0.1]:1", []string{"X-Forwarded-For", "::ffff:1.1.1.1"}, "1.1.1.1", "1.1.1.1, 10.0.0.1"},
		{"xff mode ignores Forwarded", xff, "10.0.0.1:1", []string{"Forwarded", "for=9.9.9.9"}, "10.0.0.1", "10.0.0.1"},
		{"forwarded", fwd, "10.0.0.1:1", []string{"Forwarded", `for=6.6.6.6, for="[2001:db8::7]:80";proto=https, For=10.0.0.3;by=x`}, "2001:db8::7", "2001:db8::7, 10.0.0.3, 10.0.0.1"},
		{"forwarded quoted comma", fwd, "10.0.0.1:1", []string{"Forwarded", `for="1.1.1.1";x="a,b"`}, "1.1.1.1", "1.1.1.1, 10.0.0.1"},
		{"forwarded unknown ends the walk", fwd, "10.0.0.1:1", []string{"Forwarded", `for=1.1.1.1, for=unknown`}, "10.0.0.1", "10.0.0.1"},
		{"forwarded element without for", fwd, "10.0.0.1:1", []string{"Forwarded", `for=1.1.1.1, proto=http`}, "10.0.0.1", "10.0.0.1"},
		{"forwarded mode ignores X-Forwarded-For", fwd, "10.0.0.1:1", []string{"X-Forwarded-For", "1.1.1.1"}, "10.0.0.1", "10.0.0.1"},
	} {
		r := &http.Request{RemoteAddr: c.peer, Header: http.Header{}}
		for i := 0; i+1 < len(c.hdr); i += 2 {
			r.Header.Add(c.hdr[i], c.hdr[i+1])
		}
		got := c.ri.client(r)
		if got.addr != c.addr || got.forwardedFor != c.ff {
			t.Errorf("%s: client %q forwarded-for %q, want %q %q", c.name, got.addr, got.forwardedFor, c.addr, c.ff)
		}
	}
}

// FuzzRealIP: whatever a trusted proxy's headers say, the client is the
// peer or an address the header named, the upstream chain ends with the
// peer and starts with the client, and an untrusted peer is never
// overridden.
func FuzzRealIP(f *testing.F) {
	for _, s := range []string{"1.1.1.1", "6.6.6.6, 1.1.1.1, 10.0.0.2", "[::1]:80, x", `for="[2001:db8::7]:80";proto=https, for=10.0.0.3`,
		`for="a\"b,c"`, ",,,", "for=", `"`, "unknown", "fe80::1%eth0, 1.2.3.4:99999"} {
		f.Add(s, false, true)
		f.Add(s, true, true)
		f.Add(s, false, false)
	}
	f.Fuzz(func(t *testing.T, header string, forwarded, peerTrusted bool) {
		name := "X-Forwarded-For"
		if forwarded {
			name = "Forwarded"
		}
		ri := newRealIP([]string{"10.0.0.0/8"}, name)
		peer := "203.0.113.1"
		if peerTrusted {
			peer = "10.0.0.1"
		}
		r := &http.Request{RemoteAddr: peer + ":5", Header: http.Header{name: {header}}}
		got := ri.client(r)
		if !peerTrusted && (got.addr != peer || got.forwardedFor != peer) {
			t.Fatalf("untrusted peer overridden: %+v", got)
		}
		if _, err := netip.ParseAddr(got.addr); err != nil {
			t.Fatalf("client %q is not an address", got.addr)
		}
		if !strings.HasSuffix(got.forwardedFor, peer) || !strings.HasPrefix(got.forwardedFor, got.addr) {
			t.Fatalf("chain %q for client %q, peer %s", got.forwardedFor, got.addr, peer)
		}
		if got.addr != peer && !strings.Contains(header, strings.Split(got.addr, ":")[0]) && !strings.Contains(header, ":") {
			t.Fatalf("client %q appears nowhere in %q", got.addr, header)
		}
	})
}

// TestClientResolvedOncePerConnection: through the real listener, a
// connection's client is resolved once and remembered (netguard.ConnMemo)
// only while it is the peer's own; a trusted peer's requests, whose
// forwarding headers may differ, and another runtime's tenants (a reload)
// resolve it again.
func TestClientResolvedOncePerConnection(t *testing.T) {
	plain := newTenants(config.Auth{}, nil)
	behindProxy := newTenants(config.Auth{TrustedProxies: []string{"127.0.0.1"}}, nil)
	type seen struct {
		c       client
		memoFor *tenants
	}
	got := make(chan seen, 1)
	use := plain
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := use.client(r, netguard.ConnMemo(r.Context()))
		var by *tenants
		if m, _ := netguard.ConnMemo(r.Context()).Load().(*peerMemo); m != nil {
			by = m.by
		}
		got <- seen{c, by}
	}))
	ln := netguard.NewListener(srv.Listener, netguard.ConnLimits{Total: 10}, netguard.NewConnMetrics(prometheus.NewRegistry()))
	srv.Listener, srv.Config.ConnContext, srv.Config.ConnState = ln, ln.ConnContext, ln.ConnState
	srv.Start()
	defer srv.Close()
	hc := srv.Client()
	get := func(xff string) seen {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return <-got
	}
	want := client{addr: "127.0.0.1", key: "127.0.0.1", forwardedFor: "127.0.0.1", openTenant: "ip:127.0.0.1"}
	for i := range 2 { // the second request of the connection is answered from the memo
		if s := get("1.1.1.1"); s.c != want || s.memoFor != plain {
			t.Fatalf("request %d: %+v (memo of %p, plain %p), want %+v", i, s.c, s.memoFor, plain, want)
		}
	}
	use = behindProxy // a reload: the peer is now a trusted proxy
	for _, xff := range []string{"1.1.1.1", "2.2.2.2"} {
		s := get(xff)
		if s.c.addr != xff || s.c.forwardedFor != xff+", 127.0.0.1" || s.c.openTenant != "" || s.memoFor != plain {
			t.Fatalf("behind the proxy, X-Forwarded-For %s: %+v, memo of %p", xff, s.c, s.memoFor)
		}
	}
	use = plain
	if s := get("3.3.3.3"); s.c != want {
		t.Fatalf("after the reload back: %+v, want %+v", s.c, want)
	}
}
