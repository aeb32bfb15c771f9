package app

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluice-gw/sluice/internal/testutil/redistest"
)

// countingBackend answers every request with the same completion and
// counts the inference calls (under /v1/): the active health check's GET
// /health and the gateway's scrapes of /metrics (load_metrics, on by
// default) are not what the tests count.
func countingBackend(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var calls atomic.Int32
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/health" {
			io.WriteString(w, "ok")
			return
		}
		if strings.HasPrefix(r.URL.Path, "/v1/") {
			calls.Add(1)
		}
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	}))
	t.Cleanup(s.Close)
	return s, &calls
}

func writeCacheConfig(t *testing.T, backend, redisAddr string) string {
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	// A generous Redis timeout: these tests are about what is shared, and
	// the 50 ms default (first dial and cluster topology included) can pass
	// on a loaded machine, which fails open to a MISS. No probes: a
	// starved one takes the backend down (noProbes).
	src := fmt.Sprintf("listen: 127.0.0.1:0\nlog: {access: false}\nqueue: {enabled: false}\n"+noProbes+"cache:\n  redis:\n    addrs: [%s]\n    timeout: 10s\nmodels:\n  - name: m\n    backends:\n      - url: %s\n",
		redisAddr, backend)
	writeFile(t, path, src)
	return path
}

func detChat(t *testing.T, url string) (xcache string) {
	t.Helper()
	resp, err := http.Post(url+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"m","temperature":0,"messages":[{"role":"user","content":"shared"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d Retry-After=%q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	return resp.Header.Get("X-Cache")
}

// metric reads name's samples from the admin listener's /metrics.
func metric(t *testing.T, url, name string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// Two gateways share answers through Redis: the second one's first request
// is a hit without a backend call.
func TestRedisCacheSharedAcrossGateways(t *testing.T) {
	redis := redistest.Start(t)
	testSharedL2(t, redis.Addr, []*redistest.Server{redis})
}

// The same on a 3-master Redis Cluster (rueidis' client-side caching works
// there too).
func TestRedisClusterCacheSharedAcrossGateways(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	testSharedL2(t, strings.Join(c.Addrs, ", "), c.Servers)
}

func testSharedL2(t *testing.T, addrs string, servers []*redistest.Server) {
	be, calls := countingBackend(t)
	path := writeCacheConfig(t, be.URL, addrs)
	a, b := newApp(t, path), newApp(t, path)
	urlA, _, stopA, doneA := runApp(t, a)
	defer func() { stopA(); <-doneA }()
	urlB, adminB, stopB, doneB := runApp(t, b)
	defer func() { stopB(); <-doneB }()
	// The Responses ids' writer dials the one client at start; a cache
	// read or write finding that dial under way skips Redis (fails open)
	// rather than wait for it, which on a Cluster can take a while.
	eventually(t, "both gateways connected to Redis", func() bool { return a.deps.Redis.Open() == 1 && b.deps.Redis.Open() == 1 })

	if x := detChat(t, urlA); x != "MISS" {
		t.Fatalf("A first: %s", x)
	}
	// A stores the answer after its client has it: wait until Redis holds
	// it (a key on some master) before B asks.
	eventually(t, "A's answer stored in Redis", func() bool {
		for _, s := range servers {
			if n, err := s.Do("DBSIZE"); err == nil && n != "0" && n != ":0" {
				return true
			}
		}
		return false
	})
	if x := detChat(t, urlB); x != "HIT" {
		t.Fatalf("B first: X-Cache %s, want HIT from the shared level", x)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("backend calls %d, want 1", n)
	}
	if m := metric(t, adminB, `sluice_cache_lookups_total{level="l2",result="hit"}`); !strings.HasSuffix(m, " 1") {
		t.Fatalf("l2 hit metric: %q", m)
	}
}

// With Redis down the gateway starts and serves (the cache fails open, from
// L1 and upstream), counting the Redis errors; it uses Redis once it is up.
func TestRedisCacheFailsOpen(t *testing.T) {
	redis := redistest.Start(t)
	redis.Stop()
	be, calls := countingBackend(t)
	url, admin, stop, done := startAppAdmin(t, writeCacheConfig(t, be.URL, redis.Addr))
	defer func() { stop(); <-done }()

	if x := detChat(t, url); x != "MISS" {
		t.Fatalf("first: %s", x)
	}
	if x := detChat(t, url); x != "HIT" { // from L1
		t.Fatalf("second: %s", x)
	}
	if calls.Load() != 1 {
		t.Fatalf("backend calls %d", calls.Load())
	}
	if m := metric(t, admin, `sluice_cache_redis_errors_total{op="get"}`); m == "" || strings.HasSuffix(m, " 0") {
		t.Fatalf("redis errors not counted: %q", m)
	}
}

func httptestServerFunc(t *testing.T, f http.HandlerFunc) string {
	s := httptest.NewServer(f)
	t.Cleanup(s.Close)
	return s.URL
}

// TestRequestMemoMetrics: the request memo's bound, fill and evictions are
// on /metrics (every bounded store has a metric), and a cached request's
// body is the one it keeps.
func TestRequestMemoMetrics(t *testing.T) {
	be, _ := countingBackend(t)
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := fmt.Sprintf("listen: 127.0.0.1:0\nlog: {access: false}\nqueue: {enabled: false}\nmodels:\n  - name: m\n    backends:\n      - url: %s\n", be.URL)
	writeFile(t, path, src)
	url, admin, stop, done := startAppAdmin(t, path)
	defer func() { stop(); <-done }()

	if m := metric(t, admin, "sluice_request_memo_bodies "); m != "sluice_request_memo_bodies 0" {
		t.Fatalf("before any request: %q", m)
	}
	for _, want := range []string{"MISS", "HIT"} {
		if x := detChat(t, url); x != want {
			t.Fatalf("X-Cache %s, want %s", x, want)
		}
	}
	for name, want := range map[string]string{
		"sluice_request_memo_bodies":          "1",
		"sluice_request_memo_capacity":        fmt.Sprint(requestMemoBodies),
		"sluice_request_memo_evictions_total": "0",
	} {
		if m := metric(t, admin, name+" "); m != name+" "+want {
			t.Errorf("%q, want %s", m, want)
		}
	}
}
