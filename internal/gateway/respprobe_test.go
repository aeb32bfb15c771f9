package gateway

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/sim"
	"github.com/sluice-gw/sluice/internal/testutil/promtest"
)

// probeBound is the probe bound (timeouts.connect) the tests below set:
// their timers of this duration are the probes', fired by hand.
const probeBound = 3 * time.Second

// askedSim is a simulator that notes the follow-ups it is asked.
type askedSim struct {
	srv   *httptest.Server
	name  string
	mu    sync.Mutex
	paths []string
	// holdUntil, when set, holds its follow-ups' answers until it is
	// closed (or the request ends).
	holdUntil <-chan struct{}
}

func newAskedSims(t *testing.T, n int) []*askedSim {
	var out []*askedSim
	for i := 0; i < n; i++ {
		s := sim.New(sim.Config{Model: "m1", DecodeStepBase: time.Millisecond, Seed: int64(i + 1)})
		t.Cleanup(s.Close)
		a := &askedSim{}
		a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/v1/responses/") {
				a.mu.Lock()
				a.paths = append(a.paths, r.Method+" "+r.URL.EscapedPath())
				hold := a.holdUntil
				a.mu.Unlock()
				if hold != nil {
					select {
					case <-hold:
					case <-r.Context().Done():
						return
					}
				}
			}
			s.ServeHTTP(w, r)
		}))
		t.Cleanup(a.srv.Close)
		a.name = strings.TrimPrefix(a.srv.URL, "http://")
		out = append(out, a)
	}
	return out
}

// hold holds a's follow-up answers until until is closed.
func (a *askedSim) hold(until <-chan struct{}) {
	a.mu.Lock()
	a.holdUntil = until
	a.mu.Unlock()
}

func (a *askedSim) asked() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.paths...)
}

// store makes a response on the simulator itself, so the gateway does
// not know its id (made before a restart, or through another replica).
func (a *askedSim) store(t *testing.T) string {
	t.Helper()
	return decodeResponse(t, readAll(t, post(t, a.srv.URL+"/v1/responses", `{"model":"m1","input":"keep it","max_output_tokens":3}`))).ID
}

// hungFollowUps accepts follow-ups and never answers them; it notes each
// one's arrival and its end by the gateway (its request's context ends
// when the gateway gives up on it and closes the connection).
type hungFollowUps struct {
	srv                *httptest.Server
	arrived, cancelled chan struct{}
	// asked is closed when the first follow-up arrives.
	asked     chan struct{}
	askedOnce sync.Once
}

func newHungFollowUps(t *testing.T) *hungFollowUps {
	h := &hungFollowUps{arrived: make(chan struct{}, 16), cancelled: make(chan struct{}, 16), asked: make(chan struct{})}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/responses/") {
			return // a health check: 200
		}
		h.arrived <- struct{}{}
		h.askedOnce.Do(func() { close(h.asked) })
		<-r.Context().Done()
		h.cancelled <- struct{}{}
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// within waits for ch, or fails after a bound far past any machine's
// pace (a hang guard, not a measure).
func within(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("never: %s", what)
	}
}

// probeTimers are the forwarder's timers, fired by hand: fire(d) runs
// those of duration d still armed.
type probeTimers struct {
	mu    sync.Mutex
	armed map[*probeTimer]bool
}

type probeTimer struct {
	p *probeTimers
	d time.Duration
	f func()
}

func newProbeTimers() *probeTimers { return &probeTimers{armed: map[*probeTimer]bool{}} }

func (p *probeTimers) afterFunc(d time.Duration, f func()) proxy.Timer {
	t := &probeTimer{p: p, d: d, f: f}
	p.mu.Lock()
	p.armed[t] = true
	p.mu.Unlock()
	return t
}

func (p *probeTimers) count(d time.Duration) (n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for t := range p.armed {
		if t.d == d {
			n++
		}
	}
	return n
}

func (p *probeTimers) fire(d time.Duration) {
	var due []*probeTimer
	p.mu.Lock()
	for t := range p.armed {
		if t.d == d {
			due = append(due, t)
			delete(p.armed, t)
		}
	}
	p.mu.Unlock()
	for _, t := range due {
		t.f()
	}
}

func (t *probeTimer) Stop() bool {
	t.p.mu.Lock()
	defer t.p.mu.Unlock()
	was := t.p.armed[t]
	delete(t.p.armed, t)
	return was
}

func (t *probeTimer) Reset(time.Duration) bool {
	t.p.mu.Lock()
	defer t.p.mu.Unlock()
	was := t.p.armed[t]
	t.p.armed[t] = true
	return was
}

// probeGateway serves urls (one pool) with the probe bound set and the
// forwarder's timers injected.
func probeGateway(t *testing.T, timers *probeTimers, urls ...string) (*httptest.Server, *prometheus.Registry) {
	t.Helper()
	cfg := testConfig(urls...)
	cfg.Timeouts.Connect = config.Duration(probeBound)
	var reg *prometheus.Registry
	srv, _ := startGatewayWith(t, cfg, func(d *Deps) {
		reg = d.Registry.(*prometheus.Registry)
		d.AfterFunc = timers.afterFunc
	})
	return srv, reg
}

// askGuarded is do with a client that gives up after a bound far past any
// machine's pace: a gateway that waits on a hung backend fails the test
// instead of hanging it.
func askGuarded(t *testing.T, method, url string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp
}

// An id nobody remembers, held by the last of 16 backends, the first of
// which hangs: the probes go on past the hung one (a few at a time), the
// owner's answer is relayed, and the hung probe is cancelled. No probe
// bound passes here (the injected timers never fire): before, the probes
// went in turn and the first held the client until first_byte.
//
// The owner answers only once the hung backend has the probe: the hung
// probe is started first, but nothing makes its request arrive before 14
// others are answered, and a probe cancelled on its way never arrives
// (on a loaded machine the test once waited for it in vain).
func TestResponsesProbePassesAHungBackend(t *testing.T) {
	hung := newHungFollowUps(t)
	sims := newAskedSims(t, 15)
	owner := sims[14]
	id := owner.store(t)
	owner.hold(hung.asked)
	urls := []string{hung.srv.URL}
	for _, s := range sims {
		urls = append(urls, s.srv.URL)
	}
	timers := newProbeTimers()
	srv, reg := probeGateway(t, timers, urls...)

	resp := askGuarded(t, http.MethodGet, srv.URL+"/v1/responses/"+id)
	got := readAll(t, resp)
	if resp.StatusCode != 200 || decodeResponse(t, got).ID != id || resp.Header.Get("X-Sluice-Backend") != owner.name {
		t.Fatalf("%d from %q: %s", resp.StatusCode, resp.Header.Get("X-Sluice-Backend"), got)
	}
	// Every probe had ended before the answer was relayed (a goroutine
	// past its wg.Done may still be on its way out: askOne is the work).
	if left := goroutinesIn("proxy.(*Forwarder).askOne"); len(left) != 0 {
		t.Fatalf("probes outlived the answer:\n%s", strings.Join(left, "\n\n"))
	}
	within(t, hung.arrived, "the hung backend asked")
	within(t, hung.cancelled, "the hung backend's probe cancelled")
	for i, s := range sims {
		if a := s.asked(); len(a) > 1 || i == 14 && len(a) != 1 {
			t.Fatalf("backend %d asked %v", i, a)
		}
	}
	answered := promtest.Value(t, reg, "sluice_responses_followup_probes_total", "answered")
	cancelled := promtest.Value(t, reg, "sluice_responses_followup_probes_total", "cancelled")
	notFound := promtest.Value(t, reg, "sluice_responses_followup_probes_total", "not_found")
	if answered != 1 || cancelled < 1 || answered+cancelled+notFound != 16 ||
		promtest.Value(t, reg, "sluice_responses_followups_total", "probed") != 1 {
		t.Fatalf("probes: answered %v cancelled %v not_found %v", answered, cancelled, notFound)
	}
}

// An id no backend holds, the last of 16 backends hung: once the others
// said 404 and the hung probe's bound passes, the answer is a 5xx with
// Retry-After (the hung backend may hold the response), not a 404, and
// the hung probe is ended. Before, the probes went in turn, each within
// first_byte, and a failure after 404s was answered 404.
func TestResponsesProbeBoundEndsAHungBackend(t *testing.T) {
	sims := newAskedSims(t, 15)
	hung := newHungFollowUps(t)
	var urls []string
	for _, s := range sims {
		urls = append(urls, s.srv.URL)
	}
	timers := newProbeTimers()
	srv, reg := probeGateway(t, timers, append(urls, hung.srv.URL)...)

	type answer struct {
		resp *http.Response
		body string
	}
	done := make(chan answer, 1)
	go func() {
		resp := askGuarded(t, http.MethodGet, srv.URL+"/v1/responses/resp_nowhere")
		done <- answer{resp, readAll(t, resp)}
	}()
	within(t, hung.arrived, "the hung backend asked")
	eventually(t, "every other probe answered", func() bool { return timers.count(probeBound) == 1 })
	timers.fire(probeBound)
	var a answer
	select {
	case a = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the probe bound passed and the client still waits")
	}
	if a.resp.StatusCode != http.StatusServiceUnavailable || a.resp.Header.Get("Retry-After") == "" ||
		!strings.Contains(a.body, `"code":"response_unavailable"`) {
		t.Fatalf("%d Retry-After %q: %s", a.resp.StatusCode, a.resp.Header.Get("Retry-After"), a.body)
	}
	if left := goroutinesIn("proxy.(*Forwarder).askOne"); len(left) != 0 {
		t.Fatalf("probes outlived the answer:\n%s", strings.Join(left, "\n\n"))
	}
	within(t, hung.cancelled, "the hung backend's probe ended")
	for i, s := range sims {
		if got := s.asked(); len(got) != 1 {
			t.Fatalf("backend %d asked %v, want once", i, got)
		}
	}
	if f, nf := promtest.Value(t, reg, "sluice_responses_followup_probes_total", "failed"),
		promtest.Value(t, reg, "sluice_responses_followup_probes_total", "not_found"); f != 1 || nf != 15 {
		t.Fatalf("probes failed %v not_found %v, want 1 and 15", f, nf)
	}
}

// Backends that say nothing about the id — a 500, an unreachable one —
// are no answer: the owner's is relayed; without an owner, all 404 is
// the gateway's 404, and 404s beside such a failure are a 5xx with
// Retry-After. Before, a 500 was relayed as the answer (ahead of the
// owner's), and a failure after 404s was answered 404.
func TestResponsesProbeFailuresAreNotAnswers(t *testing.T) {
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, `{"error":{"message":"engine error","type":"server_error"}}`)
	}))
	t.Cleanup(failing.Close)
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	sims := newAskedSims(t, 3)
	id := sims[2].store(t)
	timers := newProbeTimers()
	for _, c := range []struct {
		name   string
		urls   []string
		id     string
		status int
		code   string
	}{
		{"500 first, owner last", []string{failing.URL, sims[0].srv.URL, sims[1].srv.URL, sims[2].srv.URL}, id, 200, ""},
		{"all 404", []string{sims[0].srv.URL, sims[1].srv.URL}, "resp_nowhere", 404, "response_not_found"},
		{"404s and a 500", []string{sims[0].srv.URL, failing.URL, sims[1].srv.URL}, "resp_nowhere", 503, "response_unavailable"},
		{"404s, then one unreachable", []string{sims[0].srv.URL, sims[1].srv.URL, gone.URL}, "resp_nowhere", 503, "response_unavailable"},
	} {
		srv, _ := probeGateway(t, timers, c.urls...)
		resp := askGuarded(t, http.MethodGet, srv.URL+"/v1/responses/"+c.id)
		got := readAll(t, resp)
		if resp.StatusCode != c.status || c.code != "" && !strings.Contains(got, `"code":"`+c.code+`"`) ||
			resp.StatusCode >= 500 && resp.Header.Get("Retry-After") == "" || c.status == 200 && decodeResponse(t, got).ID != id {
			t.Errorf("%s: %d Retry-After %q: %s", c.name, resp.StatusCode, resp.Header.Get("Retry-After"), got)
		}
	}
}

// The path is read escaped: an id is one segment, so an encoded slash is
// part of the id ("a/input_items" is no id: OpenAI's 400 naming
// response_id, no backend asked), not a route below it, and
// /v1/responses%2F{id} is no follow-up. Escapes inside a segment are
// read as the character they stand for. Before, the decoded path was
// split: {id}%2Finput_items listed the input items, {id}%2Fcancel
// cancelled.
func TestResponsesFollowUpEncodedSlash(t *testing.T) {
	sims := newAskedSims(t, 1)
	s := sims[0]
	timers := newProbeTimers()
	srv, _ := probeGateway(t, timers, s.srv.URL)
	id := decodeResponse(t, readAll(t, post(t, srv.URL+"/v1/responses", `{"model":"m1","input":"x","max_output_tokens":3}`))).ID
	escapedID := strings.Replace(id, "_", "%5F", 1)
	for _, c := range []struct {
		method, path string
		status       int
		code, asked  string
	}{
		{http.MethodGet, "/v1/responses/" + id + "%2Finput_items", 400, "invalid_value", ""},
		{http.MethodGet, "/v1/responses/" + id + "%2finput_items", 400, "invalid_value", ""},
		{http.MethodPost, "/v1/responses/" + id + "%2Fcancel", 405, "method_not_allowed", ""}, // POST /v1/responses/{id}
		{http.MethodDelete, "/v1/responses/" + id + "%2F", 400, "invalid_value", ""},
		{http.MethodGet, "/v1/responses/" + strings.Repeat("a", 300), 400, "string_above_max_length", ""},
		{http.MethodGet, "/v1/responses%2F" + id, 404, "unknown_url", ""},
		{http.MethodGet, "/v1/responses/" + id + "/input_items", 200, "", "GET /v1/responses/" + id + "/input_items"},
		{http.MethodGet, "/v1/responses/" + escapedID, 200, "", "GET /v1/responses/" + id},
	} {
		before := len(s.asked())
		resp := askGuarded(t, c.method, srv.URL+c.path)
		got := readAll(t, resp)
		if resp.StatusCode != c.status || c.code != "" && !strings.Contains(got, `"code":"`+c.code+`"`) ||
			c.status == 400 && !strings.Contains(got, `"param":"response_id"`) {
			t.Errorf("%s %s: %d %s", c.method, c.path, resp.StatusCode, got)
		}
		asked := s.asked()[before:]
		if c.asked == "" && len(asked) != 0 || c.asked != "" && (len(asked) != 1 || asked[0] != c.asked) {
			t.Errorf("%s %s: the backend was asked %v", c.method, c.path, asked)
		}
	}
}

// A Responses answer too large to hold (over 256 KiB) whose "id" comes
// after its output is still remembered: its follow-ups go to its backend,
// not asked of the others. Before, the id was read only when first.
func TestResponsesLargeAnswerIDAfterOutput(t *testing.T) {
	const id = "resp_late_1"
	text := strings.Repeat(`a long answer, \"quoted\" {\"id\":\"not_this\"} `, 8000) // ~400 KB
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPost {
			fmt.Fprint(w, `{"object":"response","status":"completed","model":"m1","output":[{"type":"message","id":"msg_1",`+
				`"content":[{"type":"output_text","text":"`+text+`"}]}],"usage":{"input_tokens":1,"output_tokens":2},"id":"`+id+`"}`)
			return
		}
		fmt.Fprint(w, `{"id":"`+id+`","object":"response","status":"completed"}`)
	}))
	t.Cleanup(big.Close)
	other := newAskedSims(t, 1)[0]
	// The other backend comes first in the config (a probe asks it
	// first) and serves another model, so the POST reaches big.
	cfg := testConfig(other.srv.URL)
	cfg.Models[0].Name = "m2"
	cfg.Models = append(cfg.Models, config.Model{Name: "m1", Policy: "round_robin", Backends: []config.Backend{{URL: big.URL}}})
	var reg *prometheus.Registry
	srv, _ := startGatewayWith(t, cfg, func(d *Deps) { reg = d.Registry.(*prometheus.Registry) })
	resp := post(t, srv.URL+"/v1/responses", `{"model":"m1","input":"x"}`)
	if got := readAll(t, resp); resp.StatusCode != 200 || len(got) < 300<<10 {
		t.Fatalf("%d %.200s", resp.StatusCode, got)
	}
	// The id is remembered once the relay has ended, just after the
	// client has the last byte.
	eventually(t, "the answer's id remembered", func() bool { return promtest.Value(t, reg, "sluice_responses_ids", "") == 1 })
	resp = do(t, http.MethodGet, srv.URL+"/v1/responses/"+id, "")
	if got := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(got, id) {
		t.Fatalf("%d %s", resp.StatusCode, got)
	}
	if asked := other.asked(); len(asked) != 0 || promtest.Value(t, reg, "sluice_responses_followups_total", "known") != 1 {
		t.Fatalf("the id was not remembered: the other backend was asked %v (known %v)", asked,
			promtest.Value(t, reg, "sluice_responses_followups_total", "known"))
	}
}
