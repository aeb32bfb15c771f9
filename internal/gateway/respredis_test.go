package gateway

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"
	"go.uber.org/goleak"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/redisconn"
	"github.com/sluice-gw/sluice/internal/routing"
	"github.com/sluice-gw/sluice/internal/sim"
	"github.com/sluice-gw/sluice/internal/testutil/leaktest"
	"github.com/sluice-gw/sluice/internal/testutil/promtest"
	"github.com/sluice-gw/sluice/internal/testutil/redistest"
)

// hangGuard bounds one Redis call where a test is about what is shared,
// not about a slow Redis: far above any healthy answer on a loaded
// machine.
const hangGuard = 10 * time.Second

// frozenRedisTimeout bounds a Redis call while a test holds Redis frozen
// (SIGSTOP, replicaPair.freeze) and waits for lookups to time out. The
// calls before the freeze and after it are bounded by hangGuard instead:
// with one bound for both (2 s, 300 ms before), a lookup made before the
// freeze on a loaded machine timed out too, and with auth on it answered
// 503 where the test wanted 200.
const frozenRedisTimeout = 2 * time.Second

// freeze makes both gateways' Redis calls give up at frozenRedisTimeout
// and then freezes Redis; thaw undoes it (hangGuard again, then Redis
// runs). Register t.Cleanup(rd.Resume) after freeze: before the server's
// own cleanup stops it.
func (p *replicaPair) freeze(rd *redistest.Server) {
	p.bound(frozenRedisTimeout)
	rd.Pause()
}

func (p *replicaPair) thaw(rd *redistest.Server) {
	p.bound(hangGuard)
	rd.Resume()
}

func (p *replicaPair) bound(d time.Duration) {
	for _, gw := range p.gws {
		gw.owners.shared.timeout.Store(int64(d))
	}
}

// replicaPair is two gateways (A and B) over the same two simulators,
// sharing Responses ids through one Redis, as two replicas behind a
// load balancer.
type replicaPair struct {
	a, b     *httptest.Server
	regA     *prometheus.Registry
	regB     *prometheus.Registry
	gws      []*Gateway
	asked    [2]atomic.Int64 // every request each simulator received
	skew     atomic.Int64    // added to the gateways' clock (time.Now), in nanoseconds
	frozen   atomic.Int64    // when not 0, the gateways' clock stands at this time (Unix nanoseconds)
	stopOnce sync.Once
	stops    []func()
}

// startReplicaPair starts the simulators and both gateways; edit adjusts
// their config. close (also run at cleanup) stops all of it.
func startReplicaPair(t *testing.T, redisAddr string, timeout time.Duration, edit func(*config.Config)) *replicaPair {
	t.Helper()
	p := &replicaPair{}
	var urls []string
	for i := range 2 {
		s := sim.New(sim.Config{Model: "m1", DecodeStepBase: time.Millisecond, Seed: int64(i + 1)})
		be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/v1/") {
				p.asked[i].Add(1)
			}
			s.ServeHTTP(w, r)
		}))
		p.stops = append(p.stops, be.Close, s.Close)
		urls = append(urls, be.URL)
	}
	// A call that times out (Redis frozen) makes rueidis close its
	// connection, and the next call dials again: with the 500 ms default
	// a loaded machine's dial and handshake (HELLO, CLIENT TRACKING) right
	// after Redis resumed could fail, and B refused a continuation (503).
	// hangGuard's dial is still bounded by the call's own timeout, so a
	// frozen Redis fails each call as before.
	shared := &ResponseIDsRedis{Client: frozenClockRedis(redisAddr), Timeout: timeout}
	start := func() (*httptest.Server, *prometheus.Registry) {
		cfg := testConfig(urls...)
		if edit != nil {
			edit(cfg)
		}
		reg := prometheus.NewRegistry()
		now := func() time.Time {
			if f := p.frozen.Load(); f != 0 {
				return time.Unix(0, f)
			}
			return time.Now().Add(time.Duration(p.skew.Load()))
		}
		deps := Deps{Transport: proxy.NewTransportCache(), Now: now, Rand: routing.NewRand(1), Registry: reg}
		rt, err := Build(cfg, deps, nil)
		if err != nil {
			t.Fatalf("build: %v", err)
		}
		gw := New(rt, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: reg, Now: deps.Now,
			ResponseIDsRedis: shared})
		srv := httptest.NewServer(gw)
		// Stopped in reverse: the server, then what fed it.
		p.stops = append(p.stops, func() { rt.Retire(nil) }, deps.Transport.CloseIdle, gw.Close, srv.Close)
		p.gws = append(p.gws, gw)
		return srv, reg
	}
	p.a, p.regA = start()
	p.b, p.regB = start()
	t.Cleanup(p.close)
	return p
}

func (p *replicaPair) close() {
	p.stopOnce.Do(func() {
		for i := len(p.stops) - 1; i >= 0; i-- {
			p.stops[i]()
		}
		http.DefaultClient.CloseIdleConnections()
	})
}

// connected waits until both gateways hold a Redis connection (their
// writers dial at start; lookups never dial).
func (p *replicaPair) connected(t *testing.T) {
	t.Helper()
	for _, gw := range p.gws {
		waitFor(t, func() bool { return gw.owners.shared.conn.Loaded() != nil })
	}
}

func (p *replicaPair) requests() int64 { return p.asked[0].Load() + p.asked[1].Load() }

// createThroughA makes a stored response through replica A (hdr: header
// name, value pairs, e.g. the tenant's Authorization) and returns its id.
func (p *replicaPair) createThroughA(t *testing.T, hdr ...string) string {
	t.Helper()
	resp := post(t, p.a.URL+"/v1/responses", `{"model":"m1","input":"x","max_output_tokens":2}`, hdr...)
	got := readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("create through A: %d %s", resp.StatusCode, got)
	}
	return decodeResponse(t, got).ID
}

// continueThroughB continues id through B (previous_response_id), and
// returns the answer's status and body. A 503 previous_response_unavailable
// is B saying Redis could not be asked in time (its lookup's timeout, the
// redial after a freeze, or its bypass after two such failures): right
// after Redis resumed a loaded machine's call can take longer than
// frozenRedisTimeout, so it is asked again, as a client honouring
// Retry-After would. Any other answer is returned.
func (p *replicaPair) continueThroughB(t *testing.T, id string) (int, string) {
	t.Helper()
	var code int
	var got string
	waitFor(t, func() bool {
		resp := post(t, p.b.URL+"/v1/responses", `{"model":"m1","input":"and then?","max_output_tokens":2,"previous_response_id":"`+id+`"}`)
		got, code = readAll(t, resp), resp.StatusCode
		return code != 503 || !strings.Contains(got, `"code":"previous_response_unavailable"`)
	})
	return code, got
}

// written waits until A has written n owners to Redis: the writes follow
// the answers, off their path.
func (p *replicaPair) written(t *testing.T, n float64) {
	t.Helper()
	waitFor(t, func() bool { return writtenTo(t, p.regA) >= n })
}

// writtenTo is how many owner writes the replica whose registry is reg
// has landed in Redis: at once (ok), or held and replayed. A write that
// failed under load (its round trip past the timeout) is held and
// replayed, never counted ok: a wait on ok alone waited for it forever.
func writtenTo(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	return promtest.Value(t, reg, "sluice_responses_ids_redis_writes_total", "ok") +
		promtest.Value(t, reg, "sluice_responses_ids_redis_writes_total", "replayed")
}

// TestResponsesIDsSharedThroughRedis: responses made through A, one on
// each simulator, are found by B through Redis: each GET reaches the
// simulator that made it and no other (probing would ask the first
// simulator for the second's), and previous_response_id through B lands
// on the owner. A chat request touches Redis not at all. All goroutines
// end with the gateways.
func TestResponsesIDsSharedThroughRedis(t *testing.T) {
	rd := redistest.Start(t)
	leaks := goleak.IgnoreCurrent()
	p := startReplicaPair(t, rd.Addr, hangGuard, nil)
	p.connected(t)

	var ids []string
	for range 4 { // round robin: two on each simulator
		resp := post(t, p.a.URL+"/v1/responses", `{"model":"m1","input":"shared","max_output_tokens":3}`)
		got := readAll(t, resp)
		if resp.StatusCode != 200 {
			t.Fatalf("create through A: %d %s", resp.StatusCode, got)
		}
		ids = append(ids, decodeResponse(t, got).ID)
	}
	if p.asked[0].Load() != 2 || p.asked[1].Load() != 2 {
		t.Fatalf("simulators asked %d and %d, want two responses on each", p.asked[0].Load(), p.asked[1].Load())
	}
	p.written(t, 4)

	// ids[0] and [1], one on each simulator: each GET through B reaches
	// the one that holds it, only.
	for i, id := range ids[:2] {
		before0, before1 := p.asked[0].Load(), p.asked[1].Load()
		resp := do(t, http.MethodGet, p.b.URL+"/v1/responses/"+id, "")
		if got := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(got, id) {
			t.Fatalf("GET %s through B: %d %s", id, resp.StatusCode, got)
		}
		d0, d1 := p.asked[0].Load()-before0, p.asked[1].Load()-before1
		if want := [2]int64{int64(1 - i), int64(i)}; [2]int64{d0, d1} != want {
			t.Fatalf("GET of simulator %d's response asked the simulators %d and %d times, want %v", i, d0, d1, want)
		}
	}
	if n := promtest.Value(t, p.regB, "sluice_responses_followups_total", "probed"); n != 0 {
		t.Fatalf("B probed %v times", n)
	}
	// ids[2] and [3], continued through B (previous_response_id): round
	// robin alone would send one to the simulator that does not hold it
	// (a 400 from it).
	for _, id := range ids[2:] {
		resp := post(t, p.b.URL+"/v1/responses", `{"model":"m1","input":"and then?","max_output_tokens":2,"previous_response_id":"`+id+`"}`)
		if got := readAll(t, resp); resp.StatusCode != 200 {
			t.Fatalf("continuing %s through B: %d %s", id, resp.StatusCode, got)
		}
	}
	if n := promtest.Value(t, p.regB, "sluice_responses_ids_redis_lookups_total", "hit"); n != 4 {
		t.Fatalf("B's Redis hits %v, want 4", n)
	}
	// B wrote its two continuations; DELETE through B removes ids[0]'s key.
	if resp := do(t, http.MethodDelete, p.b.URL+"/v1/responses/"+ids[0], ""); readAll(t, resp) == "" || resp.StatusCode != 200 {
		t.Fatalf("DELETE through B: %d", resp.StatusCode)
	}
	waitFor(t, func() bool { return promtest.Value(t, p.regB, "sluice_responses_ids_redis_writes_total", "ok") == 3 })
	if n := idKeys(t, rd); n != 5 {
		t.Fatalf("Redis holds %d ids, want 5: A's four, less the deleted one, and B's two", n)
	}

	// Chat: no Redis lookup or write.
	lookups := promtest.Value(t, p.regA, "sluice_responses_ids_redis_lookups_total", "miss") +
		promtest.Value(t, p.regA, "sluice_responses_ids_redis_lookups_total", "hit") +
		promtest.Value(t, p.regA, "sluice_responses_ids_redis_lookups_total", "error")
	resp := post(t, p.a.URL+"/v1/chat/completions", `{"model":"m1","messages":[{"role":"user","content":"hi"}],"max_tokens":2}`)
	if got := readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("chat: %d %s", resp.StatusCode, got)
	}
	after := promtest.Value(t, p.regA, "sluice_responses_ids_redis_lookups_total", "miss") +
		promtest.Value(t, p.regA, "sluice_responses_ids_redis_lookups_total", "hit") +
		promtest.Value(t, p.regA, "sluice_responses_ids_redis_lookups_total", "error")
	if after != lookups || promtest.Value(t, p.regA, "sluice_responses_ids_redis_queued", "") != 0 {
		t.Fatal("a chat request reached the Responses ids' Redis")
	}
	if n := idKeys(t, rd); n != 5 {
		t.Fatalf("Redis holds %d ids after a chat request, want 5", n)
	}

	p.close()
	leaktest.VerifyNone(t, leaks)
}

// TestResponsesTenantIsolationAcrossReplicas: with auth on, alice's
// response made through A is unknown to bob through B (404 to GET and
// DELETE, 400 previous_response_not_found to previous_response_id, as an
// id nobody holds), no simulator asked; alice gets it through B.
func TestResponsesTenantIsolationAcrossReplicas(t *testing.T) {
	rd := redistest.Start(t)
	p := startReplicaPair(t, rd.Addr, hangGuard, func(c *config.Config) {
		c.Auth.Keys = []config.Tenant{{Key: "ka", Tenant: "alice"}, {Key: "kb", Tenant: "bob"}}
		c.Auth.RequireKey = true
	})
	url := "/v1/responses"
	p.connected(t)
	r := decodeResponse(t, readAll(t, post(t, p.a.URL+url, `{"model":"m1","input":"mine","max_output_tokens":3}`, "Authorization", "Bearer ka")))
	p.written(t, 1)
	before := p.requests()
	for _, m := range []string{http.MethodGet, http.MethodDelete} {
		resp := do(t, m, p.b.URL+url+"/"+r.ID, "", "Authorization", "Bearer kb")
		if got := readAll(t, resp); resp.StatusCode != 404 || !strings.Contains(got, "response_not_found") {
			t.Fatalf("bob %s alice's response through B: %d %s", m, resp.StatusCode, got)
		}
	}
	resp := post(t, p.b.URL+url, `{"model":"m1","input":"x","previous_response_id":"`+r.ID+`"}`, "Authorization", "Bearer kb")
	if got := readAll(t, resp); resp.StatusCode != 400 || !strings.Contains(got, `"code":"previous_response_not_found"`) {
		t.Fatalf("bob continued alice's response through B: %d %s", resp.StatusCode, got)
	}
	if after := p.requests(); after != before {
		t.Fatalf("bob's requests reached the simulators (%d)", after-before)
	}
	resp = do(t, http.MethodGet, p.b.URL+url+"/"+r.ID, "", "Authorization", "Bearer ka")
	if got := readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("alice through B: %d %s", resp.StatusCode, got)
	}
}

// TestResponsesIDsRedisDown: with Redis stopped, a response made through
// A (its write fails: held, counted) is found by B by probing, as without Redis;
// with Redis frozen (accepting nothing, answering nothing), the lookup
// gives up at its timeout and B probes. Nothing fails for Redis.
func TestResponsesIDsRedisDown(t *testing.T) {
	rd := redistest.Start(t)
	p := startReplicaPair(t, rd.Addr, hangGuard, nil)
	create := func() string { t.Helper(); return p.createThroughA(t) }
	get := func(id string) {
		t.Helper()
		resp := do(t, http.MethodGet, p.b.URL+"/v1/responses/"+id, "")
		if got := readAll(t, resp); resp.StatusCode != 200 {
			t.Fatalf("GET %s through B: %d %s", id, resp.StatusCode, got)
		}
	}
	// Both connected first (one id shared), so what follows is Redis going
	// away under connections, not a dial that fails.
	get(create())
	p.written(t, 1)
	rd.Stop()
	id := create()
	waitFor(t, func() bool { return promtest.Value(t, p.regA, "sluice_responses_ids_redis_writes_total", "held") >= 1 })
	get(id)
	if n := promtest.Value(t, p.regB, "sluice_responses_followups_total", "probed"); n < 1 {
		t.Fatalf("B probed %v times with Redis down, want the id found by probing", n)
	}
	if n := promtest.Value(t, p.regB, "sluice_responses_ids_redis_lookups_total", "error"); n < 1 {
		t.Fatalf("B's Redis errors %v, want counted", n)
	}
}

// TestResponsesIDsRedisFrozen: a Redis that takes connections' bytes and
// answers nothing (SIGSTOP) costs B's lookup its timeout, then B probes
// and finds the response.
func TestResponsesIDsRedisFrozen(t *testing.T) {
	rd := redistest.Start(t)
	p := startReplicaPair(t, rd.Addr, hangGuard, nil)
	resp := post(t, p.a.URL+"/v1/responses", `{"model":"m1","input":"x","max_output_tokens":2}`)
	id := decodeResponse(t, readAll(t, resp)).ID
	p.written(t, 1)
	p.connected(t)
	p.freeze(rd)
	t.Cleanup(rd.Resume) // before the server's own cleanup stops it
	resp = do(t, http.MethodGet, p.b.URL+"/v1/responses/"+id, "")
	if got := readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("GET through B with Redis frozen: %d %s", resp.StatusCode, got)
	}
	if n := promtest.Value(t, p.regB, "sluice_responses_ids_redis_lookups_total", "error"); n != 1 {
		t.Fatalf("B's Redis errors %v, want 1 (the lookup that timed out)", n)
	}
	if n := promtest.Value(t, p.regB, "sluice_responses_followups_total", "probed"); n != 1 {
		t.Fatalf("B probed %v times, want 1", n)
	}
}

// frozenClockRedis is the Redis client option of a test whose clock
// stands still: its first dial gets hangGuard, not the 500 ms default.
// A write finding no connection after a failed dial takes the bypass
// down until a back-off on that clock, which never ends: a loaded
// machine's slow first dial left a replica's write held for good
// ("condition not met within 30s").
func frozenClockRedis(addr string) rueidis.ClientOption {
	return redisconn.Option(config.Redis{Addrs: []string{addr}, ConnectTimeout: config.Duration(hangGuard)})
}

// TestRespOwnersRedis, the map's Redis side alone: what one replica
// relayed overrides what another only probed (no owner recorded there);
// a value that is not an owner, and ids a backend could not have made,
// are not taken nor written; an owner past the TTL is a miss.
func TestRespOwnersRedis(t *testing.T) {
	rd := redistest.Start(t)
	now := time.Now()
	clock := func() time.Time { return now }
	opt := &ResponseIDsRedis{Client: frozenClockRedis(rd.Addr), Timeout: hangGuard}
	regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
	a := newRespOwners(regA, nil, 100, time.Hour, clock, opt)
	defer a.close()
	b := newRespOwners(regB, nil, 100, time.Hour, clock, opt)
	defer b.close()
	waitFor(t, func() bool { return a.shared.conn.Loaded() != nil && b.shared.conn.Loaded() != nil })
	ctx := t.Context()

	b.remember("resp_1", respOwner{backend: "s1", probed: true}) // B found it by probing, before A's write landed
	a.remember("resp_1", respOwner{backend: "s1", tenant: "alice"})
	a.remember("resp_\n2", respOwner{backend: "s1"}) // not an id a follow-up could name: not written
	waitFor(t, func() bool { return promtest.Value(t, regA, "sluice_responses_ids_redis_writes_total", "ok") == 1 })
	if o, ok := b.lookup(ctx, "resp_1"); !ok || o.tenant != "alice" || o.probed {
		t.Fatalf("B's lookup: %+v %v, want alice's, from Redis", o, ok)
	}
	if n := idKeys(t, rd); n != 1 {
		t.Fatalf("Redis holds %d ids, want 1", n)
	}

	// A key another program wrote under the prefix: not an owner.
	if _, err := rd.Do("SET", b.shared.key("resp_3"), "not json"); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.lookup(ctx, "resp_3"); ok {
		t.Fatal("a foreign value taken for an owner")
	}
	if n := promtest.Value(t, regB, "sluice_responses_ids_redis_lookups_total", "error"); n != 1 {
		t.Fatalf("errors %v, want 1", n)
	}
	// Past the TTL on the reader's clock (Redis's own expiry is on its).
	a.remember("resp_4", respOwner{backend: "s2"})
	waitFor(t, func() bool { return promtest.Value(t, regA, "sluice_responses_ids_redis_writes_total", "ok") == 2 })
	now = now.Add(time.Hour + time.Second)
	if _, ok := b.lookup(ctx, "resp_4"); ok {
		t.Fatal("an owner past its TTL taken")
	}
	if n := promtest.Value(t, regB, "sluice_responses_ids_redis_lookups_total", "miss"); n != 1 {
		t.Fatalf("misses %v, want 1", n)
	}
	if ttl, err := rd.Do("PTTL", a.shared.key("resp_4")); err != nil || ttl == "-1" || ttl == "-2" {
		t.Fatalf("PTTL %s (%v): the key has no expiry", ttl, err)
	}
}

// FuzzDecodeShared: whatever a Redis value holds, decoding it neither
// panics nor yields an owner without a backend or time.
func FuzzDecodeShared(f *testing.F) {
	f.Add([]byte(`{"b":"s1","t":"alice","at":1700000000000}`))
	f.Add([]byte(`{"b":"","at":1}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := decodeShared(b)
		if err == nil && (o.backend == "" || o.at.IsZero() || len(b) > maxSharedValue) {
			t.Fatalf("%q decoded to %+v", b, o)
		}
	})
}

// TestWriterRedialsAfterAFailedFirstDial: a replica whose first dial
// failed (Redis away at its start) connects once Redis is there, with no
// request asking it to. Before, only a lookup finding no connection, or a
// write, made the writer dial again: an idle replica stayed without
// Redis, and its first request after went without it.
func TestWriterRedialsAfterAFailedFirstDial(t *testing.T) {
	rd := redistest.Start(t)
	rd.Stop()
	opt := &ResponseIDsRedis{Client: redisconn.Option(config.Redis{Addrs: []string{rd.Addr}}), Timeout: hangGuard}
	o := newRespOwners(prometheus.NewRegistry(), nil, 100, time.Hour, time.Now, opt)
	defer o.close()
	if _, err := o.shared.conn.Get(); err == nil { // a failed dial, whoever's first
		t.Fatal("connected to a stopped Redis")
	}
	rd.Restart()
	waitFor(t, func() bool { return o.shared.conn.Loaded() != nil })
}

// FuzzMarkLost drives markLost, the reading of the number Redis held for
// a replica's mark, with any reply. Properties: no panic; a reply that is
// not a decimal int64 is a loss; the number the check wrote (FormatInt)
// reads back as no loss whenever it is at or past the last acknowledged,
// and as a loss below it.
func FuzzMarkLost(f *testing.F) {
	f.Add("17", int64(16), int64(17))
	f.Add("", int64(0), int64(1))
	f.Add("+5", int64(5), int64(4))
	f.Add("9223372036854775808", int64(1), int64(-1))
	f.Add("0x10", int64(3), int64(3))
	f.Fuzz(func(t *testing.T, reply string, confirmed, wrote int64) {
		lost := markLost(reply, confirmed)
		if _, err := strconv.ParseInt(reply, 10, 64); err != nil && !lost {
			t.Fatalf("%q (not a number) read as no loss", reply)
		}
		if got, want := markLost(strconv.FormatInt(wrote, 10), confirmed), wrote < confirmed; got != want {
			t.Fatalf("mark %d, confirmed %d: lost %v, want %v", wrote, confirmed, got, want)
		}
	})
}
