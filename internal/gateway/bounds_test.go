package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/cache"
	"github.com/sluice-gw/sluice/internal/config"
)

// bigBackend answers every request with the same large JSON completion,
// written in 32KiB pieces at whatever pace the gateway reads them. When
// release is set it waits for it before answering. ended receives whether
// the gateway cancelled the call, once per call.
type bigBackend struct {
	body    []byte
	release chan struct{}
	calls   atomic.Int32
	ended   chan bool
}

func newBigBackend(t *testing.T, size int, gated bool) (*bigBackend, string) {
	content := strings.Repeat("sluice ", size/7)
	b := &bigBackend{ended: make(chan bool, 16),
		body: fmt.Appendf(nil, `{"id":"big","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"stop"}]}`, content)}
	if gated {
		b.release = make(chan struct{})
	}
	return b, httptestServer(t, b)
}

func (b *bigBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.calls.Add(1)
	io.Copy(io.Discard, r.Body)
	cancelled := false
	defer func() { b.ended <- cancelled }()
	if b.release != nil {
		select {
		case <-b.release:
		case <-r.Context().Done():
			cancelled = true
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	for rest := b.body; len(rest) > 0; {
		n := min(32<<10, len(rest))
		if _, err := w.Write(rest[:n]); err != nil {
			cancelled = true
			return
		}
		rest = rest[n:]
	}
}

// stalledClient sends body to url with a small receive buffer and returns
// the response once its head arrived, without reading the body: the
// gateway's writes to it block once the kernel buffers are full.
func stalledClient(t *testing.T, url, body string) (*http.Response, error) {
	t.Helper()
	tr := &http.Transport{DisableCompression: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			c.(*net.TCPConn).SetReadBuffer(4 << 10)
		}
		return c, err
	}}
	t.Cleanup(tr.CloseIdleConnections)
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return (&http.Client{Transport: tr}).Do(req)
}

// boundsGateway is a caching gateway in front of beURL whose cache and
// buffer metrics are registered on the returned registry.
func boundsGateway(t *testing.T, cfg *config.Config) (string, *Gateway, *prometheus.Registry) {
	t.Helper()
	var reg *prometheus.Registry
	url, gw := startCachingGatewayCfg(t, cfg, nil, time.Now, func(d *Deps) {
		reg = d.Registry.(*prometheus.Registry)
		m, err := cache.NewMetrics(reg)
		if err != nil {
			t.Fatal(err)
		}
		d.CacheMetrics = m
	})
	return url, gw, reg
}

// eventually polls cond until it holds or a generous bound passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const maxEntry = 64 << 10

func TestCoalescedLargeAnswersKeepTheFlightBufferBounded(t *testing.T) {
	be, beURL := newBigBackend(t, 8<<20, true)
	cfg := testConfig(beURL)
	cfg.Cache.MaxEntry = maxEntry
	url, gw, reg := boundsGateway(t, cfg)

	const n = 8
	var wg sync.WaitGroup
	xcache := make(chan string, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp := post(t, url, fmt.Sprintf(detBody, ""))
			body := readAll(t, resp)
			if resp.StatusCode != 200 || !bytes.Equal([]byte(body), be.body) {
				t.Errorf("status %d, body of %d bytes, want the backend's %d", resp.StatusCode, len(body), len(be.body))
			}
			xcache <- resp.Header.Get("X-Cache")
		}()
	}
	waitFlight(t, gw, n)
	close(be.release)
	wg.Wait()
	close(xcache)
	counts := map[string]int{}
	for x := range xcache {
		counts[x]++
	}
	if counts["MISS"] != 1 || counts["COALESCED"] != n-1 || be.calls.Load() != 1 {
		t.Fatalf("X-Cache %v, backend calls %d: want one call shared by %d clients", counts, be.calls.Load(), n)
	}
	fs := gw.Runtime().flights
	if peak := fs.peak.Load(); peak <= 0 || peak > maxEntry {
		t.Fatalf("a flight held %d bytes at its peak, bound %d", peak, maxEntry)
	}
	eventually(t, "the flight's buffer released", func() bool { return fs.held.Load() == 0 })
	if g := metricValue(t, reg, "sluice_response_buffered_bytes", "kind", "flight"); g != 0 {
		t.Fatalf("flight gauge %v after the flight ended", g)
	}
	if a := metricValue(t, reg, "sluice_cache_captures_abandoned_total"); a != 1 {
		t.Fatalf("captures abandoned %v, want 1", a)
	}
	// Too large to cache: the next identical request goes upstream again.
	resp := post(t, url, fmt.Sprintf(detBody, ""))
	if readAll(t, resp); resp.Header.Get("X-Cache") != "MISS" {
		t.Fatalf("an answer over max_entry was cached: X-Cache %q", resp.Header.Get("X-Cache"))
	}
}

func TestStalledFlightClientIsCutWhileTheOtherCompletes(t *testing.T) {
	be, beURL := newBigBackend(t, 24<<20, true)
	cfg := testConfig(beURL)
	cfg.Cache.MaxEntry = maxEntry
	// The send timeout is also the lag a coalescing flight grants a slow
	// follower, and the reading client is one: the bound must outlast any
	// pause a loaded machine gives that client's goroutine (300ms did not;
	// 3s is within reach of a starved -race run), while the stalled one is
	// cut after it, so the test lasts this long.
	cfg.Server.SendTimeout = config.Duration(10 * time.Second)
	url, gw, reg := boundsGateway(t, cfg)
	body := fmt.Sprintf(detBody, "")

	stalled := make(chan *http.Response, 1)
	go func() {
		resp, err := stalledClient(t, url, body)
		if err != nil {
			t.Error(err)
			close(stalled)
			return
		}
		stalled <- resp
	}()
	waitFlight(t, gw, 1)
	// The reader always answers on its channel: a t.Fatal in its
	// goroutine would leave the test waiting on it for good.
	type answer struct {
		body string
		err  error
	}
	reader := make(chan answer, 1)
	go func() {
		resp, err := http.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			reader <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		reader <- answer{string(b), err}
	}()
	waitFlight(t, gw, 2)
	close(be.release)

	if got := <-reader; got.err != nil || got.body != string(be.body) {
		t.Fatalf("the reading client got %d bytes (%v), want %d", len(got.body), got.err, len(be.body))
	}
	if cancelled := <-be.ended; cancelled {
		t.Fatal("the upstream call was cancelled although a client still read it")
	}
	if resp := <-stalled; resp != nil {
		resp.Body.Close() // unread: with its tiny window, draining what the kernels hold would take long
	}
	backend := gw.Runtime().Pools["m1"].Backends[0]
	eventually(t, "the backend slot released", func() bool { return backend.Inflight() == 0 })
	cut := metricValue(t, reg, "sluice_cache_followers_detached_total") + metricValue(t, reg, "sluice_send_timeouts_total")
	if cut < 1 {
		t.Fatal("the stalled client was neither detached nor cut for the send timeout")
	}
	if peak := gw.Runtime().flights.peak.Load(); peak > maxEntry {
		t.Fatalf("the flight held %d bytes, bound %d", peak, maxEntry)
	}
}

func TestSendTimeoutCutsAStalledClientAndReleasesItsBackend(t *testing.T) {
	be, beURL := newBigBackend(t, 24<<20, false)
	cfg := testConfig(beURL)
	cfg.Server.SendTimeout = config.Duration(300 * time.Millisecond)
	url, gw, reg := boundsGateway(t, cfg)

	sampled := `{"model":"m1","temperature":0.9,"messages":[{"role":"user","content":"x"}]}` // not cached, not coalesced
	resp, err := stalledClient(t, url, sampled)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if cancelled := <-be.ended; !cancelled {
		t.Fatal("the backend wrote its whole answer to a client that reads nothing")
	}
	backend := gw.Runtime().Pools["m1"].Backends[0]
	eventually(t, "the backend slot released", func() bool { return backend.Inflight() == 0 })
	if n := metricValue(t, reg, "sluice_send_timeouts_total"); n != 1 {
		t.Fatalf("send timeouts %v, want 1", n)
	}

}

func TestLeaderWantingTheOtherShapeOfALargeAnswerIsServedAlone(t *testing.T) {
	// Over the flight's bound, under the relay's (maxCheckedAnswer).
	be, beURL := newBigBackend(t, 128<<10, false)
	cfg := testConfig(beURL)
	cfg.Cache.MaxEntry = maxEntry
	url, _, _ := boundsGateway(t, cfg)

	// A stream request answered with JSON too large to hold for conversion:
	// the flight cannot serve it, so it sends its own request, whose relay
	// converts the answer it holds whole (proxy shape.go) into the stream
	// asked for.
	resp := post(t, url, fmt.Sprintf(detBody, `,"stream":true`))
	if body := readAll(t, resp); resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") ||
		!strings.HasSuffix(body, "data: [DONE]\n\n") || len(body) < len(be.body) {
		t.Fatalf("status %d %q, %d bytes, want the backend's %d as a stream", resp.StatusCode, resp.Header.Get("Content-Type"), len(body), len(be.body))
	}
	if n := be.calls.Load(); n != 2 {
		t.Fatalf("backend calls %d, want 2 (the flight's and the leader's own)", n)
	}
}
