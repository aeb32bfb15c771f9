package app

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// A model served from a DNS name: a real DNS server on loopback answers
// the name with 127.0.0.1, and the backend on that address serves.
func TestDNSDiscoveredModelServes(t *testing.T) {
	b := backend(t, "b")
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(b.URL, "http://"))
	server := serveDNS(t, answerLoopback(nil))

	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := "listen: 127.0.0.1:0\n" + noProbes + "log: {access: false}\nqueue: {enabled: false}\n" +
		"models:\n  - name: m1\n    discovery:\n      - type: dns\n        name: llm.test\n        port: " + port +
		"\n        server: " + server + "\n"
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

// A source that cannot reach its registry at start: the static backend
// serves, /readyz is 200 and says one source of one is failing (counts
// only: the public listener), /status names the error; once the resolver
// answers, both show it recovered.
func TestFailingSourceShownOnReadyzAndStatus(t *testing.T) {
	b := backend(t, "b")
	var failing atomic.Bool
	failing.Store(true)
	server := serveDNS(t, answerLoopback(&failing))

	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := "listen: 127.0.0.1:0\n" + noProbes + "log: {access: false}\nqueue: {enabled: false}\n" +
		"models:\n  - name: m1\n    backends:\n      - url: " + b.URL + "\n    discovery:\n      - type: dns\n        name: llm.test\n        port: 9\n" +
		"        min_interval: 100ms\n        max_interval: 200ms\n        server: " + server + "\n"
	writeFile(t, path, src)
	a := newApp(t, path)
	gw, _, cancel, stopped := runApp(t, a)
	defer func() { cancel(); <-stopped }()
	readyz := func() (int, string) {
		resp, err := http.Get(gw + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	eventually(t, "the failure counted", func() bool { return counterValue(t, a, "sluice_discovery_failures_total") >= 1 })
	if code, body := chat(gw, "m1"); code != 200 || !strings.Contains(body, `"b"`) {
		t.Fatalf("the static backend does not serve while discovery fails: %d %s", code, body)
	}
	code, body := readyz()
	if code != 200 || !strings.Contains(body, `"failing": 1`) || !strings.Contains(body, `"sources": 1`) {
		t.Fatalf("/readyz while the source fails: %d %s", code, body)
	}
	if strings.Contains(body, "SERVFAIL") || strings.Contains(body, "127.0.0.1") {
		t.Errorf("/readyz (public) carries the registry's error: %s", body)
	}
	if st := adminStatus(t, a); !strings.Contains(st, "SERVFAIL") {
		t.Errorf("/status does not name the failing source's error: %s", st)
	}
	failing.Store(false)
	eventually(t, "the recovery shown", func() bool {
		_, body := readyz()
		return strings.Contains(body, `"failing": 0`) && strings.Contains(body, `"backends": 2`)
	})
	if st := adminStatus(t, a); strings.Contains(st, "SERVFAIL") {
		t.Errorf("/status still names the error after the recovery: %s", st)
	}
}

// Reloads that change a model's sources while they run, one of them a DNS
// query held by a silent resolver: each reload returns without waiting
// for that query's timeout, and once the gateway stops no goroutine of
// any source is left.
func TestReloadsChangingSourcesLeaveNoGoroutine(t *testing.T) {
	checkNoGoroutineLeftAtEnd(t)
	b := backend(t, "b")
	var asked atomic.Int64
	server := serveDNS(t, func(dns.ResponseWriter, *dns.Msg) { asked.Add(1) }) // never answers

	dir := t.TempDir()
	targets := filepath.Join(dir, "targets.json")
	writeTargets(t, targets, b.URL)
	path := filepath.Join(dir, "sluice.yaml")
	head := "listen: 127.0.0.1:0\n" + noProbes + "log: {access: false}\nqueue: {enabled: false}\nmodels:\n  - name: m1\n    discovery:\n"
	file := "      - type: file\n        path: " + targets + "\n"
	dnsName := func(name string) string {
		return "      - type: dns\n        name: " + name + "\n        port: 9\n        server: " +
			server + "\n"
	}
	writeFile(t, path, head+file+dnsName("a.test"))
	a := newApp(t, path)
	gw, _, cancel, stopped := runApp(t, a)
	eventually(t, "the file's backend", samePool(a, b.URL))
	for i, src := range []string{file + dnsName("b.test"), dnsName("c.test"), file} {
		before := asked.Load()
		eventually(t, "a query in flight", func() bool { return asked.Load() > before || i == 2 })
		writeFile(t, path, head+src)
		if err := a.Reload(); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
	}
	eventually(t, "the file's backend after the reloads", samePool(a, b.URL))
	if code, _ := chat(gw, "m1"); code != 200 {
		t.Fatalf("after the reloads: %d", code)
	}
	cancel()
	<-stopped
}

// serveDNS runs a real DNS server on a loopback UDP port with handler,
// shut down at the test's end, and returns its address.
func serveDNS(t *testing.T, handler dns.HandlerFunc) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) }, Handler: handler}
	done := make(chan struct{})
	go func() { defer close(done); srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { srv.Shutdown(); <-done })
	return pc.LocalAddr().String()
}

// answerLoopback answers every A question with 127.0.0.1 (TTL 30 s), or
// SERVFAIL while failing (when not nil) is set.
func answerLoopback(failing *atomic.Bool) dns.HandlerFunc {
	return func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if failing != nil && failing.Load() {
			m.Rcode = dns.RcodeServerFailure
		} else if r.Question[0].Qtype == dns.TypeA {
			rr, _ := dns.NewRR(r.Question[0].Name + " 30 IN A 127.0.0.1")
			m.Answer = append(m.Answer, rr)
		}
		w.WriteMsg(m)
	}
}

// A model served from discovery alone, beside a static one: while its
// DNS source has never answered, the replica is not ready (503 naming the
// model, its failing source and since when; the error on /status only);
// once a set was found, a failure keeps it and says "degraded" on both,
// the replica ready. A model a reload adds does not hold readiness while
// its source fails. (The old gateway answered 200 throughout.)
func TestReadyzWaitsForDiscoveryAtStart(t *testing.T) {
	b := backend(t, "b")
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(b.URL, "http://"))
	var failing atomic.Bool
	failing.Store(true)
	server := serveDNS(t, answerLoopback(&failing))
	dnsModel := func(name string) string {
		return "  - name: " + name + "\n    discovery:\n      - type: dns\n        name: llm.test\n        port: " + port +
			"\n        min_interval: 100ms\n        max_interval: 200ms\n        server: " + server + "\n"
	}
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	head := "listen: 127.0.0.1:0\n" + noProbes + "log: {access: false}\nqueue: {enabled: false}\n" +
		"models:\n  - name: static\n    backends:\n      - url: " + b.URL + "\n" + dnsModel("found")
	writeFile(t, path, head)
	a := newApp(t, path)
	gw, _, cancel, stopped := runApp(t, a)
	defer func() { cancel(); <-stopped }()
	readyz := func() (int, map[string]any) {
		resp, err := http.Get(gw + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, body
	}
	discoveryOf := func(body map[string]any, model string) map[string]any {
		for _, m := range body["models"].([]any) {
			if m := m.(map[string]any); m["model"] == model {
				d, _ := m["discovery"].(map[string]any)
				return d
			}
		}
		return nil
	}
	eventually(t, "the failure counted", func() bool { return counterValue(t, a, "sluice_discovery_failures_total") >= 1 })
	code, body := readyz()
	d := discoveryOf(body, "found")
	if code != 503 || fmt.Sprint(body["waiting_for"]) != "[found]" || d["state"] != "initializing" ||
		!strings.Contains(fmt.Sprint(d["reason"]), "source 0 (dns) failing since ") || d["failing_since"] == nil {
		t.Fatalf("/readyz while the only source never answered: %d %v", code, body)
	}
	if raw, _ := json.Marshal(body); strings.Contains(string(raw), "SERVFAIL") {
		t.Errorf("/readyz (public) carries the registry's error: %s", raw)
	}
	if st := adminStatus(t, a); !strings.Contains(st, "SERVFAIL") || !strings.Contains(st, `"state": "initializing"`) {
		t.Errorf("/status does not name the error and state: %s", st)
	}
	if code, body := chat(gw, "static"); code != 200 {
		t.Fatalf("the static model does not serve meanwhile: %d %s", code, body)
	}

	failing.Store(false)
	eventually(t, "ready once the name answers", func() bool {
		code, body := readyz()
		return code == 200 && discoveryOf(body, "found")["state"] == "ok"
	})
	failing.Store(true)
	eventually(t, "degraded once it fails again", func() bool {
		code, body := readyz()
		d := discoveryOf(body, "found")
		return code == 200 && d["state"] == "degraded" && d["failing_since"] != nil &&
			strings.Contains(fmt.Sprint(d["reason"]), "the last known backends serve")
	})
	if code, body := chat(gw, "found"); code != 200 {
		t.Fatalf("the discovered model does not serve while degraded: %d %s", code, body)
	}
	if st := adminStatus(t, a); !strings.Contains(st, `"state": "degraded"`) || !strings.Contains(st, "SERVFAIL") {
		t.Errorf("/status while degraded: %s", st)
	}
	if v := gaugeValue(t, a, "sluice_discovery_failing_since_timestamp_seconds"); v <= 0 {
		t.Errorf("sluice_discovery_failing_since_timestamp_seconds = %v while failing", v)
	}

	writeFile(t, path, head+dnsModel("added"))
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the added model's source failing", func() bool {
		_, body := readyz()
		return discoveryOf(body, "added")["failing"] == 1.0
	})
	if code, body := readyz(); code != 200 || discoveryOf(body, "added")["state"] != "initializing" {
		t.Errorf("a model a reload added holds readiness: %d %v", code, body)
	}
}
