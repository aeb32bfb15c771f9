package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
)

// A stream request the backend answers in JSON (it ignored "stream"; the
// gateway relays the answer as events) is answered: its tenant's ramp
// counts it as a completion, as every release counted before ramp4. Since
// ramp4 only a first token counted, and a JSON answer tells none, so a
// newcomer beside an active tenant never grew past its first allowance
// while its answers came back whole: tenant A on two streams, B answered
// once, B's next two could not both start (one held, 0 of 2 answers
// counted) with every engine slot but three free.
//
// The backend holds each request until the test lets it answer, so which
// are granted is read at the backend, and which are held in the queue's
// stats: no timing. The ramp's window is long (1 min) so B stays active
// between its requests on a loaded machine.
func TestJSONAnsweredStreamGrowsRamp(t *testing.T) {
	var mu sync.Mutex
	arrived := map[string]bool{}
	release := map[string]chan struct{}{}
	gate := func(name string) chan struct{} {
		mu.Lock()
		defer mu.Unlock()
		if release[name] == nil {
			release[name] = make(chan struct{})
		}
		return release[name]
	}
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Messages []struct{ Content string } `json:"messages"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Messages) == 0 {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		name := req.Messages[0].Content
		mu.Lock()
		arrived[name] = true
		mu.Unlock()
		select {
		case <-gate(name):
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"c-`+name+`","object":"chat.completion","model":"m1","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	}))
	t.Cleanup(be.Close)
	cfg := testConfig(be.URL)
	cfg.Retry.HedgeFactor = 0
	cfg.Admission.TenantRamp = config.Duration(time.Minute)
	cfg.Auth.Keys = []config.Tenant{{Key: "sk-a", Tenant: "a"}, {Key: "sk-b", Tenant: "b"}}
	srv, gw := startGateway(t, cfg)
	q := gw.Runtime().Pools["m1"].queue

	ctx, cancel := context.WithCancel(context.Background())
	var calls sync.WaitGroup
	defer func() {
		mu.Lock()
		for _, ch := range release {
			select {
			case <-ch:
			default:
				close(ch)
			}
		}
		mu.Unlock()
		cancel()
		calls.Wait()
	}()
	// send streams name's request as key's tenant, read to its end.
	send := func(key, name string) {
		calls.Go(func() {
			body := `{"model":"m1","stream":true,"messages":[{"role":"user","content":"` + name + `"}]}`
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			req.Header.Set("Authorization", "Bearer "+key)
			req.Header.Set("X-Sluice-Priority", "batch") // a 5 min objective: held, not refused
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK && ctx.Err() == nil {
				t.Errorf("%s: %d %s", name, resp.StatusCode, b)
			}
		})
	}
	// until waits for cond, read under mu, with the queue's stats; a hang
	// guard of a minute, not a timing.
	until := func(what string, cond func(held int) bool) {
		t.Helper()
		for end := time.Now().Add(time.Minute); ; {
			held := q.Stats().RampHeld
			mu.Lock()
			ok := cond(held)
			mu.Unlock()
			if ok {
				return
			}
			if time.Now().After(end) {
				t.Fatalf("not %s after a minute (arrived %v, held %d)", what, arrived, held)
			}
			time.Sleep(5 * time.Millisecond) // a poll, not a synchronisation
		}
	}
	send("sk-a", "a1")
	send("sk-a", "a2")
	until("A's two at the backend", func(int) bool { return arrived["a1"] && arrived["a2"] })
	done := make(chan struct{})
	calls.Go(func() {
		defer close(done)
		body := `{"model":"m1","stream":true,"messages":[{"role":"user","content":"b1"}]}`
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer sk-b")
		req.Header.Set("X-Sluice-Priority", "batch")
		close(gate("b1")) // answered at once
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "data: [DONE]") {
			t.Errorf("b1: %d %s; want its JSON answer as events", resp.StatusCode, b)
		}
	})
	<-done
	send("sk-b", "b2")
	send("sk-b", "b3")
	until("B's two granted or held", func(held int) bool {
		n := held
		for _, name := range []string{"b2", "b3"} {
			if arrived[name] {
				n++
			}
		}
		return n == 2
	})
	mu.Lock()
	both := arrived["b2"] && arrived["b3"]
	mu.Unlock()
	if !both {
		t.Fatalf("B's next two: %d held by its ramp after its first stream was answered in JSON; want both granted (its allowance 1 plus that answer)", q.Stats().RampHeld)
	}
}
