package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/cache"
	"github.com/sluice-gw/sluice/internal/config"
)

// gatedStream is a backend that answers every request with a three-event
// SSE stream, sending the first event at once and the rest only when
// release is closed. It counts calls and cancellations it observed.
type gatedStream struct {
	calls, cancelled atomic.Int32
	release          chan struct{}
}

func (g *gatedStream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.calls.Add(1)
	w.Header().Set("Content-Type", "text/event-stream")
	chunk := func(s string) {
		fmt.Fprintf(w, "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":%q},\"finish_reason\":null}]}\n\n", s)
		w.(http.Flusher).Flush()
	}
	chunk("one ")
	select {
	case <-g.release:
	case <-r.Context().Done():
		g.cancelled.Add(1)
		return
	}
	chunk("two")
	fmt.Fprint(w, "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
}

func startCachingGatewayCfg(t *testing.T, cfg *config.Config, l2 cache.Level, now func() time.Time, edit ...func(*Deps)) (string, *Gateway) {
	t.Helper()
	tiered := newTestTiered(t, cache.TieredOptions{L2: l2, Jitter: -1})
	memo, err := cache.NewMemo(1000)
	if err != nil {
		t.Fatal(err)
	}
	srv, gw := startGatewayWith(t, cfg, func(d *Deps) {
		d.Cache, d.Now, d.CacheMemo = tiered, now, memo
		for _, e := range edit {
			e(d)
		}
	})
	return srv.URL + "/v1/chat/completions", gw
}

// waitFlight waits until the flight for some key has n waiters.
func waitFlight(t *testing.T, gw *Gateway, n int) {
	t.Helper()
	waitFlightWaiters(t, gw, fmt.Sprintf("a flight with %d waiters", n), func(got []int) bool { return slices.Contains(got, n) })
}

// waitFlightWaiters waits until the waiter counts of the flights in
// progress (sorted, one a flight) satisfy done; want says what done looks
// for, in the failure message.
func waitFlightWaiters(t *testing.T, gw *Gateway, want string, done func(waiters []int) bool) {
	t.Helper()
	fs := gw.Runtime().flights
	// A hang guard: 40 clients through the race detector took past 30 s
	// to join their flights on a starved machine (flakes11).
	deadline := time.Now().Add(2 * time.Minute)
	for {
		fs.mu.Lock()
		var got []int
		for _, f := range fs.m {
			got = append(got, f.waiters)
		}
		fs.mu.Unlock()
		slices.Sort(got)
		if done(got) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("flights have %v waiters, want %s", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const detBody = `{"model":"m1","temperature":0,"messages":[{"role":"user","content":"hi"}]%s}`

func TestCoalescingOneUpstreamCallStreamsToFollowers(t *testing.T) {
	be := &gatedStream{release: make(chan struct{})}
	srv := httptestServer(t, be)
	url, gw := startCachingGatewayCfg(t, testConfig(srv), nil, time.Now)
	openAtCleanup(t, be.release)

	const n = 40
	type answer struct {
		xcache, body string
		status       int
	}
	answers := make(chan answer, n)
	firstEvent := make(chan struct{}, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			extra := ""
			if i%2 == 0 {
				extra = `,"stream":true`
			}
			resp := post(t, url, fmt.Sprintf(detBody, extra))
			defer resp.Body.Close()
			var sb strings.Builder
			rd := bufio.NewReader(resp.Body)
			if i%2 == 0 { // streaming: the first event arrives before the backend finishes
				line, err := rd.ReadString('\n')
				if err != nil || !strings.Contains(line, "one ") {
					t.Errorf("stream follower's first line %q: %v", line, err)
				}
				sb.WriteString(line)
				firstEvent <- struct{}{}
			}
			rest := readAll(t, &http.Response{Body: readCloser{rd}})
			sb.WriteString(rest)
			answers <- answer{resp.Header.Get("X-Cache"), sb.String(), resp.StatusCode}
		}()
	}
	waitFlights(t, gw, n/2, n/2)
	for range n / 2 {
		select {
		case <-firstEvent:
		case <-time.After(time.Minute): // a hang guard, not the measure of "while running"
			t.Fatal("streaming followers did not get the first event while the backend was still running")
		}
	}
	close(be.release)
	wg.Wait()
	close(answers)

	counts := map[string]int{}
	for a := range answers {
		counts[a.xcache]++
		if a.status != 200 || !strings.Contains(a.body, "two") {
			t.Errorf("answer %d %q: %q", a.status, a.xcache, a.body)
		}
	}
	// Streams without usage share one call, the requests that want usage
	// (here JSON) another (upstreamCall.flightKey).
	if got := be.calls.Load(); got != 2 {
		t.Fatalf("backend calls %d, want exactly 2 for %d identical requests, half of them streams without usage", got, n)
	}
	if counts["MISS"] != 2 || counts["COALESCED"] != n-2 {
		t.Fatalf("X-Cache counts %v, want 2 MISS and %d COALESCED", counts, n-2)
	}
	// The shared answer was stored: the next one is a hit (a stream
	// without usage: this backend's stream reports none, so a JSON request
	// would miss, lacksUsage).
	resp := post(t, url, fmt.Sprintf(detBody, `,"stream":true`))
	if body := readAll(t, resp); resp.Header.Get("X-Cache") != "HIT" || !strings.Contains(body, `"one "`) || !strings.Contains(body, `"two"`) {
		t.Fatalf("after: X-Cache %q body %s", resp.Header.Get("X-Cache"), body)
	}
}

// waitFlights waits until the flights in progress have the given numbers
// of waiters, in any order.
func waitFlights(t *testing.T, gw *Gateway, want ...int) {
	t.Helper()
	waitFlightWaiters(t, gw, fmt.Sprint(want), func(got []int) bool { return slices.Equal(got, want) })
}

func TestCoalescingSurvivesDisconnects(t *testing.T) {
	be := &gatedStream{release: make(chan struct{})}
	srv := httptestServer(t, be)
	url, gw := startCachingGatewayCfg(t, testConfig(srv), nil, time.Now)
	openAtCleanup(t, be.release)
	body := fmt.Sprintf(detBody, `,"stream":true`)

	send := func(ctx context.Context) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		return http.DefaultClient.Do(req)
	}
	leaderCtx, leaveLeader := context.WithCancel(context.Background())
	lead, err := send(leaderCtx)
	if err != nil {
		t.Fatal(err)
	}
	waitFlight(t, gw, 1)
	followerCtx, leaveFollower := context.WithCancel(context.Background())
	var got string
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := send(context.Background())
		if err != nil {
			t.Error(err)
			return
		}
		got = readAll(t, resp)
	}()
	quitter, err := send(followerCtx)
	if err != nil {
		t.Fatal(err)
	}
	waitFlight(t, gw, 3)
	// A follower and then the leader itself leave; one client still waits.
	leaveFollower()
	quitter.Body.Close()
	waitFlight(t, gw, 2)
	leaveLeader()
	lead.Body.Close()
	waitFlight(t, gw, 1)
	close(be.release)
	<-done
	if be.cancelled.Load() != 0 || be.calls.Load() != 1 {
		t.Fatalf("backend calls %d cancelled %d: the upstream call must go on for the remaining client", be.calls.Load(), be.cancelled.Load())
	}
	if !strings.HasSuffix(got, "data: [DONE]\n\n") || !strings.Contains(got, "two") {
		t.Fatalf("remaining client got %q", got)
	}
}

func TestCoalescedCallCancelledWhenEveryoneLeaves(t *testing.T) {
	be := &gatedStream{release: make(chan struct{})}
	defer close(be.release)
	srv := httptestServer(t, be)
	url, gw := startCachingGatewayCfg(t, testConfig(srv), nil, time.Now)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(fmt.Sprintf(detBody, `,"stream":true`)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	waitFlight(t, gw, 1)
	cancel()
	resp.Body.Close()
	deadline := time.Now().Add(30 * time.Second)
	for be.cancelled.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the upstream call was not cancelled after its last client left")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startSWRGateway is a caching gateway in front of backendURL whose
// answers are fresh for a minute and served stale for an hour, on a clock
// the test moves (clock: unix nanoseconds).
func startSWRGateway(t *testing.T, backendURL string) (url string, gw *Gateway, clock *atomic.Int64) {
	t.Helper()
	cfg := testConfig(backendURL)
	cfg.Cache.TTL = config.Duration(time.Minute)
	cfg.Cache.StaleWhileRevalidate = config.Duration(time.Hour)
	clock = new(atomic.Int64)
	clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	url, gw = startCachingGatewayCfg(t, cfg, nil, now)
	return url, gw, clock
}

func TestStaleWhileRevalidate(t *testing.T) {
	ok := newOKBackend(t)
	url, _, clock := startSWRGateway(t, ok.URL)
	body := fmt.Sprintf(detBody, "")

	xcache := func() string {
		resp := post(t, url, body)
		readAll(t, resp)
		return resp.Header.Get("X-Cache")
	}
	if x := xcache(); x != "MISS" {
		t.Fatalf("first: %s", x)
	}
	if x := xcache(); x != "HIT" {
		t.Fatalf("fresh: %s", x)
	}
	clock.Add(int64(2 * time.Minute)) // past the TTL, within the stale window
	if x := xcache(); x != "STALE" {
		t.Fatalf("stale: %s", x)
	}
	deadline := time.Now().Add(30 * time.Second)
	for ok.calls.Load() != 2 { // the one background refresh
		if time.Now().After(deadline) {
			t.Fatalf("backend calls %d, want 2 (a background refresh)", ok.calls.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	deadline = time.Now().Add(30 * time.Second)
	for xcache() != "HIT" {
		if time.Now().After(deadline) {
			t.Fatal("the refreshed entry is not served fresh")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := ok.calls.Load(); n != 2 {
		t.Fatalf("backend calls %d, want 2", n)
	}
}

// A request that read the entry stale, then found no refresh in flight,
// starts none if one ended in between: that refresh stored the key fresh
// before it left the flight table. (TestStaleWhileRevalidate saw a third
// backend call about once in 150 runs: the request's lookup came before
// the refresh's fill, its check for a flight after the flight had gone.)
// The request's two steps are taken apart here: the refresh is held at
// the backend to read its key, then revalidate is called for that key
// once the refresh has landed (without the check it goes on to start a
// refresh, which this bare call, with no body, cannot).
func TestRevalidateSkipsAKeyJustRefreshed(t *testing.T) {
	var calls atomic.Int32
	hold := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if calls.Add(1) == 2 {
			<-hold // the refresh
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`)
	}))
	t.Cleanup(backend.Close)
	url, gw, clock := startSWRGateway(t, backend.URL)
	body := fmt.Sprintf(detBody, "")
	for _, want := range []string{"MISS", "STALE"} {
		resp := post(t, url, body)
		readAll(t, resp)
		if x := resp.Header.Get("X-Cache"); x != want {
			t.Fatalf("X-Cache %s, want %s", x, want)
		}
		clock.Add(int64(2 * time.Minute)) // past the TTL, within the stale window
	}
	clock.Add(-int64(2 * time.Minute)) // the refresh's own time
	fs := gw.Runtime().flights
	var key string
	for deadline := time.Now().Add(30 * time.Second); key == ""; {
		fs.mu.Lock()
		for k := range fs.m {
			key = k
		}
		fs.mu.Unlock()
		if key == "" && time.Now().After(deadline) {
			t.Fatal("no refresh in flight")
		}
		time.Sleep(time.Millisecond)
	}
	close(hold)
	for deadline := time.Now().Add(30 * time.Second); fs.inFlight(key); {
		if time.Now().After(deadline) {
			t.Fatal("the refresh did not end")
		}
		time.Sleep(time.Millisecond)
	}
	rt := gw.Runtime()
	gw.revalidate(t.Context(), rt, rt.Pools["m1"], &upstreamCall{plan: cachePlan{key: key}})
	if fs.inFlight(key) || calls.Load() != 2 {
		t.Fatalf("a second refresh of a fresh key: in flight %v, backend calls %d", fs.inFlight(key), calls.Load())
	}
	resp := post(t, url, body)
	readAll(t, resp)
	if x := resp.Header.Get("X-Cache"); x != "HIT" {
		t.Fatalf("after the refresh: X-Cache %s, want HIT", x)
	}
}

func TestCacheRules(t *testing.T) {
	ok := newOKBackend(t)
	cfg := testConfig(ok.URL)
	cfg.Auth.Keys = []config.Tenant{{Key: "k-never", Tenant: "t1"}, {Key: "k-all", Tenant: "t2"}}
	cfg.Cache.Rules = []config.CacheRule{
		{Keys: []string{"k-never"}, Mode: config.CacheBypass},
		{Tenants: []string{"t2"}, Models: []string{"m*"}, Mode: config.CacheAlways},
	}
	url, _ := startCachingGatewayCfg(t, cfg, nil, time.Now)
	det := fmt.Sprintf(detBody, "")
	random := `{"model":"m1","temperature":0.9,"messages":[{"role":"user","content":"hi"}]}`
	for i, c := range []struct{ key, body, want string }{
		{"k-never", det, "BYPASS"}, {"k-never", det, "BYPASS"}, // forced off
		{"k-all", random, "MISS"}, {"k-all", random, "HIT"}, // forced on
		{"", det, "MISS"}, {"", det, "HIT"}, // anonymous, default: deterministic only
		{"", random, "BYPASS"},
	} {
		var hdr []string
		if c.key != "" {
			hdr = []string{"Authorization", "Bearer " + c.key}
		}
		resp := post(t, url, c.body, hdr...)
		readAll(t, resp)
		if got := resp.Header.Get("X-Cache"); got != c.want {
			t.Fatalf("case %d (%s): X-Cache %q, want %s", i, c.key, got, c.want)
		}
	}
}

func TestSpareCapacityForWorkers(t *testing.T) {
	be := &gatedStream{release: make(chan struct{})}
	cfg := testConfig(httptestServer(t, be))
	cfg.Models[0].Backends[0].MaxConcurrency = 1
	srv, gw := startGateway(t, cfg)
	openAtCleanup(t, be.release)
	admin := adminServer(t, gw)
	spare := func() int {
		resp, err := http.Get(admin.URL + "/spare?model=m1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := spare(); c != 200 {
		t.Fatalf("idle pool: /spare %d", c)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		readAll(t, post(t, srv.URL+"/v1/chat/completions", `{"model":"m1","stream":true,"messages":[]}`))
	}()
	deadline := time.Now().Add(30 * time.Second)
	for spare() != http.StatusTooManyRequests {
		if time.Now().After(deadline) {
			t.Fatal("/spare still 200 with the only slot taken")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(be.release)
	<-done
	deadline = time.Now().Add(30 * time.Second)
	for spare() != 200 {
		if time.Now().After(deadline) {
			t.Fatal("/spare not 200 after the slot freed")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// newTestTiered is a 1 MiB in-memory L1 under opts (its L1 and Rand are
// filled in), closed when the test ends.
func newTestTiered(t *testing.T, opts cache.TieredOptions) *cache.Tiered {
	t.Helper()
	mem, err := cache.NewMemory(1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mem.Close)
	opts.L1, opts.Rand = mem, rand.Float64
	tiered, err := cache.NewTiered(opts)
	if err != nil {
		t.Fatal(err)
	}
	return tiered
}
