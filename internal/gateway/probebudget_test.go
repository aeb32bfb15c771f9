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

// holding is a backend that holds the responses whose ids start with
// prefix (a read of one is a 200, any other a 404, counted in asked) and
// continues any: a POST /v1/responses is counted in continued. Reads of
// ids it holds are not counted: a lookup that found its response cancels
// its other probes, which may still reach their backends later (on a
// loaded machine, after the test has reset asked: 513 reads of 512).
func holding(t *testing.T, prefix string, asked, continued *atomic.Int64) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch id, ok := strings.CutPrefix(r.URL.Path, "/v1/responses/"); {
		case r.Method == http.MethodPost && r.URL.Path == "/v1/responses":
			continued.Add(1)
			fmt.Fprint(w, `{"id":"resp_next","object":"response","status":"completed","model":"m1","output":[],`+
				`"usage":{"input_tokens":1,"output_tokens":1,"total_tokens":2}}`)
		case !ok:
			// a health check: 200
		case strings.HasPrefix(id, prefix):
			fmt.Fprintf(w, `{"id":%q,"object":"response","status":"completed"}`, id)
		default:
			asked.Add(1)
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error":{"message":"not found","type":"invalid_request_error","code":"not_found"}}`)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// A tenant naming distinct made-up ids (none asked twice, so the
// unknown-id cache never answers) spends its probe budget: past
// probeBurst backend reads, on a clock that does not move, its lookups
// are a 429 rate_limit_exceeded with Retry-After before any backend is
// asked, follow-ups and continuations alike; another tenant's are not;
// time gives the reads back at probeRate. Lookups that find their
// response (ids made before a restart) cost nothing: a tenant may make
// any number. Before, every made-up id cost a read of every backend
// (8 here), however many a client sent.
func TestDistinctMadeUpIDsSpendTheProbeBudget(t *testing.T) {
	const n = 8
	var asked, continued atomic.Int64
	var urls []string
	for range n {
		urls = append(urls, holding(t, "resp_held", &asked, &continued))
	}
	cfg := testConfig(urls...)
	cfg.Auth.Keys = []config.Tenant{{Key: "ka", Tenant: "alice"}, {Key: "kb", Tenant: "bob"}, {Key: "kc", Tenant: "carol"}}
	base := time.Now()
	var skew atomic.Int64
	var reg *prometheus.Registry
	srv, _ := startGatewayWith(t, cfg, func(d *Deps) {
		reg = d.Registry.(*prometheus.Registry)
		d.Now = func() time.Time { return base.Add(time.Duration(skew.Load())) }
	})
	get := func(key, id string) (int, string, string) {
		t.Helper()
		resp := do(t, http.MethodGet, srv.URL+"/v1/responses/"+id, "", "Authorization", "Bearer "+key)
		return resp.StatusCode, resp.Header.Get("Retry-After"), readAll(t, resp)
	}
	// Carol's ids are all held by a backend: found, given back.
	for i := range 3 * probeBurst / n {
		if code, _, body := get("kc", fmt.Sprintf("resp_held_%d", i)); code != 200 {
			t.Fatalf("carol's lookup %d of an id a backend holds: %d %s", i, code, body)
		}
	}
	asked.Store(0)
	rounds := 0
	for i := 0; ; i++ {
		code, retry, body := get("ka", fmt.Sprintf("resp_madeup_%d", i))
		if code == 404 {
			rounds++
			if rounds > 2*probeBurst/n {
				t.Fatalf("%d distinct made-up ids answered 404, %d backend reads: no bound", rounds, asked.Load())
			}
			continue
		}
		if code != 429 || retry == "" || !strings.Contains(body, `"code":"rate_limit_exceeded"`) {
			t.Fatalf("past the budget: %d Retry-After %q: %s", code, retry, body)
		}
		break
	}
	if rounds != probeBurst/n || asked.Load() != probeBurst {
		t.Fatalf("%d rounds, %d backend reads before the 429; want %d, %d", rounds, asked.Load(), probeBurst/n, probeBurst)
	}
	resp := post(t, srv.URL+"/v1/responses", `{"model":"m1","input":"and?","previous_response_id":"resp_madeup_x"}`, "Authorization", "Bearer ka")
	if body := readAll(t, resp); resp.StatusCode != 429 || !strings.Contains(body, `"param":"previous_response_id"`) {
		t.Fatalf("a continuation past the budget: %d %s", resp.StatusCode, body)
	}
	if asked.Load() != probeBurst || continued.Load() != 0 {
		t.Fatalf("refused lookups reached the backends: %d reads, %d continuations", asked.Load(), continued.Load())
	}
	if code, _, body := get("kb", "resp_madeup_0"); code != 404 {
		t.Fatalf("another tenant's lookup: %d %s", code, body)
	}
	if v := promtest.Value(t, reg, "sluice_responses_id_lookups_refused_total", "followup"); v != 1 {
		t.Fatalf("refused follow-up lookups %v, want 1", v)
	}
	// A second gives back probeRate reads: probeRate/n lookups more.
	skew.Store(int64(time.Second))
	want := probeRate / n
	for i := range want {
		if code, _, body := get("ka", fmt.Sprintf("resp_later_%d", i)); code != 404 {
			t.Fatalf("a second later, lookup %d of %d: %d %s", i, want, code, body)
		}
	}
	if code, _, _ := get("ka", "resp_later_x"); code != 429 {
		t.Fatalf("a second later, lookup %d: %d, want 429", want+1, code)
	}
}

// An id held by a backend past the 16th of a pool is found, by a
// follow-up and by a continuation (pinned to it). Before, only the first
// 16 were asked: both answered 503 response_unavailable for it, forever.
func TestIDOnSeventeenthBackendIsFound(t *testing.T) {
	var asked, continued, far atomic.Int64
	var urls []string
	for range 19 {
		urls = append(urls, holding(t, "resp_none", &asked, &continued))
	}
	urls = append(urls, holding(t, "resp_far", &asked, &far))
	srv, _ := startGateway(t, testConfig(urls...))
	resp := do(t, http.MethodGet, srv.URL+"/v1/responses/resp_far_1", "")
	if body := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(body, "resp_far_1") {
		t.Fatalf("GET of an id the 20th backend holds: %d %s", resp.StatusCode, body)
	}
	resp = post(t, srv.URL+"/v1/responses", `{"model":"m1","input":"and?","previous_response_id":"resp_far_2"}`)
	if body := readAll(t, resp); resp.StatusCode != 200 || far.Load() != 1 || continued.Load() != 0 {
		t.Fatalf("continuation of an id the 20th backend holds: %d, on it %d, elsewhere %d: %s",
			resp.StatusCode, far.Load(), continued.Load(), body)
	}
}

// Each tenant naming an id nobody holds gets a probe budget; tenants are
// client-chosen (each client address in open mode), so the budgets
// remembered stay within their bound, and /metrics says how many there
// are and what the bound is.
func TestProbeBudgetsOfDistinctTenantsBoundedAndMeasured(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := newProbeBudget(reg, probeRate, probeBurst, 100)
	now := time.Unix(1_700_000_000, 0)
	for i := range 1000 {
		if _, ok := p.take(fmt.Sprintf("ip:10.0.%d.%d", i>>8, i&255), 8, now, "followup"); !ok {
			t.Fatalf("tenant %d refused its first lookup", i)
		}
	}
	if n, limit := promtest.Value(t, reg, "sluice_responses_probe_tenants", ""),
		promtest.Value(t, reg, "sluice_responses_probe_tenants_limit", ""); n < 1 || n > 100 || limit != 100 {
		t.Fatalf("sluice_responses_probe_tenants %v, _limit %v; want 1..100 and 100 after 1,000 tenants", n, limit)
	}
}

// Tenants all in debt: a new one makes room for itself and the next
// sixteenth of the bound at once, so each new client address does not
// range over every remembered budget (the old code dropped one a time:
// 10,000 entries visited per new tenant at the default bound).
func TestProbeBudgetShedsInBatchesWhenAllAreInDebt(t *testing.T) {
	p := newProbeBudget(prometheus.NewRegistry(), probeRate, probeBurst, 160)
	now := time.Unix(1_700_000_000, 0)
	for i := range 160 {
		if _, ok := p.take(fmt.Sprintf("t%d", i), probeBurst+8, now, "followup"); !ok {
			t.Fatalf("tenant %d refused its first lookup", i)
		}
	}
	if n := p.len(); n != 160 {
		t.Fatalf("%d budgets, want 160", n)
	}
	p.take("new", 8, now, "followup")
	if n := p.len(); n != 160-10+1 {
		t.Fatalf("%d budgets after one new tenant at the bound, want %d (a sixteenth shed)", n, 160-10+1)
	}
}
