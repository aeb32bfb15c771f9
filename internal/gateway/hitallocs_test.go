package gateway

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/netguard"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/sim"
)

// rewoundBody is a request body read again from its start on each request
// (reset), so a request value serves many times without an allocation.
type rewoundBody struct{ bytes.Reader }

func (*rewoundBody) Close() error { return nil }

// keptWriter is a ResponseWriter whose header map and body buffer are
// reused from one request to the next (reset).
type keptWriter struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func (w *keptWriter) Header() http.Header { return w.h }
func (w *keptWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *keptWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(p)
}
func (w *keptWriter) reset() { clear(w.h); w.code = 0; w.body.Reset() }

// hitConn serves requests as one HTTP/1.x connection's, as netguard.Guard
// passes them on (the body in, the connection's memo and spare slot),
// with a request value and writer reused, so that what a hit allocates is
// the gateway's alone.
type hitConn struct {
	gw    *Gateway
	spare any
	memo  atomic.Value
	body  rewoundBody
	r     *http.Request
	w     keptWriter
}

func newHitConn(gw *Gateway) *hitConn {
	c := &hitConn{gw: gw, w: keptWriter{h: make(http.Header)}}
	c.r = httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	c.r.Header.Set("Content-Type", "application/json")
	c.r.Body = &c.body
	return c
}

func (c *hitConn) serve(body []byte) *keptWriter {
	c.body.Reset(body)
	c.r.ContentLength = int64(len(body))
	c.w.reset()
	c.gw.ServeFramed(&c.w, c.r, netguard.Arrival{BodyReceived: true, Memo: &c.memo, Spare: &c.spare})
	return &c.w
}

// TestCacheHitAllocatesNothingOfItsOwn: a cache hit on a kept connection
// (its guarded, exchange and request id block kept: connkeep_test.go)
// allocates nothing in the gateway but a block of request ids every 16
// requests: its body is read into the Body its connection's last request
// released (proxy.BodyPool.ReadBodyReusing). Before, each hit allocated a
// proxy.Body. Each answer is still its own request's: two cached bodies
// alternate on the connection.
func TestCacheHitAllocatesNothingOfItsOwn(t *testing.T) {
	be := newOKBackend(t)
	_, gw := startCachingGatewayCfg(t, testConfig(be.URL), nil, time.Now)
	// The pooled path, as a server (and the benchmarks) run it: the tests'
	// pool poisons released bodies and so reuses none (helpers_test.go).
	gw.bodies = proxy.NewBodyPool(gw.bodyMem)
	c := newHitConn(gw)
	hit := []byte(cacheHitBody)
	other := []byte(strings.Replace(cacheHitBody, "what is a sluice?", "what is a weir?", 1))
	answers := map[*byte]string{}
	for _, b := range [][]byte{hit, other} {
		w := c.serve(b)
		if w.code != http.StatusOK || w.h.Get("X-Cache") != "MISS" {
			t.Fatalf("filling: status %d, X-Cache %q: %s", w.code, w.h.Get("X-Cache"), w.body.String())
		}
		answers[&b[0]] = w.body.String()
	}
	for i := range 6 {
		b := [][]byte{hit, other}[i%2]
		w := c.serve(b)
		if w.code != http.StatusOK || w.h.Get("X-Cache") != "HIT" || w.body.String() != answers[&b[0]] {
			t.Fatalf("hit %d: status %d, X-Cache %q, answer %q, want %q", i, w.code, w.h.Get("X-Cache"), w.body.String(), answers[&b[0]])
		}
	}
	allocs := testing.AllocsPerRun(160, func() { c.serve(hit) })
	if allocs > 0 {
		t.Fatalf("a cache hit allocates %.0f objects in the gateway, want 0 (one block of 16 request ids every 16 hits rounds to 0)", allocs)
	}
	if w := c.serve(hit); w.h.Get("X-Cache") != "HIT" || w.body.String() != answers[&hit[0]] {
		t.Fatalf("after the count: X-Cache %q", w.h.Get("X-Cache"))
	}
}

// BenchmarkCacheHitConn is a cache hit as a kept HTTP/1.x connection's
// request reaches the gateway from netguard.Guard (hitConn), without the
// network, the recorder or a new request value per hit: the gateway's own
// work per hit, for bench/callgrind-ops.sh's instruction counts.
func BenchmarkCacheHitConn(b *testing.B) {
	be := httptest.NewServer(sim.New(sim.Config{Model: "m1", Instant: true}))
	defer be.Close()
	_, gw := startCachingGatewayCfg(&testing.T{}, testConfig(be.URL), nil, time.Now)
	c := newHitConn(gw)
	hit := []byte(cacheHitBody)
	c.serve(hit)
	if w := c.serve(hit); w.h.Get("X-Cache") != "HIT" {
		b.Fatalf("not a hit: %d %q", w.code, w.h.Get("X-Cache"))
	}
	b.ReportAllocs()
	for b.Loop() {
		c.serve(hit)
	}
}
