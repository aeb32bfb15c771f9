package gateway

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/testutil/promtest"
	"github.com/sluice-gw/sluice/internal/testutil/redistest"
)

// TestResponsesIDsRedisBypassed: with the replicas' Redis frozen
// (SIGSTOP), B cannot know which simulator holds a response A made. A
// previous_response_id through B is refused with a 503 and Retry-After
// (the pool's policy could send it to the simulator that does not hold it,
// whose "not found" would be false); after sharedBypassAfter lookups that
// timed out, Redis is bypassed: lookups are not sent (they no longer wait
// for the timeout), follow-ups probe the backends and find the response,
// B's writes are held, the degraded gauge says so. Redis resumed, the
// first lookup after the back-off ends the bypass and the continuation
// lands on its owner. Before, each lookup waited for the timeout and the
// continuation went wherever round robin sent it.
func TestResponsesIDsRedisBypassed(t *testing.T) {
	rd := redistest.Start(t)
	p := startReplicaPair(t, rd.Addr, hangGuard, nil)
	p.connected(t)
	create := func(url string) string {
		t.Helper()
		resp := post(t, url+"/v1/responses", `{"model":"m1","input":"x","max_output_tokens":2}`)
		got := readAll(t, resp)
		if resp.StatusCode != 200 {
			t.Fatalf("create: %d %s", resp.StatusCode, got)
		}
		return decodeResponse(t, got).ID
	}
	id := create(p.a.URL)
	p.written(t, 1)
	cont := func() (*http.Response, string) {
		resp := post(t, p.b.URL+"/v1/responses", `{"model":"m1","input":"and then?","max_output_tokens":2,"previous_response_id":"`+id+`"}`)
		return resp, readAll(t, resp)
	}
	lookups := func(result string) float64 {
		return promtest.Value(t, p.regB, "sluice_responses_ids_redis_lookups_total", result)
	}

	p.freeze(rd)
	t.Cleanup(rd.Resume) // before the server's own cleanup stops it
	// The gateways' clock stands still while Redis is frozen: the bypass's
	// 0.5 s back-off is on it, and the requests below must all meet the
	// bypass, however long a loaded machine takes to send them (on the
	// wall clock, one past 0.5 s probed the frozen Redis: 3 timed out).
	p.frozen.Store(time.Now().Add(time.Duration(p.skew.Load())).UnixNano())
	before := p.requests()
	for i := range sharedBypassAfter + 3 {
		resp, got := cont()
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(got, `"code":"previous_response_unavailable"`) {
			t.Fatalf("continuation %d with Redis frozen: %d Retry-After %q %s; want 503 previous_response_unavailable",
				i, resp.StatusCode, resp.Header.Get("Retry-After"), got)
		}
	}
	if n := p.requests() - before; n != 0 {
		t.Fatalf("refused continuations reached the simulators %d times", n)
	}
	if e, b := lookups("error"), lookups("bypassed"); e != sharedBypassAfter || b != 3 {
		t.Fatalf("lookups: %v timed out, %v bypassed; want %d and 3", e, b, sharedBypassAfter)
	}
	if g := promtest.Value(t, p.regB, "sluice_responses_ids_redis_degraded", ""); g != 1 {
		t.Fatalf("degraded gauge %v, want 1", g)
	}
	// A follow-up probes the backends, without asking Redis.
	resp := do(t, http.MethodGet, p.b.URL+"/v1/responses/"+id, "")
	if got := readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("GET through B while bypassed: %d %s", resp.StatusCode, got)
	}
	if e, b := lookups("error"), lookups("bypassed"); e != sharedBypassAfter || b != 4 {
		t.Fatalf("after a follow-up: %v timed out, %v bypassed; want %d and 4", e, b, sharedBypassAfter)
	}
	// B's own response: its write is held, not queued behind a frozen Redis.
	create(p.b.URL)
	waitFor(t, func() bool {
		return promtest.Value(t, p.regB, "sluice_responses_ids_redis_writes_total", "held") >= 1
	})

	p.thaw(rd)
	p.skew.Add(int64(time.Minute)) // past the back-off, and running again
	p.frozen.Store(0)
	waitFor(t, func() bool {
		resp, _ := cont()
		return resp.StatusCode == 200
	})
	if g := promtest.Value(t, p.regB, "sluice_responses_ids_redis_degraded", ""); g != 0 {
		t.Fatalf("degraded gauge %v after recovery, want 0", g)
	}
	if lookups("hit") < 1 {
		t.Fatal("the continuation after recovery was not found in Redis")
	}
}

// TestResponsesFollowUpsKeepTenantsWhileRedisIsAway: with auth on, A
// relays tenant a's response and writes its owner to Redis. Redis frozen,
// B does not know the id and cannot ask whose it is: a GET and a DELETE
// of it through B with tenant b's key are a 503 with Retry-After, and no
// simulator is asked. Before, B probed the simulators and relayed a's
// response to b (200), and b's DELETE removed it. Redis back, b gets the
// 404 of an unknown id and a still gets its response.
func TestResponsesFollowUpsKeepTenantsWhileRedisIsAway(t *testing.T) {
	rd := redistest.Start(t)
	p := startReplicaPair(t, rd.Addr, hangGuard, func(cfg *config.Config) {
		cfg.Auth = config.Auth{RequireKey: true, Keys: []config.Tenant{{Key: "sk-a", Tenant: "a"}, {Key: "sk-b", Tenant: "b"}}}
	})
	p.connected(t)
	id := p.createThroughA(t, "Authorization", "Bearer sk-a")
	p.written(t, 1)

	p.freeze(rd)
	t.Cleanup(rd.Resume)
	p.frozen.Store(time.Now().Add(time.Duration(p.skew.Load())).UnixNano())
	before := p.requests()
	for _, method := range []string{http.MethodGet, http.MethodDelete, http.MethodGet} {
		resp := do(t, method, p.b.URL+"/v1/responses/"+id, "", "Authorization", "Bearer sk-b")
		got := readAll(t, resp)
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(got, `"code":"response_unavailable"`) {
			t.Fatalf("%s of a's response by b through B, Redis frozen: %d Retry-After %q %s; want 503 response_unavailable",
				method, resp.StatusCode, resp.Header.Get("Retry-After"), got)
		}
	}
	if n := p.requests() - before; n != 0 {
		t.Fatalf("refused follow-ups reached the simulators %d times", n)
	}

	p.thaw(rd)
	p.skew.Add(int64(time.Minute))
	p.frozen.Store(0)
	waitFor(t, func() bool {
		resp := do(t, http.MethodGet, p.b.URL+"/v1/responses/"+id, "", "Authorization", "Bearer sk-b")
		readAll(t, resp)
		return resp.StatusCode == 404
	})
	resp := do(t, http.MethodGet, p.b.URL+"/v1/responses/"+id, "", "Authorization", "Bearer sk-a")
	if got := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(got, id) {
		t.Fatalf("a's GET through B after Redis is back: %d %s", resp.StatusCode, got)
	}
}

// TestResponsesProbedIDsKeepTenantsWhileRedisIsAway: with auth on, B
// knows tenant a's response only from probing (its owner missed Redis
// when a asked through B: written late, or lost and written again), and
// Redis holds its owner again. Redis frozen, b's GET of it and b's
// continuation of it through B are 503s with Retry-After: whose it is
// cannot be checked. Before, B's probed entry (no owner recorded) was
// shown to anyone: b got a's response (200) and continued a's
// conversation (200).
func TestResponsesProbedIDsKeepTenantsWhileRedisIsAway(t *testing.T) {
	rd := redistest.Start(t)
	p := startReplicaPair(t, rd.Addr, hangGuard, func(cfg *config.Config) {
		cfg.Auth = config.Auth{RequireKey: true, Keys: []config.Tenant{{Key: "sk-a", Tenant: "a"}, {Key: "sk-b", Tenant: "b"}}}
	})
	p.connected(t)
	id := p.createThroughA(t, "Authorization", "Bearer sk-a")
	p.written(t, 1)
	key := p.gws[0].owners.shared.key(id)
	val, err := rd.Do("GET", key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rd.Do("DEL", key); err != nil {
		t.Fatal(err)
	}
	// a asks through B while Redis misses it: found by probing.
	resp := do(t, http.MethodGet, p.b.URL+"/v1/responses/"+id, "", "Authorization", "Bearer sk-a")
	if got := readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("a's GET through B, Redis missing it: %d %s", resp.StatusCode, got)
	}
	if n := promtest.Value(t, p.regB, "sluice_responses_followups_total", "probed"); n != 1 {
		t.Fatalf("B's probed follow-ups %v, want 1", n)
	}
	if _, err := rd.Do("SET", key, val, "PX", "3600000"); err != nil { // the owner is back in Redis
		t.Fatal(err)
	}

	p.freeze(rd)
	t.Cleanup(rd.Resume)
	p.frozen.Store(time.Now().Add(time.Duration(p.skew.Load())).UnixNano())
	before := p.requests()
	resp = do(t, http.MethodGet, p.b.URL+"/v1/responses/"+id, "", "Authorization", "Bearer sk-b")
	if got := readAll(t, resp); resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(got, `"code":"response_unavailable"`) {
		t.Fatalf("b's GET of a's probed response through B, Redis frozen: %d %s; want 503 response_unavailable", resp.StatusCode, got)
	}
	resp = post(t, p.b.URL+"/v1/responses", `{"model":"m1","input":"and then?","max_output_tokens":2,"previous_response_id":"`+id+`"}`,
		"Authorization", "Bearer sk-b")
	if got := readAll(t, resp); resp.StatusCode != 503 || !strings.Contains(got, `"code":"previous_response_unavailable"`) {
		t.Fatalf("b's continuation of a's probed response through B, Redis frozen: %d %s; want 503 previous_response_unavailable",
			resp.StatusCode, got)
	}
	if n := p.requests() - before; n != 0 {
		t.Fatalf("refused requests reached the simulators %d times", n)
	}
}
