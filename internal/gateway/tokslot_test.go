package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluice-gw/sluice/internal/endpoint"
	outc "github.com/sluice-gw/sluice/internal/outcome"
)

// splitBackend answers /tokenize when tokRelease lets it (at once while
// open) and holds every other request until chatRelease closes, counting
// what arrives: an engine whose batch and tokenizer are apart, as vLLM's.
type splitBackend struct {
	*httptest.Server
	chatRelease, tokRelease chan struct{}
	chats, toks             chan struct{} // one value per arrival
	chatOnce, tokOnce       sync.Once
}

func newSplitBackend(t *testing.T, holdTokenize bool) *splitBackend {
	s := &splitBackend{chatRelease: make(chan struct{}), tokRelease: make(chan struct{}),
		chats: make(chan struct{}, 1000), toks: make(chan struct{}, 1000)}
	if !holdTokenize {
		s.openTok()
	}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		gate, arrived := s.chatRelease, s.chats
		if r.URL.Path == "/tokenize" {
			gate, arrived = s.tokRelease, s.toks
		}
		arrived <- struct{}{}
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/tokenize" {
			io.WriteString(w, `{"count":1,"max_model_len":8192,"tokens":[1]}`)
			return
		}
		io.WriteString(w, `{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}`)
	}))
	t.Cleanup(func() { s.openChat(); s.openTok(); s.Close() })
	return s
}

func (s *splitBackend) openChat() { s.chatOnce.Do(func() { close(s.chatRelease) }) }
func (s *splitBackend) openTok()  { s.tokOnce.Do(func() { close(s.tokRelease) }) }

// postAsync posts body to url from a goroutine and reports how it ended.
func postAsync(url, body string, ended chan<- outcome) {
	go func() {
		resp, err := http.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			ended <- outcome{err: err}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		ended <- outcome{status: resp.StatusCode}
	}()
}

const tokenizeBody = `{"model":"m1","prompt":"q"}`

// A tokenizer call takes no engine slot: with the backend's one slot held
// by a chat it is answered at once (before: it waited for the slot and was
// refused pool_saturated), and tokenizer calls held at the backend leave
// the engine slot to an admitted chat, which starts without a slot wait
// (before: it waited its bound and was refused pool_saturated).
func TestTokenizeTakesNoEngineSlot(t *testing.T) {
	be := newSplitBackend(t, false)
	cfg := testConfig(be.URL)
	cfg.Models[0].Backends[0].MaxConcurrency = 1
	srv, gw := startGateway(t, cfg)
	b := gw.Runtime().Pools["m1"].Backends[0]

	ended := make(chan outcome, 1)
	postInBackground(srv.URL+"/v1/chat/completions", ended)
	<-be.chats
	resp := post(t, srv.URL+"/tokenize", tokenizeBody)
	if body := readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("tokenize with the engine slot held: %d %s", resp.StatusCode, body)
	}
	if n, c := b.Inflight(), b.CPUInflight(); n != 1 || c != 0 {
		t.Fatalf("engine in flight %d, CPU-side %d; want the chat only", n, c)
	}
	be.openChat()
	if o := <-ended; o.err != nil || o.status != 200 {
		t.Fatalf("held chat: %+v", o)
	}

	// Tokenizer calls held at the backend: the engine slot stays free.
	be2 := newSplitBackend(t, true)
	cfg2 := testConfig(be2.URL)
	cfg2.Models[0].Backends[0].MaxConcurrency = 1
	srv2, gw2 := startGateway(t, cfg2)
	b = gw2.Runtime().Pools["m1"].Backends[0]
	toks := make(chan outcome, 4)
	for range 4 {
		postAsync(srv2.URL+"/tokenize", tokenizeBody, toks)
		<-be2.toks
	}
	if n, c := b.Inflight(), b.CPUInflight(); n != 0 || c != 4 {
		t.Fatalf("with 4 tokenize calls held: engine in flight %d, CPU-side %d; want 0, 4", n, c)
	}
	be2.openChat()
	resp = post(t, srv2.URL+"/v1/chat/completions", chatBody)
	if body := readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("chat beside held tokenize calls: %d %s", resp.StatusCode, body)
	}
	for _, o := range []string{"served", "refused"} {
		if n := testutil.ToFloat64(gw2.metrics.SlotWaits.WithLabelValues("m1", o)); n != 0 {
			t.Fatalf("chat waited for a slot (%s %v)", o, n)
		}
	}
	be2.openTok()
	for range 4 {
		if o := <-toks; o.err != nil || o.status != 200 {
			t.Fatalf("held tokenize: %+v", o)
		}
	}
	if c := b.CPUInflight(); c != 0 {
		t.Fatalf("CPU-side calls outstanding after all answered: %d", c)
	}
}

// The CPU-side cap: with endpoint.CPUSlots tokenizer calls outstanding on
// the pool's only backend, one more is refused at once, 503
// pool_saturated with Retry-After, and never reaches the backend (before:
// it took an engine slot of the unlimited backend and was sent).
func TestTokenizeCPUSlotsBounded(t *testing.T) {
	be := newSplitBackend(t, true)
	srv, gw := startGateway(t, testConfig(be.URL))
	gw.Runtime().Pools["m1"].Backends[0].SetLimiter(nil) // no engine limit: only the CPU-side cap bounds
	held := make(chan outcome, endpoint.CPUSlots)
	for range endpoint.CPUSlots {
		postAsync(srv.URL+"/tokenize", tokenizeBody, held)
		<-be.toks
	}
	over := make(chan outcome, 1)
	postAsync(srv.URL+"/tokenize", tokenizeBody, over)
	select {
	case <-be.toks:
		t.Fatalf("call %d over the CPU-side cap reached the backend", endpoint.CPUSlots+1)
	case o := <-over:
		if o.err != nil || o.status != 503 {
			t.Fatalf("over the cap: %+v", o)
		}
	}
	resp := post(t, srv.URL+"/tokenize", tokenizeBody)
	body := readAll(t, resp)
	if _, code, _ := apiErr(t, body); resp.StatusCode != 503 || code != "pool_saturated" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("over the cap: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	if strings.Contains(string(body), "CPU") || strings.Contains(string(body), "127.0.0.1") {
		t.Fatalf("refusal names internals: %s", body)
	}
	// The held calls are on /metrics and /status, apart from the engine's.
	admin := adminServer(t, gw)
	_, _, metrics := get(t, admin.URL+"/metrics")
	if !regexp.MustCompile(`(?m)^sluice_backend_cpu_inflight\{[^}]*model="m1"[^}]*\} 16$`).MatchString(metrics) {
		t.Errorf("/metrics has no sluice_backend_cpu_inflight of 16")
	}
	if _, _, status := get(t, admin.URL+"/status"); !strings.Contains(status, `"cpu_inflight": 16,`) {
		t.Errorf("/status has no cpu_inflight of 16: %s", status)
	}
	be.openTok()
	for range endpoint.CPUSlots {
		if o := <-held; o.err != nil || o.status != 200 {
			t.Fatalf("held tokenize: %+v", o)
		}
	}
}

// countingLimiter is an adaptive limit that counts the samples it is fed.
type countingLimiter struct{ samples atomic.Int64 }

func (l *countingLimiter) Limit() int { return 4 }
func (l *countingLimiter) Observe(time.Time, time.Duration, int, outc.Outcome) {
	l.samples.Add(1)
}

// A tokenizer call feeds neither the adaptive limit nor the latency
// estimates routing reads; a chat does (so the test can fail).
func TestTokenizeTeachesNoLatency(t *testing.T) {
	be := newSplitBackend(t, false)
	be.openChat()
	srv, gw := startGateway(t, testConfig(be.URL))
	b := gw.Runtime().Pools["m1"].Backends[0]
	lim := &countingLimiter{}
	b.SetLimiter(lim)
	for range 3 {
		resp := post(t, srv.URL+"/tokenize", tokenizeBody)
		if body := readAll(t, resp); resp.StatusCode != 200 {
			t.Fatalf("tokenize: %d %s", resp.StatusCode, body)
		}
	}
	if n, typical := lim.samples.Load(), b.TypicalLatency(); n != 0 || typical != 0 {
		t.Fatalf("after 3 tokenize calls: %d limiter samples, typical latency %v; want none", n, typical)
	}
	resp := post(t, srv.URL+"/v1/chat/completions", chatBody)
	readAll(t, resp)
	if n := lim.samples.Load(); n != 1 {
		t.Fatalf("after a chat: %d limiter samples, want 1", n)
	}
}
