package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/testutil/promtest"
)

// respBackend is a Responses API server in the shapes OpenAI and vLLM
// send: a JSON response object, or named events without [DONE]; it keeps
// the responses it made (as engines do, in memory) for follow-ups.
type respBackend struct {
	name string
	srv  *httptest.Server
	mu   sync.Mutex
	n    int
	held map[string]bool
	// posts counts POST /v1/responses; asked counts follow-ups; prev is
	// each POST's previous_response_id.
	posts, asked int
	prev         []string
	// dropAfterCreated: the next stream breaks after its lifecycle events.
	dropAfterCreated bool
}

func newRespBackend(t *testing.T, name string) *respBackend {
	b := &respBackend{name: name, held: map[string]bool{}}
	b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.srv.Close)
	return b
}

func respObject(id string, usage bool) string {
	u := "null"
	if usage {
		u = `{"input_tokens":11,"input_tokens_details":{"cached_tokens":0},"output_tokens":7,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":18}`
	}
	return `{"id":"` + id + `","object":"response","created_at":1,"status":"completed","error":null,"model":"m1",` +
		`"output":[{"type":"message","id":"msg_1","role":"assistant","content":[{"type":"output_text","text":"hi there"}]}],"usage":` + u + `}`
}

func (b *respBackend) serve(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.URL.Path != "/v1/responses" {
		b.asked++
		id, sub, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v1/responses/"), "/")
		if !b.held[id] {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(404)
			fmt.Fprintf(w, `{"error":{"message":"Response with id '%s' not found.","type":"invalid_request_error"}}`, id)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodDelete:
			delete(b.held, id)
			fmt.Fprintf(w, `{"id":"%s","object":"response","deleted":true}`, id)
		case sub == "input_items":
			fmt.Fprint(w, `{"object":"list","data":[],"backend":"`+b.name+`"}`)
		default:
			fmt.Fprint(w, respObject(id, true))
		}
		return
	}
	b.posts++
	var req struct {
		Stream bool   `json:"stream"`
		Prev   string `json:"previous_response_id"`
	}
	json.NewDecoder(r.Body).Decode(&req)
	b.prev = append(b.prev, req.Prev)
	if req.Prev != "" && !b.held[req.Prev] {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(404)
		fmt.Fprintf(w, `{"error":{"message":"Response with id '%s' not found.","type":"invalid_request_error","param":"previous_response_id"}}`, req.Prev)
		return
	}
	b.n++
	id := fmt.Sprintf("resp_%s_%d", b.name, b.n)
	b.held[id] = true
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, respObject(id, true))
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	for _, ev := range respEvents(id, b.dropAfterCreated) {
		fmt.Fprint(w, ev)
		fl.Flush()
	}
	if b.dropAfterCreated {
		b.dropAfterCreated = false
		panic(http.ErrAbortHandler) // the connection breaks before the first token
	}
}

// respEvents is a whole stream (or its lifecycle events only).
func respEvents(id string, lifecycleOnly bool) []string {
	inProgress := strings.Replace(respObject(id, false), `"completed"`, `"in_progress"`, 1)
	evs := []string{
		"event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":" + inProgress + "}\n\n",
		"event: response.in_progress\ndata: {\"type\":\"response.in_progress\",\"sequence_number\":1,\"response\":" + inProgress + "}\n\n",
	}
	if lifecycleOnly {
		return evs
	}
	return append(evs,
		"event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"sequence_number\":2,\"output_index\":0,\"item\":{\"type\":\"message\",\"id\":\"msg_1\",\"role\":\"assistant\",\"content\":[]}}\n\n",
		"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":3,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"hi\"}\n\n",
		"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\" there\"}\n\n",
		"event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":5,\"response\":"+respObject(id, true)+"}\n\n",
	)
}

func (b *respBackend) counts() (posts, asked int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.posts, b.asked
}

// respGateway serves backends through a gateway (round robin, cache on);
// edit adjusts the config.
func respGateway(t *testing.T, edit func(*config.Config), backends ...*respBackend) (*httptest.Server, *prometheus.Registry) {
	t.Helper()
	var urls []string
	for _, b := range backends {
		urls = append(urls, b.srv.URL)
	}
	cfg := testConfig(urls...)
	if edit != nil {
		edit(cfg)
	}
	var reg *prometheus.Registry
	srv, _ := startGatewayWith(t, cfg, func(d *Deps) { reg = d.Registry.(*prometheus.Registry) })
	return srv, reg
}

func TestResponsesRelayedWithUsageAndNeverCached(t *testing.T) {
	b := newRespBackend(t, "a")
	srv, reg := respGateway(t, nil, b)
	body := `{"model":"m1","input":"hello","temperature":0}`
	for i := 1; i <= 2; i++ { // identical and deterministic: still both reach the backend
		resp := post(t, srv.URL+"/v1/responses", body)
		got := readAll(t, resp)
		if resp.StatusCode != 200 || got != respObject(fmt.Sprintf("resp_a_%d", i), true) {
			t.Fatalf("answer %d: %d %s", i, resp.StatusCode, got)
		}
		if xc := resp.Header.Get("X-Cache"); xc != "" {
			t.Fatalf("X-Cache %q on a Responses answer", xc)
		}
	}
	if posts, _ := b.counts(); posts != 2 {
		t.Fatalf("backend saw %d of 2 identical requests: cached or coalesced", posts)
	}
	if in, out := promtest.Value(t, reg, "sluice_tokens_total", "in"), promtest.Value(t, reg, "sluice_tokens_total", "out"); in != 22 || out != 14 {
		t.Fatalf("tokens in %v out %v, want 22 and 14 (input_tokens and output_tokens)", in, out)
	}
}

func TestResponsesStreamRelayedByteForByte(t *testing.T) {
	b := newRespBackend(t, "a")
	srv, reg := respGateway(t, nil, b)
	resp := post(t, srv.URL+"/v1/responses", `{"model":"m1","input":"hello","stream":true}`)
	got := readAll(t, resp)
	if want := strings.Join(respEvents("resp_a_1", false), ""); got != want {
		t.Fatalf("stream changed:\n%s\nwant\n%s", got, want)
	}
	if strings.Contains(got, "[DONE]") || strings.Contains(got, "upstream") {
		t.Fatal("the gateway added to a whole stream")
	}
	if out := promtest.Value(t, reg, "sluice_tokens_total", "out"); out != 7 {
		t.Fatalf("output tokens %v, want the final event's 7", out)
	}
}

func TestResponsesStreamRetriedBeforeFirstToken(t *testing.T) {
	a, b := newRespBackend(t, "a"), newRespBackend(t, "b")
	a.dropAfterCreated = true
	srv, _ := respGateway(t, func(c *config.Config) { c.Retry.Attempts = 2 }, a, b)
	// Whichever backend round robin starts with, one of the two requests
	// meets a's break after response.created: nothing was sent yet, so it
	// goes on to b, and the client sees b's stream alone. Not stored: a
	// stored one is not retried (TestResponsesStoredNotRetriedWhereThe-
	// BackendMayHaveKeptIt).
	for i := 0; i < 2; i++ {
		got := readAll(t, post(t, srv.URL+"/v1/responses", `{"model":"m1","input":"hello","stream":true,"store":false}`))
		if !strings.HasSuffix(got, "\"type\":\"response.completed\",\"sequence_number\":5,\"response\":"+respObject(fmt.Sprintf("resp_b_%d", i+1), true)+"}\n\n") {
			t.Fatalf("stream %d:\n%s", i, got)
		}
		if n := strings.Count(got, "event: response.created"); n != 1 {
			t.Fatalf("%d response.created events reached the client, want 1:\n%s", n, got)
		}
	}
	if posts, _ := a.counts(); posts != 1 || a.dropAfterCreated {
		t.Fatalf("a served %d streams, want its one broken one", posts)
	}
}

func TestResponsesStreamCutAfterFirstTokenEndsWithError(t *testing.T) {
	back := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		evs := respEvents("resp_x", false)
		for _, ev := range evs[:4] {
			fmt.Fprint(w, ev)
		}
		// ends without response.completed
	}))
	t.Cleanup(back.Close)
	srv, _ := startGateway(t, testConfig(back.URL))
	got := readAll(t, post(t, srv.URL+"/v1/responses", `{"model":"m1","input":"x","stream":true}`))
	if !strings.HasPrefix(got, strings.Join(respEvents("resp_x", false)[:4], "")) || !strings.Contains(got, `"code":"upstream_bad_response"`) {
		t.Fatalf("stream:\n%s", got)
	}
}

func TestResponsesFollowUpsReachTheBackendThatMadeThem(t *testing.T) {
	a, b := newRespBackend(t, "a"), newRespBackend(t, "b")
	srv, _ := respGateway(t, nil, a, b)
	// Round robin: the first goes to one backend, the second (a stream) to the other.
	first := readAll(t, post(t, srv.URL+"/v1/responses", `{"model":"m1","input":"one"}`))
	readAll(t, post(t, srv.URL+"/v1/responses", `{"model":"m1","input":"two","stream":true}`))
	var r1 struct{ ID string }
	json.Unmarshal([]byte(first), &r1)
	owner, other := a, b
	if strings.HasPrefix(r1.ID, "resp_b") {
		owner, other = b, a
	}
	streamed := "resp_" + other.name + "_1"
	for _, c := range []struct{ method, path, id string }{
		{http.MethodGet, "", r1.ID}, {http.MethodGet, "/input_items", r1.ID}, {http.MethodGet, "", streamed},
	} {
		resp := do(t, c.method, srv.URL+"/v1/responses/"+c.id+c.path, "")
		if got := readAll(t, resp); resp.StatusCode != 200 {
			t.Fatalf("%s %s: %d %s", c.method, c.id+c.path, resp.StatusCode, got)
		}
	}
	if _, asked := owner.counts(); asked != 2 {
		t.Fatalf("owner asked %d times, want 2", asked)
	}
	if _, asked := other.counts(); asked != 1 {
		t.Fatalf("the stream's backend asked %d times, want 1 (no probing of a known id)", asked)
	}
	// previous_response_id: every continuation goes to the owner, whatever round robin says.
	for i := 0; i < 3; i++ {
		resp := post(t, srv.URL+"/v1/responses", `{"model":"m1","input":"more","previous_response_id":"`+r1.ID+`"}`)
		if got := readAll(t, resp); resp.StatusCode != 200 {
			t.Fatalf("continuation %d: %d %s", i, resp.StatusCode, got)
		}
	}
	if posts, _ := owner.counts(); posts != 4 {
		t.Fatalf("owner served %d POSTs, want 1 + 3 continuations", posts)
	}
	// DELETE, then the id is forgotten: both backends are asked, both say 404.
	if resp := do(t, http.MethodDelete, srv.URL+"/v1/responses/"+r1.ID, ""); readAll(t, resp) == "" || resp.StatusCode != 200 {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	resp := do(t, http.MethodGet, srv.URL+"/v1/responses/"+r1.ID, "")
	got := readAll(t, resp)
	if resp.StatusCode != 404 || !strings.Contains(got, `"code":"response_not_found"`) {
		t.Fatalf("deleted: %d %s", resp.StatusCode, got)
	}
	if _, asked := other.counts(); asked != 2 {
		t.Fatalf("an unknown id was not asked of every backend (other asked %d times)", asked)
	}
}

func TestResponsesUnknownIDFoundByProbing(t *testing.T) {
	a, b := newRespBackend(t, "a"), newRespBackend(t, "b")
	b.held["resp_elsewhere"] = true // made before a restart, or through another replica
	srv, reg := respGateway(t, nil, a, b)
	for i := 0; i < 2; i++ {
		resp := do(t, http.MethodGet, srv.URL+"/v1/responses/resp_elsewhere", "")
		if got := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(got, `"id":"resp_elsewhere"`) {
			t.Fatalf("%d %s", resp.StatusCode, got)
		}
	}
	// The probes go out at once: a may have been asked, or its probe
	// cancelled before it arrived when b answered first. Never twice:
	// the second GET goes straight to b.
	if _, asked := a.counts(); asked > 1 {
		t.Fatalf("a asked %d times: the found id was not remembered", asked)
	}
	if _, asked := b.counts(); asked != 2 {
		t.Fatalf("b asked %d times, want 2 (the probe, then the remembered id)", asked)
	}
	if promtest.Value(t, reg, "sluice_responses_followups_total", "probed") != 1 ||
		promtest.Value(t, reg, "sluice_responses_followups_total", "known") != 1 {
		t.Fatal("follow-up outcomes not counted")
	}
}

func TestResponsesTenantIsolation(t *testing.T) {
	a := newRespBackend(t, "a")
	srv, _ := respGateway(t, func(c *config.Config) {
		c.Auth.Keys = []config.Tenant{{Key: "ka", Tenant: "alice"}, {Key: "kb", Tenant: "bob"}}
	}, a)
	first := readAll(t, post(t, srv.URL+"/v1/responses", `{"model":"m1","input":"secret"}`, "Authorization", "Bearer ka"))
	var r struct{ ID string }
	json.Unmarshal([]byte(first), &r)
	for _, path := range []string{"", "/input_items"} {
		resp := do(t, http.MethodGet, srv.URL+"/v1/responses/"+r.ID+path, "", "Authorization", "Bearer kb")
		if got := readAll(t, resp); resp.StatusCode != 404 || !strings.Contains(got, "response_not_found") {
			t.Fatalf("bob read alice's response: %d %s", resp.StatusCode, got)
		}
	}
	resp := post(t, srv.URL+"/v1/responses", `{"model":"m1","input":"x","previous_response_id":"`+r.ID+`"}`, "Authorization", "Bearer kb")
	if got := readAll(t, resp); resp.StatusCode != 400 || !strings.Contains(got, `"param":"previous_response_id"`) || !strings.Contains(got, `"code":"previous_response_not_found"`) {
		t.Fatalf("bob continued alice's response: %d %s", resp.StatusCode, got)
	}
	if resp := do(t, http.MethodDelete, srv.URL+"/v1/responses/"+r.ID, "", "Authorization", "Bearer kb"); readAll(t, resp) != "" && resp.StatusCode != 404 {
		t.Fatalf("bob deleted alice's response: %d", resp.StatusCode)
	}
	if posts, asked := a.counts(); posts != 1 || asked != 0 {
		t.Fatalf("refused requests reached the backend: %d posts, %d follow-ups", posts, asked)
	}
	resp = do(t, http.MethodGet, srv.URL+"/v1/responses/"+r.ID, "", "Authorization", "Bearer ka")
	if got := readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("alice: %d %s", resp.StatusCode, got)
	}
	// Without a key the caller is an anonymous tenant (its address): not alice.
	if resp := do(t, http.MethodGet, srv.URL+"/v1/responses/"+r.ID, ""); readAll(t, resp) != "" && resp.StatusCode != 404 {
		t.Fatalf("no key: %d", resp.StatusCode)
	}
}

func TestResponsesRefusals(t *testing.T) {
	a := newRespBackend(t, "a")
	srv, _ := respGateway(t, nil, a)
	for _, c := range []struct {
		body, param string
		hdr         []string
		status      int
	}{
		{`{"model":"m1","input":"x","background":true}`, "background", nil, 400},
		{`{"model":"m1","input":5}`, "input", nil, 400},
		{`{"model":"m1","max_output_tokens":"9"}`, "max_output_tokens", nil, 400},
		{`{"input":"x"}`, "model", nil, 400},
		{`{"model":"nope","input":"x"}`, "model", nil, 404},
	} {
		resp := post(t, srv.URL+"/v1/responses", c.body, c.hdr...)
		var e struct{ Error struct{ Param string } }
		json.Unmarshal([]byte(readAll(t, resp)), &e)
		if resp.StatusCode != c.status || e.Error.Param != c.param {
			t.Errorf("%s: %d naming %q, want %d naming %q", c.body, resp.StatusCode, e.Error.Param, c.status, c.param)
		}
	}
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{http.MethodPut, "/v1/responses/resp_1", 405}, {http.MethodGet, "/v1/responses/resp_1/cancel", 405},
		{http.MethodGet, "/v1/responses/resp_1/other", 404}, {http.MethodGet, "/v1/responses/", 404},
		{http.MethodGet, "/v1/responses", 405},
	} {
		if resp := do(t, c.method, srv.URL+c.path, ""); readAll(t, resp) == "" || resp.StatusCode != c.status {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, resp.StatusCode, c.status)
		}
	}
	if posts, asked := a.counts(); posts != 0 || asked != 0 {
		t.Fatalf("refused requests reached the backend: %d, %d", posts, asked)
	}
}

func TestResponsesInBandFailuresRelayedAsTheBackendSaidThem(t *testing.T) {
	failed := strings.Replace(respObject("resp_f", true), `"status":"completed","error":null`,
		`"status":"failed","error":{"code":"server_error","message":"the model failed"}`, 1)
	var calls int
	var mu sync.Mutex
	back := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		mu.Unlock()
		var req struct{ Stream bool }
		json.NewDecoder(r.Body).Decode(&req)
		if !req.Stream {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, failed)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		evs := respEvents("resp_f", false)
		fmt.Fprint(w, evs[0]+evs[1]+evs[3])
		fmt.Fprint(w, "event: error\ndata: {\"type\":\"error\",\"sequence_number\":4,\"code\":\"server_error\",\"message\":\"boom\",\"param\":null}\n\n")
	}))
	t.Cleanup(back.Close)
	cfg := testConfig(back.URL)
	cfg.Retry.Attempts = 3
	srv, _ := startGateway(t, cfg)
	// A failed response is a response (status "failed", its "error"
	// member set): the backend's answer, not an error object in a 200.
	resp := post(t, srv.URL+"/v1/responses", `{"model":"m1","input":"x"}`)
	if got := readAll(t, resp); resp.StatusCode != 200 || got != failed {
		t.Fatalf("%d %s", resp.StatusCode, got)
	}
	// A stream's error event ends it, as the backend sent it: nothing added.
	got := readAll(t, post(t, srv.URL+"/v1/responses", `{"model":"m1","input":"x","stream":true}`))
	if !strings.HasSuffix(got, `"message":"boom","param":null}`+"\n\n") || strings.Count(got, "event: error") != 1 {
		t.Fatalf("stream:\n%s", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 2 {
		t.Fatalf("%d backend calls for 2 requests: an in-band failure was retried", calls)
	}
}

func TestResponsesProbeSkipsAnUnreachableBackend(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	b := newRespBackend(t, "b")
	b.held["resp_old"] = true
	var reg *prometheus.Registry
	srv, _ := startGatewayWith(t, testConfig(dead.URL, b.srv.URL), func(d *Deps) { reg = d.Registry.(*prometheus.Registry) })
	resp := do(t, http.MethodGet, srv.URL+"/v1/responses/resp_old", "")
	if got := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(got, `"id":"resp_old"`) {
		t.Fatalf("%d %s", resp.StatusCode, got)
	}
	// Not stored (store: false): not remembered, so a follow-up is probed.
	var r struct{ ID string }
	json.Unmarshal([]byte(readAll(t, post(t, srv.URL+"/v1/responses", `{"model":"m1","input":"x","store":false}`))), &r)
	if resp := do(t, http.MethodGet, srv.URL+"/v1/responses/"+r.ID, ""); readAll(t, resp) == "" || resp.StatusCode != 200 {
		t.Fatalf("GET %q: %d", r.ID, resp.StatusCode)
	}
	if p := promtest.Value(t, reg, "sluice_responses_followups_total", "probed"); p != 2 {
		t.Fatalf("%v follow-ups probed, want 2 (an unknown id, an unstored one)", p)
	}
}

func TestResponsesFollowUpsRateLimited(t *testing.T) {
	b := newRespBackend(t, "b")
	b.held["resp_1"] = true
	cfg := testConfig(b.srv.URL)
	cfg.RateLimits.PerKey = config.RateRule{Requests: limitPtr(t, "rate=1r/m burst=1 nodelay")}
	srv, _ := startGateway(t, cfg)
	for i := 0; i < 2; i++ { // the burst: 1 + 1
		if resp := do(t, http.MethodGet, srv.URL+"/v1/responses/resp_1", ""); readAll(t, resp) == "" || resp.StatusCode != 200 {
			t.Fatalf("within the burst: %d", resp.StatusCode)
		}
	}
	resp := do(t, http.MethodGet, srv.URL+"/v1/responses/resp_1", "")
	if got := readAll(t, resp); resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("over the limit: %d %s", resp.StatusCode, got)
	}
	if _, asked := b.counts(); asked != 2 {
		t.Fatalf("backend asked %d times, want 2", asked)
	}
}

func TestRespOwnersBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	now := time.Unix(1e9, 0)
	o := newRespOwners(reg, nil, 10, time.Hour, func() time.Time { return now }, nil)
	for i := 0; i < 200; i++ {
		o.remember(fmt.Sprintf("resp_%d", i), respOwner{backend: "a"})
	}
	if n := promtest.Value(t, reg, "sluice_responses_ids", ""); n > 10 {
		t.Fatalf("%v ids kept, bound 10", n)
	}
	if ev := promtest.Value(t, reg, "sluice_responses_ids_evicted_total", "size"); ev < 190 {
		t.Fatalf("%v evictions counted, want at least 190", ev)
	}
	// The TTL, on the gateway's clock.
	o.remember("resp_new", respOwner{backend: "b"})
	if _, ok := o.lookup(context.Background(), "resp_new"); !ok {
		t.Fatal("a fresh id forgotten")
	}
	now = now.Add(time.Hour + time.Second)
	if _, ok := o.lookup(context.Background(), "resp_new"); ok {
		t.Fatal("an id past its TTL still known")
	}
	if ev := promtest.Value(t, reg, "sluice_responses_ids_evicted_total", "expired"); ev != 1 {
		t.Fatalf("%v expiries counted, want 1", ev)
	}
}

// TestRespOwnersKeepTheNewest: under a steady stream of responses, the
// ids just relayed are the ones follow-ups and continuations are about
// to name, so each must be remembered until the bound's newer ids push it
// out, oldest first, whatever was looked up before. A W-TinyLFU cache
// (otter, used before) admits a new id past its small window only if it
// was used more often than the oldest one it would replace: ids seen once
// were turned away at random, and one just remembered could be gone at
// once (TestRespOwnersBounded failed so under a -race run with load).
func TestRespOwnersKeepTheNewest(t *testing.T) {
	reg := prometheus.NewRegistry()
	now := time.Unix(1e9, 0)
	const bound = 1000
	o := newRespOwners(reg, nil, bound, time.Hour, func() time.Time { return now }, nil)
	for i := 0; i < bound; i++ { // the first ids, each looked up often: an LFU keeps these
		id := fmt.Sprintf("old_%d", i)
		o.remember(id, respOwner{backend: "a"})
		for range 5 {
			o.lookup(context.Background(), id)
		}
	}
	for i := 0; i < 20*bound; i++ {
		id := fmt.Sprintf("resp_%d", i)
		o.remember(id, respOwner{backend: "b"})
		if _, ok := o.local(id); !ok {
			t.Fatalf("id %d forgotten as soon as remembered", i)
		}
		if i >= bound/2 { // half a bound back: still among the newest
			if _, ok := o.local(fmt.Sprintf("resp_%d", i-bound/2)); !ok {
				t.Fatalf("id %d forgotten %d ids later, bound %d", i-bound/2, bound/2, bound)
			}
		}
	}
	if _, ok := o.local("old_0"); ok {
		t.Fatal("the oldest id outlived 20 bounds of newer ones")
	}
	if n := promtest.Value(t, reg, "sluice_responses_ids", ""); n != bound {
		t.Fatalf("%v ids kept, want the bound %d", n, bound)
	}
	if ev := promtest.Value(t, reg, "sluice_responses_ids_evicted_total", "size"); ev != 20*bound {
		t.Fatalf("%v size evictions, want %d", ev, 20*bound)
	}
	// A forgotten id (a DELETE) leaves its slot in the ring until the ring
	// comes round to it; an id remembered again takes the newest slot, and
	// its old slot, recycled, does not take it away.
	o.forget("resp_19999")
	o.remember("resp_19998", respOwner{backend: "c"}) // pushes out resp_19000
	for i := 0; i < bound-2; i++ {                    // push out resp_19001 to resp_19998's old slot
		o.remember(fmt.Sprintf("new_%d", i), respOwner{backend: "d"})
	}
	if got, ok := o.local("resp_19998"); !ok || got.backend != "c" {
		t.Fatalf("an id remembered again: %+v %v", got, ok)
	}
	if _, ok := o.local("resp_19997"); ok {
		t.Fatal("resp_19997 outlived a bound of newer ids")
	}
	if n := promtest.Value(t, reg, "sluice_responses_ids", ""); n != bound-1 { // resp_19999's slot holds no id
		t.Fatalf("%v ids kept after the forget, want %d", n, bound-1)
	}
}

// TestResponsesFirstTokenIsTheFirstOutputEvent: a backend that sends its
// head, response.created and response.in_progress and then nothing has
// not started: the stream is cut at the first-token bound (4 x 100ms),
// far inside first_byte and stream_idle, with a 504 and nothing of the
// lifecycle events sent. Were response.created the first token, the
// bound would be gone and the client would wait out stream_idle (a
// minute) on an open stream.
func TestResponsesFirstTokenIsTheFirstOutputEvent(t *testing.T) {
	quit := make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		evs := respEvents("resp_slow", true)
		fmt.Fprint(w, evs[0]+evs[1])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-quit:
		}
	}))
	t.Cleanup(func() { close(quit); be.Close() })
	cfg := testConfig(be.URL)
	cfg.Timeouts.FirstByte = config.Duration(time.Second)
	cfg.Admission.MaxWait = config.Duration(100 * time.Millisecond)
	cfg.Retry.Attempts = 1
	srv, _ := startGateway(t, cfg)
	resp := post(t, srv.URL+"/v1/responses", `{"model":"m1","input":"x","stream":true}`)
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusGatewayTimeout || strings.Contains(body, "response.created") {
		t.Fatalf("%d %s; want 504 before any event", resp.StatusCode, body)
	}
	if _, code, msg := apiErr(t, body); code != "upstream_timeout" || !strings.Contains(msg, "time-to-first-token") {
		t.Fatalf("code %q message %q; want the first-token bound", code, msg)
	}
}

// An id no reachable backend holds, with one backend unreachable, is not
// called unknown: it may live on the one that could not be asked.
func TestResponsesProbeWithABackendDownIsNotA404(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	b := newRespBackend(t, "b")
	srv, _ := startGateway(t, testConfig(dead.URL, b.srv.URL))
	resp := do(t, http.MethodGet, srv.URL+"/v1/responses/resp_nowhere", "")
	if got := readAll(t, resp); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("%d %s, want 503 with Retry-After", resp.StatusCode, got)
	}
	if _, asked := b.counts(); asked != 1 {
		t.Fatalf("the reachable backend asked %d times, want 1", asked)
	}
}
