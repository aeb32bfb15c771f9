package app

import (
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// A model served from a DNS name: a real DNS server on loopback answers
// the name with 127.0.0.1, and the backend on that address serves.
func TestDNSDiscoveredModelServes(t *testing.T) {
	b := backend(t, "b")
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(b.URL, "http://"))
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(r)
			if r.Question[0].Qtype == dns.TypeA {
				rr, _ := dns.NewRR(r.Question[0].Name + " 30 IN A 127.0.0.1")
				m.Answer = append(m.Answer, rr)
			}
			w.WriteMsg(m)
		})}
	done := make(chan struct{})
	go func() { defer close(done); srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { srv.Shutdown(); <-done })

	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := "listen: 127.0.0.1:0\nlog: {access: false}\nqueue: {enabled: false}\n" +
		"models:\n  - name: m1\n    discovery:\n      - type: dns\n        name: llm.test\n        port: " + port +
		"\n        server: " + pc.LocalAddr().String() + "\n"
	writeFile(t, path, src)
	a := newApp(t, path)
	gw, _, cancel, stopped := runApp(t, a)
	defer func() { cancel(); <-stopped }()
	eventually(t, "the DNS name's backend to serve", samePool(a, "http://127.0.0.1:"+port))
	if code, body := chat(gw, "m1"); code != 200 || !strings.Contains(body, `"b"`) {
		t.Fatalf("%d %s", code, body)
	}
	if f := a.gw.Runtime().Pools["m1"].Backends[0].RampFactor(); f != 1 {
		t.Errorf("the first backend of an empty pool slow-starts (ramp %v): it has nobody to share with", f)
	}
}
