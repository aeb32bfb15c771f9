package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/sim"
	"github.com/sluice-gw/sluice/internal/testutil/benchpost"
)

// BenchmarkGatewayNonStream measures the gateway's own cost per small
// non-streaming completion: client -> gateway -> instant simulator over
// loopback, every default protection on. Compare with
// BenchmarkDirectNonStream (the same client straight to the simulator).
func BenchmarkGatewayNonStream(b *testing.B) {
	be := httptest.NewServer(sim.New(sim.Config{Model: "m1", Instant: true}))
	defer be.Close()
	cfg := testConfig(be.URL)
	srv, _ := startGateway(&testing.T{}, cfg)
	defer srv.Close()
	runClients(b, srv.URL)
}

// BenchmarkGatewayNonStreamNoReadahead is BenchmarkGatewayNonStream with
// server.response_readahead off: the read-ahead's cost is the difference.
func BenchmarkGatewayNonStreamNoReadahead(b *testing.B) {
	be := httptest.NewServer(sim.New(sim.Config{Model: "m1", Instant: true}))
	defer be.Close()
	cfg := testConfig(be.URL)
	cfg.Server.ResponseReadahead = 0
	srv, _ := startGateway(&testing.T{}, cfg)
	defer srv.Close()
	runClients(b, srv.URL)
}

// BenchmarkBareProxyNonStream is the floor for a Go proxy: the standard
// library's httputil.ReverseProxy, with Sluice's upstream transport, in
// front of the same simulator, doing nothing else.
func BenchmarkBareProxyNonStream(b *testing.B) {
	be := httptest.NewServer(sim.New(sim.Config{Model: "m1", Instant: true}))
	defer be.Close()
	u, err := url.Parse(be.URL)
	if err != nil {
		b.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = proxy.NewTransport(time.Second)
	srv := httptest.NewServer(rp)
	defer srv.Close()
	runClients(b, srv.URL)
}

func BenchmarkDirectNonStream(b *testing.B) {
	be := httptest.NewServer(sim.New(sim.Config{Model: "m1", Instant: true}))
	defer be.Close()
	runClients(b, be.URL)
}

func runClients(b *testing.B, url string) {
	benchpost.Parallel(b, url+"/v1/chat/completions", `{"model":"m1","messages":[{"role":"user","content":"hello there"}],"max_tokens":4}`, false)
}

// BenchmarkCacheHitServer is BenchmarkCacheHitHandler through real
// loopback servers and clients, as bench/cache-hit.sh runs it: the
// connection deadlines the gateway sets, and the parsing and writing of
// its headers, count here and not in the recorder harness. Compare with
// BenchmarkCacheHitFloorServer.
func BenchmarkCacheHitServer(b *testing.B) {
	be := httptest.NewServer(sim.New(sim.Config{Model: "m1", Instant: true}))
	defer be.Close()
	url, _ := startCachingGatewayCfg(&testing.T{}, testConfig(be.URL), nil, time.Now)
	// Filled through the server: the answer is cached per tenant, here
	// the loopback address's.
	resp, err := http.Post(url, "application/json", strings.NewReader(cacheHitBody))
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	benchpost.Parallel(b, url, cacheHitBody, true)
}

// BenchmarkCacheHitFloorServer is BenchmarkCacheHitFloor's bare handler
// behind the same real server and clients as BenchmarkCacheHitServer.
func BenchmarkCacheHitFloorServer(b *testing.B) {
	be := httptest.NewServer(sim.New(sim.Config{Model: "m1", Instant: true}))
	defer be.Close()
	_, gw := startCachingGatewayCfg(&testing.T{}, testConfig(be.URL), nil, time.Now)
	serveRecorded(gw, cacheHitBody)
	answer := serveRecorded(gw, cacheHitBody).Body.Bytes()
	srv := httptest.NewServer(floorHandler(answer))
	defer srv.Close()
	benchpost.Parallel(b, srv.URL+"/v1/chat/completions", cacheHitBody, true)
}

const cacheHitBody = `{"model":"m1","temperature":0,"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"hello there, what is a sluice?"}],"max_tokens":16}`

// BenchmarkCacheHitHandler is the gateway's CPU per cache hit, without the
// network: the handler chain from request id to replay. Compare with
// BenchmarkCacheHitFloor, the same harness around a bare handler.
func BenchmarkCacheHitHandler(b *testing.B) {
	be := httptest.NewServer(sim.New(sim.Config{Model: "m1", Instant: true}))
	defer be.Close()
	t := &testing.T{}
	_, gw := startCachingGatewayCfg(t, testConfig(be.URL), nil, time.Now)
	serve := func() *httptest.ResponseRecorder { return serveRecorded(gw, cacheHitBody) }
	serve()
	if w := serve(); w.Header().Get("X-Cache") != "HIT" {
		b.Fatalf("not a hit: %q", w.Header().Get("X-Cache"))
	}
	runRecorded(b, serve)
}

// BenchmarkKeyedCacheHitHandler is BenchmarkCacheHitHandler under a listed
// API key (named by its digest, no tenant configured): identify's key
// lookup and the request's tracking for a reload that removes the key.
func BenchmarkKeyedCacheHitHandler(b *testing.B) {
	be := httptest.NewServer(sim.New(sim.Config{Model: "m1", Instant: true}))
	defer be.Close()
	cfg := testConfig(be.URL)
	cfg.Auth.Keys = []config.Tenant{{Key: "sk-bench-0123456789abcdef"}}
	_, gw := startCachingGatewayCfg(&testing.T{}, cfg, nil, time.Now)
	serve := func() *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(cacheHitBody))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", "Bearer sk-bench-0123456789abcdef")
		w := httptest.NewRecorder()
		gw.ServeHTTP(w, r)
		return w
	}
	serve()
	if w := serve(); w.Header().Get("X-Cache") != "HIT" {
		b.Fatalf("not a hit: %d %q", w.Code, w.Header().Get("X-Cache"))
	}
	runRecorded(b, serve)
}

// BenchmarkCacheHitFloor is BenchmarkCacheHitHandler's harness around the
// least a Go handler does for the same request (bench/cache-hit.sh's
// floor: read the body, set the headers of a hit, write the cached
// answer): the difference is the gateway's own work per hit.
func BenchmarkCacheHitFloor(b *testing.B) {
	be := httptest.NewServer(sim.New(sim.Config{Model: "m1", Instant: true}))
	defer be.Close()
	_, gw := startCachingGatewayCfg(&testing.T{}, testConfig(be.URL), nil, time.Now)
	serveRecorded(gw, cacheHitBody)
	hit := serveRecorded(gw, cacheHitBody)
	floor := floorHandler(hit.Body.Bytes())
	if want, got := headerNames(hit.Header()), headerNames(serveRecorded(floor, cacheHitBody).Header()); want != got {
		b.Fatalf("the floor's header names %q, a hit's %q", got, want)
	}
	runRecorded(b, func() *httptest.ResponseRecorder { return serveRecorded(floor, cacheHitBody) })
}

// floorHandler is bench/cache-hit.sh's bare Go handler: read the body,
// set the headers of a hit, write the cached answer.
func floorHandler(answer []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		h := w.Header()
		h.Set("X-Request-Id", "0123456789abcdef0123456789abcdef")
		h.Set("Content-Type", "application/json")
		h.Set("X-Cache", "HIT")
		h.Set("Age", "1")
		h.Set("Cache-Control", "private, max-age=300")
		h.Set("X-Sluice-Model", "m1") // testConfig's model: hits name theirs
		w.Write(answer)
	})
}

// headerNames is h's names but Date and Content-Length (net/http writes
// them when the handler does not), sorted: a floor's answer must carry a
// hit's (bench/cache-hit.sh checks the same on the wire).
func headerNames(h http.Header) string {
	var names []string
	for k := range h {
		if k != "Date" && k != "Content-Length" {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	return strings.Join(names, " ")
}

// serveRecorded serves one completion request to h, answered to a recorder.
func serveRecorded(h http.Handler, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func runRecorded(b *testing.B, serve func() *httptest.ResponseRecorder) {
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			serve()
		}
	})
}

// BenchmarkProxiedHandler is the gateway's CPU and allocations per proxied
// (uncached) completion through the real handler and the real upstream
// transport to an instant simulator over loopback; only the client side
// is a recorder. Every default protection is on.
func BenchmarkProxiedHandler(b *testing.B) {
	be := httptest.NewServer(sim.New(sim.Config{Model: "m1", Instant: true}))
	defer be.Close()
	_, gw := startGateway(&testing.T{}, testConfig(be.URL))
	body := `{"model":"m1","messages":[{"role":"user","content":"hello there"}],"max_tokens":4}`
	serve := func() *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		gw.ServeHTTP(w, r)
		return w
	}
	if w := serve(); w.Code != http.StatusOK {
		b.Fatalf("status %d: %s", w.Code, w.Body)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if w := serve(); w.Code != http.StatusOK {
			b.Fatalf("status %d", w.Code)
		}
	}
}
