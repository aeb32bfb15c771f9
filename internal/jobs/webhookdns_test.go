package jobs

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/sluice-gw/sluice/internal/netguard"
)

// loopbackDNS is a DNS server on a loopback UDP port answering the names
// in zone (an A or AAAA record each), and a resolver that asks only it.
func loopbackDNS(t *testing.T, zone map[string]string) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve := func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		addr, ok := zone[strings.ToLower(q.Question[0].Name)]
		if !ok {
			m.Rcode = dns.RcodeNameError
		} else if ip := netip.MustParseAddr(addr); ip.Is4() && q.Question[0].Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: ip.AsSlice()})
		} else if !ip.Is4() && q.Question[0].Qtype == dns.TypeAAAA {
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: 1}, AAAA: ip.AsSlice()})
		}
		w.WriteMsg(m)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(serve), NotifyStartedFunc: func() { close(started) }}
	done := make(chan struct{})
	go func() { defer close(done); srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { srv.Shutdown(); <-done })
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
}

// The guard runs on the address actually dialled: a name whose DNS answer
// is loopback, plainly or inside one of the IPv6 forms that carry an IPv4
// address, is refused before connect, finally, and the receiver on that
// address sees nothing; with private targets allowed the same name reaches
// it (the DNS answer is what was dialled). The old check let the
// IPv4-compatible, 6to4, Teredo and local-use NAT64 forms through to
// connect.
func TestWebhookNameResolvingInternalRefusedAtDial(t *testing.T) {
	target := newHookTarget(t, nil)
	port := target.URL[strings.LastIndex(target.URL, ":")+1:]
	r := loopbackDNS(t, map[string]string{
		"loop.test.":      "127.0.0.1",
		"cgnat.test.":     "100.64.0.1",
		"mapped.test.":    "::ffff:127.0.0.1",
		"compat.test.":    "::7f00:1",
		"nat64.test.":     "64:ff9b::7f00:1",
		"nat64l.test.":    "64:ff9b:1::7f00:1",
		"sixto4.test.":    "2002:7f00:1::1",
		"teredo.test.":    "2001:0:4136:e378:8000:63bf:80ff:fffe", // client 127.0.0.1, inverted
		"sitelocal.test.": "fec0::1",
	})
	ctx := context.Background()
	guarded := newWebhookSenderVia(webhookDialer(false, r), []byte("s3cret"), newClock().Now)
	for _, name := range []string{"loop", "cgnat", "mapped", "compat", "nat64", "nat64l", "sixto4", "teredo", "sitelocal"} {
		err := guarded.send(ctx, "http://"+name+".test:"+port+"/hook", "job1", []byte(`{}`))
		var de *deliveryError
		if !errors.As(err, &de) || !de.permanent || de.reason != "destination_refused" ||
			!errors.Is(err, ErrWebhookTarget) || !errors.Is(err, netguard.ErrInternalTarget) {
			t.Errorf("%s.test: %v, want a final destination_refused", name, err)
		}
	}
	if n := target.hits.Load(); n != 0 {
		t.Fatalf("the loopback receiver got %d webhooks", n)
	}
	open := newWebhookSenderVia(webhookDialer(true, r), []byte("s3cret"), newClock().Now)
	if err := open.send(ctx, "http://loop.test:"+port+"/hook", "job1", []byte(`{}`)); err != nil {
		t.Fatalf("private targets allowed: %v", err)
	}
	if n := target.hits.Load(); n != 1 {
		t.Fatalf("receiver hits %d, want 1", n)
	}
}
