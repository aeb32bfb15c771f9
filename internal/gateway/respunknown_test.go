package gateway

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/testutil/promtest"
)

// notHolding is a backend that holds no response: every read of one is
// a 404, counted in asked.
func notHolding(t *testing.T, asked *atomic.Int64) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/responses/") {
			return // a health check: 200
		}
		asked.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"error":{"message":"not found","type":"invalid_request_error","code":"not_found"}}`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// A continuation whose id no backend was found to hold, while some could
// not be asked, and the follow-up GET of the same id answer alike: a 503
// with Retry-After (previous_response_unavailable, response_unavailable).
// Only when every backend answered 404 is it a 400
// previous_response_not_found (a 404 for the GET), however many backends
// there are. Before, the continuation went to the pool's pick (whose 400
// said the response was gone) while the GET answered a 502; beyond 16
// backends both said "not found" of backends never asked, and then (until
// every backend was asked) both said 503.
func TestUnlocatedContinuationIsUnavailable(t *testing.T) {
	var asked atomic.Int64
	// Unreachable but held: a closed server's port could be taken by a
	// server that answers 404 (one of those below, another test's).
	var resets atomic.Int32
	gone := resettingBackend(t, &resets)
	var many []string
	for range 17 { // more than the 16 asked until 2026-12-06: every one is asked now
		many = append(many, notHolding(t, &asked))
	}
	for _, c := range []struct {
		name                string
		urls                []string
		postStatus, getStat int
		postCode, getCode   string
	}{
		{"one unreachable", []string{notHolding(t, &asked), gone, notHolding(t, &asked)}, 503, 503,
			"previous_response_unavailable", "response_unavailable"},
		{"seventeen backends", many, 400, 404, "previous_response_not_found", "response_not_found"},
		{"every backend asked", []string{notHolding(t, &asked), notHolding(t, &asked)}, 400, 404,
			"previous_response_not_found", "response_not_found"},
	} {
		srv, _ := startGateway(t, testConfig(c.urls...))
		id := "resp_" + strings.ReplaceAll(c.name, " ", "_")
		resp := post(t, srv.URL+"/v1/responses", `{"model":"m1","input":"and?","previous_response_id":"`+id+`"}`)
		got := readAll(t, resp)
		if resp.StatusCode != c.postStatus || !strings.Contains(got, `"code":"`+c.postCode+`"`) ||
			!strings.Contains(got, `"param":"previous_response_id"`) || (c.postStatus == 503) != (resp.Header.Get("Retry-After") != "") {
			t.Errorf("%s: continuation %d Retry-After %q: %s", c.name, resp.StatusCode, resp.Header.Get("Retry-After"), got)
		}
		resp = do(t, http.MethodGet, srv.URL+"/v1/responses/"+id, "")
		got = readAll(t, resp)
		if resp.StatusCode != c.getStat || !strings.Contains(got, `"code":"`+c.getCode+`"`) ||
			(c.getStat == 503) != (resp.Header.Get("Retry-After") != "") {
			t.Errorf("%s: GET %d Retry-After %q: %s", c.name, resp.StatusCode, resp.Header.Get("Retry-After"), got)
		}
	}
}

// An id every backend said it does not hold is answered "not found"
// without asking them again for a few seconds (the gateway's clock), to
// the tenant that asked only; then the backends are asked again. Before,
// each ask of it cost a probe round: one request to every backend.
func TestUnknownIDIsNotProbedAgain(t *testing.T) {
	var asked atomic.Int64
	cfg := testConfig(notHolding(t, &asked), notHolding(t, &asked), notHolding(t, &asked))
	cfg.Auth.Keys = []config.Tenant{{Key: "ka", Tenant: "alice"}, {Key: "kb", Tenant: "bob"}}
	var skew atomic.Int64
	var reg *prometheus.Registry
	srv, _ := startGatewayWith(t, cfg, func(d *Deps) {
		reg = d.Registry.(*prometheus.Registry)
		d.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	const id = "resp_madeup"
	cont := func(key string) int {
		t.Helper()
		resp := post(t, srv.URL+"/v1/responses", `{"model":"m1","input":"and?","previous_response_id":"`+id+`"}`, "Authorization", "Bearer "+key)
		if got := readAll(t, resp); resp.StatusCode != 400 || !strings.Contains(got, "previous_response_not_found") {
			t.Fatalf("continuation of an id nobody holds: %d %s", resp.StatusCode, got)
		}
		return int(asked.Load())
	}
	get := func(key string) int {
		t.Helper()
		resp := do(t, http.MethodGet, srv.URL+"/v1/responses/"+id, "", "Authorization", "Bearer "+key)
		if got := readAll(t, resp); resp.StatusCode != 404 {
			t.Fatalf("GET of an id nobody holds: %d %s", resp.StatusCode, got)
		}
		return int(asked.Load())
	}
	if n := cont("ka"); n != 3 {
		t.Fatalf("first continuation asked %d backends, want 3", n)
	}
	for range 5 {
		cont("ka")
		get("ka")
	}
	if n := asked.Load(); n != 3 {
		t.Fatalf("asking again within the TTL asked the backends: %d reads, want 3", n)
	}
	if n := promtest.Value(t, reg, "sluice_responses_ids_unknown_hits_total", ""); n != 10 {
		t.Fatalf("unknown-id hits %v, want 10", n)
	}
	if n := get("kb"); n != 6 {
		t.Fatalf("another tenant's ask of the id asked %d backends in all, want 6: one tenant's answer is not another's", n)
	}
	skew.Store(int64(unknownIDTTL))
	if n := cont("ka"); n != 9 {
		t.Fatalf("past the TTL: %d backend reads in all, want 9", n)
	}
	if n := promtest.Value(t, reg, "sluice_responses_ids_unknown", ""); n != 2 {
		t.Fatalf("unknown ids held %v, want 2 (alice's, bob's)", n)
	}
}

// A response relayed under an id clears it from the unknown ids, for
// every tenant, however recent the entry; the cache is bounded.
func TestUnknownIDsClearedAndBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	o := newRespOwners(prometheus.NewRegistry(), nil, 0, 0, func() time.Time { return now }, nil)
	o.unknown.note("alice", "resp_x", now)
	o.unknown.note("bob", "resp_x", now)
	o.remember("resp_x", respOwner{backend: "b1"})
	if o.unknown.known("alice", "resp_x", now) || o.unknown.known("bob", "resp_x", now) || o.unknown.len() != 0 {
		t.Fatal("an id relayed since is still answered unknown")
	}
	u := newUnknownIDs(prometheus.NewRegistry(), 2, time.Second)
	for _, id := range []string{"a", "b", "c"} {
		u.note("", id, now)
	}
	if u.len() != 2 || u.known("", "a", now) || !u.known("", "c", now) {
		t.Fatalf("bound 2: %d held, oldest kept", u.len())
	}
}
