package discovery

import (
	"net/url"
	"testing"

	"github.com/miekg/dns"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// FuzzDNSSpecs: whatever a resolver answers (the message as it comes off
// the wire, any records, any names), every backend made of its answer
// section makes an endpoint (endpoint.New accepts it), names a host and
// port, appears once, has a weight, and the TTL is not negative.
func FuzzDNSSpecs(f *testing.F) {
	for _, rrs := range [][]string{
		{"llm.test. 30 IN A 10.0.0.2", "llm.test. 10 IN AAAA fd00::1"},
		{"_llm._tcp.test. 60 IN SRV 0 5 8000 gpu-1.test.", "_llm._tcp.test. 60 IN SRV 1 0 8001 gpu-2.test.", "_llm._tcp.test. 60 IN SRV 0 0 0 .", "x. 5 IN CNAME y."},
		{`_llm._tcp.test. 60 IN SRV 0 5 8000 a\032b.test.`, `_llm._tcp.test. 60 IN SRV 0 5 8000 a\.b.`},
		{"_llm._tcp.test. 60 IN SRV 0 5 8000 a/b.test.", "_llm._tcp.test. 60 IN SRV 0 5 8000 a?b.", "_llm._tcp.test. 60 IN SRV 0 5 8000 a#b."},
	} {
		m := new(dns.Msg)
		m.SetQuestion("llm.test.", dns.TypeSRV)
		for _, s := range rrs {
			rr, err := dns.NewRR(s)
			if err != nil {
				f.Fatal(err)
			}
			m.Answer = append(m.Answer, rr)
		}
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint16(8000))
	}
	f.Fuzz(func(t *testing.T, wire []byte, port uint16) {
		m := new(dns.Msg)
		if m.Unpack(wire) != nil {
			return
		}
		d := DNS{Port: int(port)}
		set, ttl := d.specs(m.Answer)
		if ttl < 0 {
			t.Fatalf("ttl %v", ttl)
		}
		seen := map[string]bool{}
		for _, s := range set {
			if _, err := endpoint.New(s, endpoint.HealthPolicy{}); err != nil {
				t.Fatalf("backend %+v from %v: %v", s, m.Answer, err)
			}
			u, err := url.Parse(s.URL)
			if err != nil || u.Scheme != "http" || u.Hostname() == "" || u.Port() == "" || u.Path != "" || u.User != nil || seen[s.Key()] || s.Weight < 1 {
				t.Fatalf("backend %+v from %v", s, m.Answer)
			}
			seen[s.Key()] = true
		}
	})
}
