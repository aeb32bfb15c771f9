package discovery

import (
	"context"
	"encoding/json"
	"net"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
)

// fixedJitter is a Jitter that always draws the same number.
type fixedJitter float64

func (j fixedJitter) Float64() float64 { return float64(j) }

func runConsul(t *testing.T, c Consul) (*chanSink, *ticks) {
	k := newTicks()
	c.After, c.Jitter = k.after, fixedJitter(0.5)
	sink := newChanSink()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.Run(ctx, sink) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return sink, k
}

// next lets the source send its next query (after its pause) and returns
// that query as the double saw it.
func (k *ticks) next(t *testing.T, d *consulDouble, pause time.Duration) consulRequest {
	t.Helper()
	if got := k.waitAsked(t); got != pause {
		t.Fatalf("paused %v before the next query, want %v", got, pause)
	}
	k.fire <- time.Time{}
	return d.request(t)
}

func noUpdate(t *testing.T, sink *chanSink) {
	t.Helper()
	select {
	case set := <-sink.updates:
		t.Fatalf("unexpected set %s", urls(set))
	default:
	}
}

// The first query reads the passing instances with the service's tags in
// the datacenter, with the token; the next blocks on the index, and a
// registration answers it at once with the new set.
func TestConsulBlockingQueryDeliversChange(t *testing.T) {
	gpu := []string{"gpu", "v1"}
	d := newConsulDouble(t, 40,
		consulInstance{Node: "n1", NodeAddr: "10.0.0.1", Port: 8000, Tags: gpu, DC: "east", Status: "passing"},
		consulInstance{Node: "n2", NodeAddr: "10.0.0.2", Addr: "10.0.1.2", Port: 8001, Tags: gpu, DC: "east", Status: "passing"},
		consulInstance{Node: "n3", NodeAddr: "10.0.0.3", Port: 8000, Tags: gpu, DC: "east", Status: "critical"},
		consulInstance{Node: "n4", NodeAddr: "10.0.0.4", Port: 8000, Tags: gpu, DC: "east", Status: "warning"},
		consulInstance{Node: "n5", NodeAddr: "10.0.0.5", Port: 8000, Tags: []string{"v1"}, DC: "east", Status: "passing"},
		consulInstance{Node: "n6", NodeAddr: "10.0.0.6", Port: 8000, Tags: gpu, DC: "west", Status: "passing"})
	d.token = "s3cret-token"
	sink, k := runConsul(t, Consul{Service: "llm", Tags: gpu, Datacenter: "east", Address: d.addr(),
		Token: func() (string, error) { return "s3cret-token", nil }, Template: Template{Scheme: "https"}})

	first := d.request(t)
	if first.Path != "/v1/health/service/llm" || !first.Query.Has("passing") || first.Query.Has("index") ||
		!slices.Equal(first.Query["tag"], gpu) || first.Query.Get("dc") != "east" || first.Token != "s3cret-token" {
		t.Fatalf("first query %s %v token %q", first.Path, first.Query, first.Token)
	}
	if got := urls(sink.next(t)); got != "https://10.0.0.1:8000,https://10.0.1.2:8001" {
		t.Fatalf("set %s, want the passing gpu instances in east (node address when the service has none)", got)
	}

	held := k.next(t, d, consulGap)
	if held.Query.Get("index") != "40" || held.Query.Get("wait") != "300000ms" {
		t.Fatalf("second query %v, want index=40 and the default wait of 5m", held.Query)
	}
	// The source is held by the double now; nothing but the registration
	// (no tick is fired) can answer it.
	d.register(
		consulInstance{Node: "n1", NodeAddr: "10.0.0.1", Port: 8000, Tags: gpu, DC: "east", Status: "passing"},
		consulInstance{Node: "n3", NodeAddr: "10.0.0.3", Port: 8000, Tags: gpu, DC: "east", Status: "passing"})
	if got := urls(sink.next(t)); got != "https://10.0.0.1:8000,https://10.0.0.3:8000" {
		t.Fatalf("set %s after the registration", got)
	}
	if r := k.next(t, d, consulGap); r.Query.Get("index") != "41" {
		t.Fatalf("third query %v, want index=41", r.Query)
	}
}

// An outage (the agent failing, then showing no passing instance) keeps
// the last set, reports each failure without the token, and backs off,
// doubling within bounds; the retries are fresh reads (no index), so the
// recovered agent answers at once and the same set is reported again.
func TestConsulOutageKeepsLastSet(t *testing.T) {
	up := consulInstance{Node: "n1", NodeAddr: "10.0.0.1", Port: 8000, Status: "passing"}
	d := newConsulDouble(t, 7, up)
	d.token = "s3cret-token"
	sink, k := runConsul(t, Consul{Service: "llm", Address: d.addr(), Wait: 30 * time.Second,
		Token: func() (string, error) { return "s3cret-token", nil }})
	d.request(t)
	if got := urls(sink.next(t)); got != "http://10.0.0.1:8000" {
		t.Fatalf("set %s", got)
	}
	if r := k.next(t, d, consulGap); r.Query.Get("wait") != "30000ms" {
		t.Fatalf("query %v, want wait=30000ms", r.Query)
	}
	d.change(func() { d.down = true }) // wakes the held query: it fails
	checkFailure := func(want string) {
		t.Helper()
		if err := sink.failure(t, want); strings.Contains(err.Error(), "s3cret") {
			t.Fatalf("the token leaked into %q", err)
		}
	}
	checkFailure("No cluster leader")
	// Jitter 0.5: three quarters of each step (0.5s, 1s, 2s, ...).
	for _, want := range []time.Duration{375 * time.Millisecond, 750 * time.Millisecond, 1500 * time.Millisecond} {
		if r := k.next(t, d, want); r.Query.Has("index") {
			t.Fatalf("retry %v, want a fresh read (no index)", r.Query)
		}
		checkFailure("No cluster leader")
	}
	d.change(func() { d.down = false; d.token = "rotated" })
	k.next(t, d, 3*time.Second)
	checkFailure("ACL not found")
	d.change(func() { d.token = "s3cret-token" })
	k.next(t, d, 6*time.Second) // answered at once: the recovery is seen
	if got := urls(sink.next(t)); got != "http://10.0.0.1:8000" {
		t.Fatalf("set %s after recovery, want the same set reported again", got)
	}
	if r := k.next(t, d, consulGap); r.Query.Get("index") != "7" { // held: nothing changed at index 7
		t.Fatalf("query %v after recovery, want index=7", r.Query)
	}
	// No instance passing after a set: held emptyHold, the last set
	// serving, then asked afresh; none passing then either, the empty
	// set is honoured (before: a failure, the last set kept for good).
	d.register(consulInstance{Node: "n1", NodeAddr: "10.0.0.1", Port: 8000, Status: "critical"})
	sink.heldBack(t, ErrNoPassing.Error())
	noUpdate(t, sink)
	if r := k.next(t, d, emptyHold); r.Query.Has("index") {
		t.Fatalf("query %v after the hold, want a fresh read (no index)", r.Query)
	}
	if set := sink.next(t); set == nil || len(set) != 0 {
		t.Fatalf("set %v after the hold, want the empty set", set)
	}
	if r := k.next(t, d, consulGap); r.Query.Get("index") != "8" {
		t.Fatalf("query %v, want index=8 (an empty answer still moves the index)", r.Query)
	}
	d.register(up, consulInstance{Node: "n2", NodeAddr: "10.0.0.2", Port: 8000, Status: "passing"})
	if got := urls(sink.next(t)); got != "http://10.0.0.1:8000,http://10.0.0.2:8000" {
		t.Fatalf("set %s after recovery", got)
	}
}

// An index that goes backwards (a restored snapshot) resets the next
// query to a fresh, non-blocking read, as Consul's docs require; the
// query after it blocks on the new index.
func TestConsulIndexReset(t *testing.T) {
	in := consulInstance{Node: "n1", NodeAddr: "10.0.0.1", Port: 8000, Status: "passing"}
	d := newConsulDouble(t, 100, in)
	sink, k := runConsul(t, Consul{Service: "llm", Address: d.addr()})
	d.request(t)
	sink.next(t)
	if r := k.next(t, d, consulGap); r.Query.Get("index") != "100" {
		t.Fatalf("query %v", r.Query)
	}
	// The restored agent's index is 3: the query at 100 stays held (the
	// index is not past it) until its wait passes.
	d.mu.Lock()
	d.index = 3
	d.instances = append(d.instances, consulInstance{Node: "n2", NodeAddr: "10.0.0.2", Port: 8000, Status: "passing"})
	d.mu.Unlock()
	d.expire <- struct{}{}
	if got := urls(sink.next(t)); got != "http://10.0.0.1:8000,http://10.0.0.2:8000" {
		t.Fatalf("set %s", got)
	}
	if r := k.next(t, d, consulGap); r.Query.Has("index") {
		t.Fatalf("query after the index went back %v, want no index (a fresh read)", r.Query)
	}
	if r := k.next(t, d, consulGap); r.Query.Get("index") != "3" {
		t.Fatalf("query %v, want index=3", r.Query)
	}
}

// scheme https speaks TLS to the agent; http to a TLS agent fails.
func TestConsulAgentOverHTTPS(t *testing.T) {
	d := startConsulDouble(t, (*httptest.Server).StartTLS, 1,
		consulInstance{Node: "n1", NodeAddr: "10.0.0.1", Port: 8000, Status: "passing"})
	sink, _ := runConsul(t, Consul{Service: "llm", Address: d.addr(), Scheme: "https", HTTPClient: d.srv.Client()})
	if r := d.request(t); r.Path != "/v1/health/service/llm" {
		t.Fatalf("query %s", r.Path)
	}
	if got := urls(sink.next(t)); got != "http://10.0.0.1:8000" {
		t.Fatalf("set %s", got)
	}
	sink, _ = runConsul(t, Consul{Service: "llm", Address: d.addr(), Scheme: "http"})
	sink.failure(t, "consul llm")
}

func TestConsulIndexAndBackoffRules(t *testing.T) {
	for _, c := range []struct{ prev, next, want uint64 }{{0, 5, 5}, {5, 5, 5}, {5, 9, 9}, {9, 5, 0}, {0, 0, 1}} {
		if got := nextIndex(c.prev, c.next); got != c.want {
			t.Errorf("nextIndex(%d, %d) = %d, want %d", c.prev, c.next, got, c.want)
		}
	}
	for n := 1; n < 100; n++ {
		lo, hi := backoff(n, fixedJitter(0)), backoff(n, fixedJitter(0.999999))
		if lo < consulBackoffFirst/2 || hi > consulBackoffCap || lo > hi {
			t.Fatalf("failure %d: backoff %v..%v outside [%v, %v]", n, lo, hi, consulBackoffFirst/2, consulBackoffCap)
		}
	}
	if backoff(99, fixedJitter(0)) != consulBackoffCap/2 {
		t.Error("a long outage is retried at half to all of the cap")
	}
	long := shortError(consul.StatusError{Code: 500, Body: strings.Repeat("x", 10000)})
	if n := len(long.Error()); n > maxErrorText+50 || !strings.Contains(long.Error(), "500") {
		t.Errorf("an agent's long error body makes a %d-byte message: %.80s", n, long)
	}
}

// A token file is read at each query, so a rotation is picked up; an
// empty or missing file is a failure.
func TestConsulTokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	token := TokenFile(path)
	if _, err := token(); err == nil {
		t.Fatal("a missing file gave a token")
	}
	for _, s := range []string{"first\n", "second"} {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := token(); err != nil || got != strings.TrimSpace(s) {
			t.Fatalf("token %q %v", got, err)
		}
	}
	os.WriteFile(path, []byte(" \n"), 0o600)
	if _, err := token(); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty file: %v", err)
	}
}

// Addresses from the registry become URLs only when they are a bare host
// or IP: nothing in them may add a path, a user or another port.
func TestConsulInstanceAddresses(t *testing.T) {
	entry := func(node, svc string, port int) *consul.ServiceEntry {
		return &consul.ServiceEntry{Node: &consul.Node{Address: node}, Service: &consul.AgentService{Address: svc, Port: port}}
	}
	got := consulSpecs([]*consul.ServiceEntry{
		entry("10.0.0.1", "", 8000),
		entry("10.0.0.9", "fd00::1", 8000),
		entry("10.0.0.9", "gpu-1.internal", 9000),
		entry("10.0.0.1", "", 8000), // twice
		entry("10.0.0.2", "", 0),
		entry("", "", 8000),
		entry("10.0.0.3", "evil.test/path", 80),
		entry("10.0.0.3", "user@evil.test", 80),
		entry("10.0.0.3", "evil.test:81", 80),
		entry("10.0.0.3", "fe80::1%eth0", 80),
		{Node: &consul.Node{Address: "10.0.0.4"}},
		nil,
	}, Template{})
	if s := urls(got); s != "http://10.0.0.1:8000,http://[fd00::1]:8000,http://gpu-1.internal:9000" {
		t.Fatalf("set %s", s)
	}
}

// FuzzConsulSpecs: whatever an agent answers, every backend made of it
// is an http URL with exactly the host and port registered, once each.
func FuzzConsulSpecs(f *testing.F) {
	f.Add([]byte(`[{"Node":{"Address":"10.0.0.1"},"Service":{"Port":8000}}]`))
	f.Add([]byte(`[{"Node":{"Address":"x"},"Service":{"Address":"fd00::1","Port":1}},{"Service":{"Address":"a/b","Port":2}}]`))
	f.Add([]byte(`[null,{"Service":null},{"Node":null,"Service":{"Address":"h%41","Port":65536}}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var entries []*consul.ServiceEntry
		if json.Unmarshal(data, &entries) != nil {
			return
		}
		seen := map[string]bool{}
		for _, s := range consulSpecs(entries, Template{}) {
			u, err := url.Parse(s.URL)
			if err != nil || u.Scheme != "http" || u.Hostname() == "" || u.Port() == "" || u.Path != "" || u.User != nil || seen[s.URL] {
				t.Fatalf("backend URL %q from %s", s.URL, data)
			}
			seen[s.URL] = true
		}
	})
}

// An agent not listening at start (connection refused) is a failure
// retried with backoff; once it listens the set arrives. After an outage
// that changed nothing (500s, then the same instances) the unchanged set
// is reported again, so the manager sees the failure end.
func TestConsulRefusedThenRecovers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused
	sink, k := runConsul(t, Consul{Service: "llm", Address: addr, Wait: 30 * time.Second})
	sink.failure(t, "connection refused")
	if got := k.waitAsked(t); got != 375*time.Millisecond {
		t.Fatalf("retry in %v, want the first backoff step", got)
	}
	k.fire <- time.Time{}
	sink.failure(t, "connection refused")
	if got := k.waitAsked(t); got != 750*time.Millisecond {
		t.Fatalf("retry in %v, want the second backoff step", got)
	}
	up := consulInstance{Node: "n1", NodeAddr: "10.0.0.1", Port: 8000, Status: "passing"}
	d := startConsulDouble(t, func(s *httptest.Server) {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Skipf("the agent's port was taken meanwhile: %v", err)
		}
		s.Listener.Close()
		s.Listener = l
		s.Start()
	}, 7, up)
	k.fire <- time.Time{}
	d.request(t)
	if got := urls(sink.next(t)); got != "http://10.0.0.1:8000" {
		t.Fatalf("set %s", got)
	}
	k.next(t, d, consulGap)
	d.change(func() { d.down = true })
	sink.failure(t, "No cluster leader")
	d.change(func() { d.down = false })
	if r := k.next(t, d, 375*time.Millisecond); r.Query.Has("index") {
		t.Fatalf("retry %v, want a fresh read: held at the old index, the recovery would wait out the wait", r.Query)
	}
	if got := urls(sink.next(t)); got != "http://10.0.0.1:8000" {
		t.Fatalf("set after the outage %s, want the same set reported again", got)
	}
}

// A token the agent knows but that may not read the service gets an
// empty answer, not a 403 (the health API filters by ACL and says so in
// X-Consul-Results-Filtered-By-ACLs): the failure names the ACL, and the
// set is kept; with a token that may read, the instances come back.
func TestConsulFilteredByACLSaysSo(t *testing.T) {
	in := consulInstance{Node: "n1", NodeAddr: "10.0.0.1", Port: 8000, Status: "passing"}
	d := newConsulDouble(t, 5, in)
	d.token, d.unread = "reader", "no-read"
	token := "no-read"
	var mu sync.Mutex
	sink, k := runConsul(t, Consul{Service: "llm", Address: d.addr(),
		Token: func() (string, error) { mu.Lock(); defer mu.Unlock(); return token, nil }})
	d.request(t)
	err := sink.failure(t, ErrNoPassing.Error())
	if !strings.Contains(err.Error(), "ACL token") || !strings.Contains(err.Error(), "service:read") {
		t.Fatalf("failure %q does not name the ACL", err)
	}
	mu.Lock()
	token = "reader"
	mu.Unlock()
	k.next(t, d, 375*time.Millisecond)
	if got := urls(sink.next(t)); got != "http://10.0.0.1:8000" {
		t.Fatalf("set %s with a token that may read", got)
	}
	// A plain empty answer (nothing passing) does not blame the ACL.
	d.register(consulInstance{Node: "n1", NodeAddr: "10.0.0.1", Port: 8000, Status: "critical"})
	k.next(t, d, consulGap)
	if err := sink.heldBack(t, ErrNoPassing.Error()); strings.Contains(err.Error(), "ACL") {
		t.Fatalf("hold %q blames the ACL for an empty answer", err)
	}
}
