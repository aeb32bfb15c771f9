package discovery

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// zone is an in-process DNS server on loopback (UDP, and TCP on the same
// port) answering from records the test changes. Over UDP an answer past
// 512 bytes is truncated with the TC bit set, as a server without EDNS0
// does, so the client must ask again over TCP.
type zone struct {
	addr   string
	mu     sync.Mutex
	rrs    map[uint16][]string // by type, in zone-file syntax
	fail   bool                // answer SERVFAIL
	failQ  uint16              // answer SERVFAIL to queries of this type only
	rcode  int                 // answer with this rcode and no records, when not 0
	silent bool                // read queries, answer none (a server that hangs)
	tcp    int                 // queries over TCP
	delay  time.Duration       // before each answer (a slow resolver)
	asks   int                 // queries received
}

func (z *zone) asked() int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.asks
}

// eventually polls cond until it holds; the bound only catches a hang.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newZone(t *testing.T) *zone {
	z := &zone{rrs: map[uint16][]string{}}
	pc, ln := listenUDPAndTCP(t)
	z.addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{{PacketConn: pc}, {Listener: ln}} {
		started := make(chan struct{})
		srv.Handler, srv.NotifyStartedFunc = dns.HandlerFunc(z.serve), func() { close(started) }
		done := make(chan struct{})
		go func() { defer close(done); srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { srv.Shutdown(); <-done })
	}
	return z
}

// listenUDPAndTCP binds a free loopback port for both UDP and TCP. The
// port the kernel picks for UDP may be held for TCP by another process
// (the suite's packages run at once): then another port is tried.
func listenUDPAndTCP(t *testing.T) (net.PacketConn, net.Listener) {
	t.Helper()
	var lastErr error
	for range 50 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln
		}
		pc.Close()
		lastErr = err
	}
	t.Fatalf("no loopback port free for both UDP and TCP: %v", lastErr)
	return nil, nil
}

func (z *zone) set(t *testing.T, typ uint16, rrs ...string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.rrs[typ] = rrs
}

// with changes the zone's behaviour under its lock.
func (z *zone) with(f func(z *zone)) {
	z.mu.Lock()
	defer z.mu.Unlock()
	f(z)
}

func (z *zone) serve(w dns.ResponseWriter, r *dns.Msg) {
	z.mu.Lock()
	delay := z.delay
	z.mu.Unlock()
	time.Sleep(delay) // the resolver's slowness, not a synchronisation
	z.mu.Lock()
	defer z.mu.Unlock()
	z.asks++
	udp := w.LocalAddr().Network() == "udp"
	if !udp {
		z.tcp++
	}
	if z.silent {
		return
	}
	m := new(dns.Msg)
	m.SetReply(r)
	m.Compress = true // as servers do: 3,000 records fit in one TCP message
	switch {
	case z.fail, z.failQ != 0 && z.failQ == r.Question[0].Qtype:
		m.Rcode = dns.RcodeServerFailure
	case z.rcode != 0:
		m.Rcode = z.rcode
	default:
		for _, s := range z.rrs[r.Question[0].Qtype] {
			rr, err := dns.NewRR(s)
			if err == nil && strings.EqualFold(rr.Header().Name, r.Question[0].Name) {
				m.Answer = append(m.Answer, rr)
			}
		}
	}
	if udp {
		m.Truncate(dns.MinMsgSize)
	}
	w.WriteMsg(m)
}

// ticks is an injected time.After: it records the wait asked for and
// fires when the test says.
type ticks struct {
	asked chan time.Duration
	fire  chan time.Time
}

func newTicks() *ticks {
	return &ticks{asked: make(chan time.Duration, 16), fire: make(chan time.Time)}
}

func (k *ticks) after(d time.Duration) <-chan time.Time {
	k.asked <- d
	return k.fire
}

func (k *ticks) waitAsked(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-k.asked:
		return d
	case <-time.After(wait):
		t.Fatal("the source did not schedule its next query")
	}
	return 0
}

func runDNS(t *testing.T, d DNS) *chanSink {
	sink := newChanSink()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); d.Run(ctx, sink) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return sink
}

// A and AAAA records on the configured port, re-resolved at the TTL within
// the bounds; a changed answer is a new set; a failing server keeps it.
func TestDNSAddressRecords(t *testing.T) {
	z := newZone(t)
	z.set(t, dns.TypeA, "llm.test. 30 IN A 10.0.0.2", "llm.test. 10 IN A 10.0.0.1")
	z.set(t, dns.TypeAAAA, "llm.test. 60 IN AAAA fd00::1")
	k := newTicks()
	sink := runDNS(t, DNS{Name: "llm.test", Port: 8000, Server: z.addr,
		MinInterval: 5 * time.Second, MaxInterval: time.Minute, After: k.after})
	if got := urls(sink.next(t)); got != "http://10.0.0.1:8000,http://10.0.0.2:8000,http://[fd00::1]:8000" {
		t.Fatalf("set %s", got)
	}
	if d := k.waitAsked(t); d != 10*time.Second {
		t.Fatalf("next query in %v, want the smallest TTL, 10s", d)
	}

	z.set(t, dns.TypeA, "llm.test. 1 IN A 10.0.0.1")
	z.set(t, dns.TypeAAAA)
	k.fire <- time.Time{}
	if got := urls(sink.next(t)); got != "http://10.0.0.1:8000" {
		t.Fatalf("set %s", got)
	}
	if d := k.waitAsked(t); d != 5*time.Second {
		t.Fatalf("next query in %v, want the TTL of 1s raised to min_interval", d)
	}

	z.mu.Lock()
	z.fail = true
	z.mu.Unlock()
	k.fire <- time.Time{}
	if err := sink.failure(t, "SERVFAIL"); !strings.Contains(err.Error(), "dns A llm.test") {
		t.Fatalf("failure %v", err)
	}
	if d := k.waitAsked(t); d != 5*time.Second {
		t.Fatalf("retry in %v, want min_interval", d)
	}
	z.mu.Lock()
	z.fail = false
	z.mu.Unlock()
	// An empty answer (the resolver answered: no address) after a set is
	// held emptyHold, the last set serving, then honoured if the name is
	// still empty: the name was taken down (Envoy's STRICT_DNS takes a
	// successful empty answer as no hosts). Before, it was a failure and
	// the last addresses were kept for good.
	z.set(t, dns.TypeA) // NXDOMAIN-like: nothing
	k.fire <- time.Time{}
	sink.heldBack(t, "no records")
	if d := k.waitAsked(t); d != emptyHold {
		t.Fatalf("asked again in %v after an empty answer, want the hold, %v", d, emptyHold)
	}
	noUpdate(t, sink)
	k.fire <- time.Time{}
	if set := sink.next(t); set == nil || len(set) != 0 {
		t.Fatalf("set %v after the hold, want the empty set", set)
	}
	if d := k.waitAsked(t); d != 5*time.Second {
		t.Fatalf("next query in %v, want min_interval", d)
	}
	// An address back is a set again.
	z.set(t, dns.TypeA, "llm.test. 1 IN A 10.0.0.3")
	k.fire <- time.Time{}
	if got := urls(sink.next(t)); got != "http://10.0.0.3:8000" {
		t.Fatalf("set %s after the name came back", got)
	}
	// Empty again, but an address back within the hold: the hold ends,
	// the pool never emptied.
	z.set(t, dns.TypeA)
	k.waitAsked(t)
	k.fire <- time.Time{}
	sink.heldBack(t, "no records")
	k.waitAsked(t)
	z.set(t, dns.TypeA, "llm.test. 1 IN A 10.0.0.3")
	k.fire <- time.Time{}
	if got := urls(sink.next(t)); got != "http://10.0.0.3:8000" {
		t.Fatalf("set %s after a held empty answer, want the set reported again (the hold ended)", got)
	}
}

// SRV: the lowest priority's targets, with their ports and weights; a TTL
// above max_interval is cut to it.
func TestDNSServiceRecords(t *testing.T) {
	z := newZone(t)
	z.set(t, dns.TypeSRV,
		"_llm._tcp.test. 3600 IN SRV 10 5 8001 gpu-1.test.",
		"_llm._tcp.test. 3600 IN SRV 10 0 8002 gpu-2.test.",
		"_llm._tcp.test. 3600 IN SRV 20 1 8003 spare.test.")
	k := newTicks()
	sink := runDNS(t, DNS{Name: "_llm._tcp.test.", Record: "srv", Server: z.addr,
		MinInterval: time.Second, MaxInterval: time.Minute, After: k.after,
		Template: Template{Scheme: "https"}})
	set := sink.next(t)
	if got := urls(set); got != "https://gpu-1.test:8001,https://gpu-2.test:8002" {
		t.Fatalf("set %s", got)
	}
	if set[0].Weight != 5 || set[1].Weight != 1 {
		t.Errorf("weights %d %d, want 5 and 1 (0 counts as 1)", set[0].Weight, set[1].Weight)
	}
	if d := k.waitAsked(t); d != time.Minute {
		t.Fatalf("next query in %v, want the TTL cut to max_interval", d)
	}
	// The priority-10 targets gone: the priority-20 one serves.
	z.set(t, dns.TypeSRV, "_llm._tcp.test. 30 IN SRV 20 1 8003 spare.test.")
	k.fire <- time.Time{}
	if got := urls(sink.next(t)); got != "https://spare.test:8003" {
		t.Fatalf("set %s", got)
	}
}

// Faults of the resolver: SERVFAIL, NXDOMAIN, an empty answer and a
// server that never answers each keep the last set, are retried at
// min_interval doubling to max_interval while they last, and the first
// answer after them is reported again (the failure is seen to end) with
// the retry back at the TTL.
func TestDNSFaultsBackOffAndRecover(t *testing.T) {
	z := newZone(t)
	z.set(t, dns.TypeA, "llm.test. 30 IN A 10.0.0.1")
	k := newTicks()
	// The query timeout is what the silent server's cases wait; the
	// answering ones must never reach it, on a loaded machine too.
	sink := runDNS(t, DNS{Name: "llm.test", Port: 8000, Server: z.addr, Timeout: 2 * time.Second,
		MinInterval: time.Second, MaxInterval: 5 * time.Second, After: k.after, Jitter: fixedJitter(0.5)})
	if got := urls(sink.next(t)); got != "http://10.0.0.1:8000" {
		t.Fatalf("set %s", got)
	}
	if d := k.waitAsked(t); d != 5*time.Second {
		t.Fatalf("next query in %v, want the TTL cut to max_interval", d)
	}
	faults := []struct {
		name, want string
		set        func(z *zone)
	}{
		// An empty answer (NXDOMAIN, NOERROR without records) is no
		// failure: TestDNSAddressRecords holds and then honours it.
		{"SERVFAIL", "SERVFAIL", func(z *zone) { z.fail = true }},
		{"SERVFAIL again", "SERVFAIL", func(z *zone) {}},
		{"AAAA SERVFAIL, no A", "SERVFAIL", func(z *zone) { z.fail, z.failQ, z.rrs[dns.TypeA] = false, dns.TypeAAAA, nil }},
		{"no answer", "timeout", func(z *zone) { z.failQ, z.silent = 0, true }},
		{"no answer again", "timeout", func(z *zone) {}},
	}
	for i, f := range faults {
		z.with(f.set)
		k.fire <- time.Time{}
		sink.failure(t, f.want)
		// Steps 1, 2, 4, 5, 5 s; jitter 0.5 draws three quarters of
		// each, never below min_interval.
		want := []time.Duration{time.Second, 1500 * time.Millisecond, 3 * time.Second, 3750 * time.Millisecond, 3750 * time.Millisecond}[i]
		if d := k.waitAsked(t); d != want {
			t.Errorf("%s (failure %d in a row): retry in %v, want %v", f.name, i+1, d, want)
		}
	}
	select {
	case set := <-sink.updates:
		t.Fatalf("a fault replaced the set with %s", urls(set))
	default:
	}
	z.with(func(z *zone) { z.silent, z.rrs[dns.TypeA] = false, []string{"llm.test. 30 IN A 10.0.0.1"} })
	k.fire <- time.Time{}
	if got := urls(sink.next(t)); got != "http://10.0.0.1:8000" {
		t.Fatalf("set after recovery %s, want the same set reported again", got)
	}
	if d := k.waitAsked(t); d != 5*time.Second {
		t.Fatalf("after recovery: next query in %v, want the TTL's again", d)
	}
}

// An answer too large for UDP comes back truncated (TC); the source asks
// again over TCP and takes the whole answer: 3,000 addresses.
func TestDNSTruncatedAnswerUsesTCP(t *testing.T) {
	z := newZone(t)
	var rrs []string
	for i := range 3000 {
		rrs = append(rrs, fmt.Sprintf("big.test. 30 IN A 10.1.%d.%d", i/250, i%250+1))
	}
	z.set(t, dns.TypeA, rrs...)
	k := newTicks()
	sink := runDNS(t, DNS{Name: "big.test", Port: 8000, Server: z.addr,
		MinInterval: time.Second, MaxInterval: time.Minute, After: k.after})
	select {
	case err := <-sink.fails:
		t.Fatalf("failure %v", err)
	case set := <-sink.updates:
		if n := len(set); n != 3000 {
			t.Fatalf("%d backends from 3,000 records", n)
		}
	case <-time.After(wait):
		t.Fatal("no update")
	}
	z.with(func(z *zone) {
		if z.tcp == 0 {
			t.Error("no query over TCP after a truncated answer")
		}
	})
}

// Gateways started together against a resolver that is down do not retry
// in step: from the second failure on each wait is drawn from the step's
// upper half (never below min_interval), so two sources with different
// draws ask at different times, at the cap too.
func TestDNSRetriesAreJittered(t *testing.T) {
	d := DNS{MinInterval: time.Second, MaxInterval: time.Minute}
	if lo, hi := d.retryWait(1, fixedJitter(0)), d.retryWait(1, fixedJitter(0.999999)); lo != time.Second || hi >= 2*time.Second {
		t.Errorf("first retry in [%v, %v], want from min_interval, 1s, below the second step", lo, hi)
	}
	for _, n := range []int{2, 4, 7, 40} {
		lo, hi := d.retryWait(n, fixedJitter(0)), d.retryWait(n, fixedJitter(0.999999))
		if lo == hi {
			t.Errorf("failure %d: every gateway retries %v after it, in step", n, lo)
		}
		if hi > time.Minute || lo < time.Second {
			t.Errorf("failure %d: retry in [%v, %v], outside [min_interval, max_interval]", n, lo, hi)
		}
	}
	if lo := d.retryWait(40, fixedJitter(0)); lo != 30*time.Second {
		t.Errorf("at the cap the wait starts at %v, want half of max_interval, 30s", lo)
	}
}

// A query is given its whole timeout: a resolver that answers after the
// client library's 2 s default read timeout, within the source's, is an
// answer, not a failure.
func TestDNSSlowAnswerWithinTheTimeout(t *testing.T) {
	z := newZone(t)
	z.set(t, dns.TypeA, "llm.test. 30 IN A 10.0.0.1")
	z.with(func(z *zone) { z.delay = 2200 * time.Millisecond })
	k := newTicks()
	sink := runDNS(t, DNS{Name: "llm.test", Port: 8000, Server: z.addr, Timeout: time.Minute,
		MinInterval: time.Second, MaxInterval: time.Minute, After: k.after, Jitter: fixedJitter(0.5)})
	select {
	case set := <-sink.updates:
		if got := urls(set); got != "http://10.0.0.1:8000" {
			t.Fatalf("set %s", got)
		}
	case err := <-sink.fails:
		t.Fatalf("an answer 2.2 s late under a 1 min timeout failed: %v", err)
	case <-time.After(wait):
		t.Fatal("no report")
	}
}

// A source stopped while its resolver is silent returns at once, not
// when its query times out: a reload or a shutdown waits for it.
func TestDNSStopsMidQuery(t *testing.T) {
	z := newZone(t)
	z.with(func(z *zone) { z.silent = true })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	sink := newChanSink()
	go func() {
		defer close(done)
		DNS{Name: "llm.test", Port: 8000, Server: z.addr, Timeout: 10 * time.Minute,
			MinInterval: time.Second, MaxInterval: time.Minute}.Run(ctx, sink)
	}()
	eventually(t, "the query asked", func() bool { return z.asked() > 0 })
	cancel()
	// It returns in microseconds; the bound is 1.5 s only because a
	// source that waits for its read's deadline returned after miekg's
	// 2 s default before (holding a reload, or shutdown, that long), and
	// would now wait the query's 10 minutes.
	select {
	case <-done:
	case <-time.After(1500 * time.Millisecond):
		t.Fatal("a stopped source waits for its query's read deadline")
	}
}

// A resolver that fails one of A and AAAA (some always fail AAAA, with
// SERVFAIL) while the other answers: the answer stands alone when the set
// in use has no address of the failing family, as getaddrinfo and Go's
// resolver take it; when it has one, the partial answer would take those
// backends away, so it is a failure and the set stands.
func TestDNSOneFamilyFailing(t *testing.T) {
	z := newZone(t)
	z.set(t, dns.TypeA, "llm.test. 10 IN A 10.0.0.1")
	z.with(func(z *zone) { z.failQ = dns.TypeAAAA })
	k := newTicks()
	sink := runDNS(t, DNS{Name: "llm.test", Port: 8000, Server: z.addr,
		MinInterval: time.Second, MaxInterval: time.Minute, After: k.after, Jitter: fixedJitter(0.5)})
	if got := urls(sink.next(t)); got != "http://10.0.0.1:8000" {
		t.Fatalf("set %s, want the A answer alone", got)
	}

	// The AAAA answers now: an IPv6 backend joins.
	k.waitAsked(t)
	z.with(func(z *zone) { z.failQ = 0 })
	z.set(t, dns.TypeAAAA, "llm.test. 10 IN AAAA fd00::1")
	k.fire <- time.Time{}
	if got := urls(sink.next(t)); got != "http://10.0.0.1:8000,http://[fd00::1]:8000" {
		t.Fatalf("set %s", got)
	}
	// AAAA fails again: the IPv6 backend is in use, so it is a failure.
	k.waitAsked(t)
	z.with(func(z *zone) { z.failQ = dns.TypeAAAA })
	k.fire <- time.Time{}
	if err := sink.failure(t, "SERVFAIL"); err == nil {
		t.Fatal("no failure")
	}
	noUpdate(t, sink)
	// A fails too, with the other family in use: the same.
	k.waitAsked(t)
	z.with(func(z *zone) { z.failQ = dns.TypeA })
	k.fire <- time.Time{}
	sink.failure(t, "SERVFAIL")
	noUpdate(t, sink)
}

// An SRV target is a host name, not URL text: a target whose name holds
// a slash, a query or fragment mark, or an escaped byte is left out (the
// well-named one next to it serves). Before, "a/b.test." on port 8001
// became the backend http://a/b.test:8001, which is host a on port 80
// with the path /b.test:8001.
func TestDNSServiceTargetShapesNoURL(t *testing.T) {
	z := newZone(t)
	z.set(t, dns.TypeSRV,
		"_llm._tcp.test. 30 IN SRV 10 5 8001 a/b.test.",
		"_llm._tcp.test. 30 IN SRV 10 5 8002 a?b.test.",
		`_llm._tcp.test. 30 IN SRV 10 5 8003 a\032b.test.`,
		"_llm._tcp.test. 30 IN SRV 10 5 8004 gpu-1.test.")
	k := newTicks()
	sink := runDNS(t, DNS{Name: "_llm._tcp.test.", Record: "srv", Server: z.addr,
		MinInterval: time.Second, MaxInterval: time.Minute, After: k.after})
	if got := urls(sink.next(t)); got != "http://gpu-1.test:8004" {
		t.Fatalf("set %s, want the one well-named target", got)
	}
}
