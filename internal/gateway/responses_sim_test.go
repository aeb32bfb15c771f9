package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/sim"
	"github.com/sluice-gw/sluice/internal/testutil/promtest"
)

// simPool starts n simulators and a gateway over them (round robin); edit
// adjusts the config.
func simPool(t *testing.T, n int, edit func(*config.Config)) (*httptest.Server, *prometheus.Registry, []*sim.Server) {
	t.Helper()
	var sims []*sim.Server
	var urls []string
	for i := 0; i < n; i++ {
		s, be := simBackend(t, sim.Config{Model: "m1", DecodeStepBase: time.Millisecond, Seed: int64(i + 1)})
		sims, urls = append(sims, s), append(urls, be.URL)
	}
	cfg := testConfig(urls...)
	if edit != nil {
		edit(cfg)
	}
	var reg *prometheus.Registry
	srv, _ := startGatewayWith(t, cfg, func(d *Deps) { reg = d.Registry.(*prometheus.Registry) })
	return srv, reg, sims
}

type simResponse struct {
	ID     string `json:"id"`
	Object string `json:"object"`
	Usage  struct {
		InputTokens  int `json:"input_tokens"`
		OutputTokens int `json:"output_tokens"`
	} `json:"usage"`
}

func decodeResponse(t *testing.T, body string) simResponse {
	t.Helper()
	var r simResponse
	if err := json.Unmarshal([]byte(body), &r); err != nil || r.Object != "response" || r.ID == "" {
		t.Fatalf("not a response (%v): %s", err, body)
	}
	return r
}

func TestResponsesThroughSimulators(t *testing.T) {
	srv, reg, sims := simPool(t, 2, nil)
	url := srv.URL + "/v1/responses"
	det := `{"model":"m1","input":"what is a sluice","temperature":0,"max_output_tokens":6}`
	var out int
	var ids []string
	for i := 0; i < 2; i++ { // identical and deterministic: never cached, both reach a backend
		resp := post(t, url, det)
		got := readAll(t, resp)
		if resp.StatusCode != 200 || resp.Header.Get("X-Cache") != "" {
			t.Fatalf("%d X-Cache %q: %s", resp.StatusCode, resp.Header.Get("X-Cache"), got)
		}
		r := decodeResponse(t, got)
		out += r.Usage.OutputTokens
		ids = append(ids, r.ID)
	}
	// A stream: named events, no [DONE], the final event's usage counted.
	resp := post(t, url, `{"model":"m1","input":"stream it","stream":true,"max_output_tokens":5}`)
	stream := readAll(t, resp)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") || strings.Contains(stream, "[DONE]") {
		t.Fatalf("%s: %s", ct, stream)
	}
	final := stream[strings.LastIndex(stream, "event: "):]
	if !strings.HasPrefix(final, "event: response.incomplete\n") && !strings.HasPrefix(final, "event: response.completed\n") {
		t.Fatalf("stream ends with %q", final)
	}
	data := strings.TrimSuffix(final[strings.Index(final, "data: ")+len("data: "):], "\n\n")
	var fe struct{ Response json.RawMessage }
	json.Unmarshal([]byte(data), &fe)
	r := decodeResponse(t, string(fe.Response))
	out += r.Usage.OutputTokens
	ids = append(ids, r.ID)

	if n := sims[0].Stats().Requests + sims[1].Stats().Requests; n != 3 {
		t.Fatalf("the simulators saw %d requests, want 3", n)
	}
	if got := promtest.Value(t, reg, "sluice_tokens_total", "out"); got != float64(out) || out == 0 {
		t.Fatalf("sluice_tokens_total{out} %v, the answers' output_tokens %d", got, out)
	}

	// Follow-ups reach the simulator that made each response: the other
	// would answer 404.
	for _, id := range ids {
		for _, path := range []string{"", "/input_items"} {
			resp := do(t, http.MethodGet, url+"/"+id+path, "")
			if got := readAll(t, resp); resp.StatusCode != 200 {
				t.Fatalf("GET %s%s: %d %s", id, path, resp.StatusCode, got)
			}
		}
	}
	if p := promtest.Value(t, reg, "sluice_responses_followups_total", "probed"); p != 0 {
		t.Fatalf("%v follow-ups of known ids probed", p)
	}
	// previous_response_id: each continuation must land where the last
	// response lives, though round robin would alternate.
	prev := ids[0]
	for i := 0; i < 3; i++ {
		resp := post(t, url, `{"model":"m1","input":"and then?","max_output_tokens":3,"previous_response_id":"`+prev+`"}`)
		got := readAll(t, resp)
		if resp.StatusCode != 200 {
			t.Fatalf("continuation %d of %s: %d %s", i, prev, resp.StatusCode, got)
		}
		prev = decodeResponse(t, got).ID
	}
	// DELETE reaches the owner; the id is then unknown everywhere.
	if resp := do(t, http.MethodDelete, url+"/"+ids[1], ""); readAll(t, resp) == "" || resp.StatusCode != 200 {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	resp = do(t, http.MethodGet, url+"/"+ids[1], "")
	if got := readAll(t, resp); resp.StatusCode != 404 || !strings.Contains(got, `"code":"response_not_found"`) {
		t.Fatalf("GET after DELETE: %d %s", resp.StatusCode, got)
	}
}

func TestResponsesTenantIsolationThroughSimulators(t *testing.T) {
	srv, _, sims := simPool(t, 2, func(c *config.Config) {
		c.Auth.Keys = []config.Tenant{{Key: "ka", Tenant: "alice"}, {Key: "kb", Tenant: "bob"}}
		c.Auth.RequireKey = true
	})
	url := srv.URL + "/v1/responses"
	r := decodeResponse(t, readAll(t, post(t, url, `{"model":"m1","input":"mine","max_output_tokens":3}`, "Authorization", "Bearer ka")))
	for _, m := range []string{http.MethodGet, http.MethodDelete} {
		resp := do(t, m, url+"/"+r.ID, "", "Authorization", "Bearer kb")
		if got := readAll(t, resp); resp.StatusCode != 404 {
			t.Fatalf("bob %s alice's response: %d %s", m, resp.StatusCode, got)
		}
	}
	// Bob's continuation of alice's id must read as that of an id nobody
	// holds (the simulator's answer, which is OpenAI's): a different
	// status or error would tell him the id exists.
	continueAs := func(id string) (int, map[string]any) {
		resp := post(t, url, `{"model":"m1","input":"x","previous_response_id":"`+id+`"}`, "Authorization", "Bearer kb")
		var e map[string]any
		if err := json.Unmarshal([]byte(strings.ReplaceAll(readAll(t, resp), id, "ID")), &e); err != nil {
			t.Fatalf("continuing %s: %v", id, err)
		}
		return resp.StatusCode, e
	}
	unknownStatus, unknownErr := continueAs("resp_nobody0000000000000000")
	before := sims[0].Stats().Requests + sims[1].Stats().Requests // the unknown id's continuation reached a simulator
	status, got := continueAs(r.ID)
	if status != unknownStatus || !reflect.DeepEqual(got, unknownErr) {
		t.Fatalf("bob continuing alice's response: %d %v; an id nobody holds: %d %v", status, got, unknownStatus, unknownErr)
	}
	if resp := do(t, http.MethodGet, url+"/"+r.ID, ""); readAll(t, resp) == "" || resp.StatusCode != 401 {
		t.Fatalf("no key: %d", resp.StatusCode)
	}
	if after := sims[0].Stats().Requests + sims[1].Stats().Requests; after != before {
		t.Fatal("a refused continuation reached a simulator")
	}
	resp := do(t, http.MethodGet, url+"/"+r.ID, "", "Authorization", "Bearer ka")
	if got := readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("alice: %d %s", resp.StatusCode, got)
	}
}
