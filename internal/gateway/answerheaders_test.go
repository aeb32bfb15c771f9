package gateway

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/sim"
)

// hostedSim serves the simulator with a hosted API's habits: each answer
// carries the headers of its own call (x-ratelimit-* of the upstream
// account, ids, a timing, a cookie) and, with a gate, waits for it to
// open before the simulator answers, so identical requests coalesce. It
// returns the backend's URL. A caller with a gate opens it at cleanup
// (openAtCleanup) once its gateway is started.
func hostedSim(t *testing.T, gate chan struct{}, faults sim.Faults) string {
	t.Helper()
	s := sim.New(sim.Config{Model: "m1", DecodeStepBase: time.Millisecond})
	s.SetFaults(faults)
	t.Cleanup(s.Close)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if gate != nil {
			<-gate
		}
		h := w.Header()
		for k, v := range map[string]string{
			"X-Ratelimit-Limit-Requests": "5000", "X-Ratelimit-Remaining-Requests": "4999", "X-Ratelimit-Reset-Requests": "12ms",
			"X-Ratelimit-Limit-Tokens": "160000", "X-Ratelimit-Remaining-Tokens": "159000", "X-Ratelimit-Reset-Tokens": "9ms",
			"Openai-Processing-Ms": "321", "Openai-Organization": "upstream-org", "Cf-Ray": "ray-1", "X-Amzn-Requestid": "amzn-1",
			"Set-Cookie": "__cf_bm=leaders; path=/",
			// Named so no list of per-call headers foresees them.
			"X-Envoy-Upstream-Service-Time": "87", "Apim-Request-Id": "apim-1", "X-Ms-Region": "westeurope",
			"Anthropic-Ratelimit-Requests-Remaining": "49", "Cf-Cache-Status": "DYNAMIC", "Via": "1.1 upstream-edge",
			"Alt-Svc": `h3=":443"`, "Strict-Transport-Security": "max-age=31536000", "Nel": `{"report_to":"cf-nel"}`,
		} {
			h.Set(k, v)
		}
		s.ServeHTTP(w, r)
	}))
	t.Cleanup(be.Close)
	return be.URL
}

// hostedConfig is a gateway's config over backend: keys k1 and k2 of one
// tenant (their identical requests coalesce), k1 limited to rate=10r/s
// burst=20, k2 by no limit of the gateway's.
func hostedConfig(t *testing.T, backend string) *config.Config {
	cfg := testConfig(backend)
	cfg.Auth.Keys = []config.Tenant{{Key: "k1", Tenant: "t"}, {Key: "k2", Tenant: "t"}}
	cfg.RateLimits.Keys = map[string]config.RateRule{"k1": {Requests: limitPtr(t, "rate=10r/s burst=20 nodelay")}}
	return cfg
}

// TestCacheHitCarriesItsModel: a HIT names the model whose pool answered,
// as the MISS that stored it did (before: no X-Sluice-Model on a HIT), in
// either shape; no X-Sluice-Backend, as no backend served it.
func TestCacheHitCarriesItsModel(t *testing.T) {
	url, _ := startCachingGatewayCfg(t, testConfig(hostedSim(t, nil, sim.Faults{})), nil, time.Now)
	for i, want := range []string{"MISS", "HIT", "HIT"} {
		extra := ""
		if i == 2 {
			extra = `,"stream":true`
		}
		resp := post(t, url, fmt.Sprintf(detBody, extra))
		body := readAll(t, resp)
		if resp.StatusCode != 200 || resp.Header.Get("X-Cache") != want {
			t.Fatalf("request %d: %d X-Cache %q, want %s: %s", i, resp.StatusCode, resp.Header.Get("X-Cache"), want, body)
		}
		if got := resp.Header.Get("X-Sluice-Model"); got != "m1" {
			t.Fatalf("%s: X-Sluice-Model %q, want m1", want, got)
		}
		if want == "HIT" && resp.Header.Get("X-Sluice-Backend") != "" {
			t.Fatalf("HIT names a backend: %v", resp.Header)
		}
	}
}

// TestCoalescedFollowersGetTheirOwnHeaders: the leader's answer keeps the
// gateway's x-ratelimit-* (its own limits: 600 a minute), not the
// backend's (its upstream account's: 5000; before, they replaced them).
// A follower made no upstream call: it gets none of that call's own
// headers (the backend's x-ratelimit-*, ids, timing, cookie; before, all
// but the cookie), and keeps the answer's type and who answered (X-Sluice-Model, also when its answer was converted to a
// stream: before, none).
func TestCoalescedFollowersGetTheirOwnHeaders(t *testing.T) {
	gate := make(chan struct{})
	url, gw := startCachingGatewayCfg(t, hostedConfig(t, hostedSim(t, gate, sim.Faults{})), nil, time.Now)
	openAtCleanup(t, gate)
	type answer struct {
		who string
		h   http.Header
	}
	answers := make(chan answer, 3)
	ask := func(who, key, extra string) {
		resp := post(t, url, fmt.Sprintf(detBody, extra), "Authorization", "Bearer "+key)
		if body := readAll(t, resp); resp.StatusCode != 200 {
			t.Errorf("%s: %d %s", who, resp.StatusCode, body)
		}
		answers <- answer{who, resp.Header}
	}
	go ask("leader", "k1", "")
	waitFlight(t, gw, 1)
	go ask("follower", "k2", "")
	waitFlight(t, gw, 2)
	go ask("stream follower", "k2", `,"stream":true,"stream_options":{"include_usage":true}`) // wants usage, as the JSON leader: one flight
	waitFlight(t, gw, 3)
	close(gate)
	for range 3 {
		a := <-answers
		h := a.h
		if h.Get("X-Sluice-Model") != "m1" || h.Get("Openai-Organization") != "upstream-org" && a.who == "leader" {
			t.Errorf("%s: the answer's headers missing: %v", a.who, h)
		}
		if a.who == "leader" {
			if h.Get("X-Cache") != "MISS" || h.Get("X-Ratelimit-Limit-Requests") != "600" || h.Get("X-Ratelimit-Limit-Tokens") != "" || h.Get("Cf-Ray") != "ray-1" {
				t.Errorf("leader: want its own limits (600 a minute, none on tokens) and its call's headers: %v", h)
			}
			continue
		}
		if h.Get("X-Cache") != "COALESCED" {
			t.Errorf("%s: X-Cache %q", a.who, h.Get("X-Cache"))
		}
		for k := range h {
			if strings.HasPrefix(k, "X-Ratelimit-") || k == "Cf-Ray" || k == "Openai-Processing-Ms" || k == "X-Amzn-Requestid" || k == "Set-Cookie" {
				t.Errorf("%s got the leader's call's %s: %v", a.who, k, h[k])
			}
		}
	}
}

// TestDirectAnswerKeepsTheGatewaysLimits: an answer relayed straight (not
// cacheable) carries the gateway's x-ratelimit-* for a limited key and the
// backend's only for a key the gateway does not limit.
func TestDirectAnswerKeepsTheGatewaysLimits(t *testing.T) {
	srv, _ := startGateway(t, hostedConfig(t, hostedSim(t, nil, sim.Faults{})))
	for key, want := range map[string]string{"k1": "600", "k2": "5000"} {
		resp := post(t, srv.URL+"/v1/chat/completions", `{"model":"m1","messages":[{"role":"user","content":"hi"}]}`, "Authorization", "Bearer "+key)
		readAll(t, resp)
		if got := resp.Header.Get("X-Ratelimit-Limit-Requests"); resp.StatusCode != 200 || got != want {
			t.Fatalf("%s: %d x-ratelimit-limit-requests %q, want %s", key, resp.StatusCode, got, want)
		}
		if key == "k1" && resp.Header.Get("X-Ratelimit-Limit-Tokens") != "" {
			t.Fatalf("k1: the backend's token figures mixed with the gateway's: %v", resp.Header)
		}
	}
}

// TestCoalescedStreamErrorNamesEachClientsRequestID: a stream cut short
// ends, for every client of the flight, with an error event naming that
// client's own request id (its X-Request-Id); before, every follower's
// named the leader's.
func TestCoalescedStreamErrorNamesEachClientsRequestID(t *testing.T) {
	gate := make(chan struct{})
	url, gw := startCachingGatewayCfg(t, testConfig(hostedSim(t, gate, sim.Faults{DisconnectRate: 1})), nil, time.Now)
	openAtCleanup(t, gate)
	const n = 3
	type answer struct{ id, body string }
	answers := make(chan answer, n)
	for i := range n {
		go func() {
			resp := post(t, url, fmt.Sprintf(detBody, `,"stream":true`))
			answers <- answer{resp.Header.Get("X-Request-Id"), readAll(t, resp)}
		}()
		waitFlight(t, gw, i+1)
	}
	close(gate)
	for range n {
		a := <-answers
		if a.id == "" || !strings.Contains(a.body, `"upstream_error"`) || !strings.Contains(a.body, "(request id "+a.id+")") {
			t.Errorf("X-Request-Id %s, stream %s: want an error event naming it", a.id, a.body)
		}
	}
}

// TestAnonymousRefusalNamesTheClientAddress: an anonymous caller's per-key
// limits count its address, and its 429 says so (before: "API key rate
// limit exceeded").
func TestAnonymousRefusalNamesTheClientAddress(t *testing.T) {
	cfg := testConfig(hostedSim(t, nil, sim.Faults{}))
	cfg.RateLimits.PerKey = config.RateRule{Requests: limitPtr(t, "rate=1r/m burst=0 nodelay")}
	srv, _ := startGateway(t, cfg)
	body := `{"model":"m1","messages":[{"role":"user","content":"hi"}]}`
	readAll(t, post(t, srv.URL+"/v1/chat/completions", body))
	resp := post(t, srv.URL+"/v1/chat/completions", body)
	_, code, msg := apiErr(t, readAll(t, resp))
	if resp.StatusCode != 429 || code != "rate_limit_exceeded" || !strings.Contains(msg, "client address") || strings.Contains(msg, "API key") {
		t.Fatalf("%d %s %q: want a 429 naming the client address", resp.StatusCode, code, msg)
	}
}

// hostedOnly are hostedSim's headers of a call that no list of per-call
// headers named (before this allowlist, followers got every one of them).
var hostedOnly = []string{"X-Envoy-Upstream-Service-Time", "Apim-Request-Id", "X-Ms-Region", "Anthropic-Ratelimit-Requests-Remaining",
	"Cf-Cache-Status", "Via", "Alt-Svc", "Strict-Transport-Security", "Nel", "Openai-Organization"}

// TestFollowersAndHitsGetOnlyTheAnswersHeaders: a coalesced follower and
// a HIT get the answer's headers (Content-Type, X-Sluice-Model) and their
// own (X-Request-Id, X-Cache, Cache-Control), none of the backend's
// others, whatever their names (before: a follower got all those no list
// named). Two keys of one tenant whose cache rules give different TTLs
// share the flight; the follower's Cache-Control is the shorter of its
// own plan's and the leader's, under whose rule the answer is stored
// (here the leader's minute; TestCoalescedFollowerToldTheStoredLifetime
// has both orders), and so is the HIT's of that entry.
func TestFollowersAndHitsGetOnlyTheAnswersHeaders(t *testing.T) {
	gate := make(chan struct{})
	cfg := hostedConfig(t, hostedSim(t, gate, sim.Faults{}))
	cfg.Cache.Rules = []config.CacheRule{
		{Keys: []string{"k1"}, TTL: config.Duration(time.Minute)},
		{Keys: []string{"k2"}, TTL: config.Duration(5 * time.Minute)},
	}
	url, gw := startCachingGatewayCfg(t, cfg, nil, time.Now)
	openAtCleanup(t, gate)
	type answer struct {
		who string
		h   http.Header
	}
	answers := make(chan answer, 2)
	ask := func(who, key string) {
		resp := post(t, url, fmt.Sprintf(detBody, ""), "Authorization", "Bearer "+key)
		if body := readAll(t, resp); resp.StatusCode != 200 {
			t.Errorf("%s: %d %s", who, resp.StatusCode, body)
		}
		answers <- answer{who, resp.Header}
	}
	go ask("leader", "k1")
	waitFlight(t, gw, 1)
	go ask("follower", "k2")
	waitFlight(t, gw, 2)
	close(gate)
	got := map[string]http.Header{}
	for range 2 {
		a := <-answers
		got[a.who] = a.h
	}
	resp := post(t, url, fmt.Sprintf(detBody, ""), "Authorization", "Bearer k2")
	readAll(t, resp)
	got["hit"] = resp.Header
	for who, want := range map[string]struct{ xcache, cc string }{
		"leader":   {"MISS", "private, max-age=60"},
		"follower": {"COALESCED", "private, max-age=60"},
		"hit":      {"HIT", "private, max-age=60"},
	} {
		h := got[who]
		if h.Get("X-Cache") != want.xcache || !strings.HasPrefix(h.Get("Content-Type"), "application/json") ||
			h.Get("X-Sluice-Model") != "m1" || h.Get("X-Request-Id") == "" {
			t.Errorf("%s: the answer's or its own headers missing: %v", who, h)
		}
		if want.cc != "" && h.Get("Cache-Control") != want.cc {
			t.Errorf("%s: Cache-Control %q, want %q", who, h.Get("Cache-Control"), want.cc)
		}
		for _, k := range hostedOnly {
			// The backend's origin policy reaches no one, the leader
			// neither (proxy's isBackendOrigin).
			origin := k == "Alt-Svc" || k == "Strict-Transport-Security" || k == "Nel" || k == "Via"
			if v := h.Get(k); v != "" && (who != "leader" || origin) {
				t.Errorf("%s got the leader's call's %s: %s", who, k, v)
			} else if v == "" && who == "leader" && !origin {
				t.Errorf("leader: its call's %s missing", k)
			}
		}
	}
}
