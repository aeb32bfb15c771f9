package gateway

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
)

// A newcomer's requests that do not stream grow its tenant ramp's
// allowance only when the backend answered them 2xx in full
// (admission.Ticket.Ended): tenant A holds one slot, tenant B, busy beside
// it, sends three requests one after another, then three at once that the
// backend holds. After three 500s B's allowance is still 1: one of the
// three reaches the backend, two wait for the ramp. After three 200s it
// is 4: all three go. Every release counted before, so the 500s let all
// three through too. Adaptive limits (the default): no slot is known.
// Cacheable (temperature 0), each request leads its own flight, whose
// upstream call holds the ticket (startUpstream); otherwise it is sent
// on the client's goroutine (serveDirect). B's three answered from a
// cache A filled (shared across tenants) hold no ticket and are no
// completion either: a hit is not the engines' answer.
func TestRampNonStreamCountsOnlyAnswers(t *testing.T) {
	for _, c := range []struct {
		name         string
		status       int
		flights      bool
		hits         bool // B's three are cache hits of A's answers
		wantArrived  int
		wantRampHeld int
	}{
		{"500s", http.StatusInternalServerError, false, false, 1, 2},
		{"200s", http.StatusOK, false, false, 3, 0},
		{"500s in flights", http.StatusInternalServerError, true, false, 1, 2},
		{"200s in flights", http.StatusOK, true, false, 3, 0},
		{"200s from the cache", http.StatusOK, true, true, 1, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			hold := make(chan struct{})
			var arrived atomic.Int64
			be := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				w.Header().Set("Content-Type", "application/json")
				switch {
				case bytes.Contains(b, []byte("hold")):
					if bytes.Contains(b, []byte("b-hold")) {
						arrived.Add(1)
					}
					select {
					case <-hold:
					case <-r.Context().Done():
						return
					}
				case bytes.Contains(b, []byte("b-quick")) && c.status != http.StatusOK:
					w.WriteHeader(c.status)
					io.WriteString(w, `{"error":{"message":"engine failed","type":"server_error","code":null}}`)
					return
				}
				io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`)
			}))
			cfg := testConfig(be)
			cfg.Retry.Attempts, cfg.Retry.HedgeFactor = 1, 0
			cfg.Health.MaxFails = 0 // the 500s must not eject the one backend
			cfg.Breaker.Enabled = false
			// A loaded machine's gap between B's requests must not end its
			// ramp (quiet for a window: busy afresh, completions forgotten).
			cfg.Admission.TenantRamp = config.Duration(time.Minute)
			cfg.Cache.Shared = c.hits
			cfg.Auth.Keys = []config.Tenant{{Key: "sk-a", Tenant: "a"}, {Key: "sk-b", Tenant: "b"}}
			var url string
			var gw *Gateway
			if c.flights { // a response cache: requests coalesce in flights
				url, gw = startCachingGatewayCfg(t, cfg, nil, time.Now)
			} else {
				var srv *httptest.Server
				srv, gw = startGateway(t, cfg)
				url = srv.URL + "/v1/chat/completions"
			}
			q := gw.Runtime().Pools["m1"].queue

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			send := func(key, content string) (int, error) {
				body := `{"model":"m1","max_tokens":4,"messages":[{"role":"user","content":"` + content + `"}]}`
				if c.flights {
					body = strings.Replace(body, `"max_tokens"`, `"temperature":0,"max_tokens"`, 1)
				}
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
				if err != nil {
					return 0, err
				}
				req.Header.Set("Authorization", "Bearer "+key)
				req.Header.Set("X-Sluice-Priority", "batch") // a 5 min objective: a held request is not refused
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return 0, err
				}
				defer resp.Body.Close()
				_, _ = io.Copy(io.Discard, resp.Body)
				want := "MISS" // a flight's leader
				if c.hits && key == "sk-b" && strings.HasPrefix(content, "b-quick") {
					want = "HIT"
				}
				if x := resp.Header.Get("X-Cache"); c.flights && x != want {
					t.Errorf("%s of %s: X-Cache %q; want %s", content, key, x, want)
				}
				return resp.StatusCode, nil
			}
			var wg sync.WaitGroup
			defer wg.Wait()
			defer close(hold)
			if c.hits { // A, alone, fills the cache with B's three answers
				for i := range 3 {
					if st, err := send("sk-a", "b-quick "+itoa(i)); err != nil || st != http.StatusOK {
						t.Fatalf("A's request %d: %d, %v; want 200", i, st, err)
					}
				}
			}
			wg.Go(func() { _, _ = send("sk-a", "a-hold") })
			waitUntil(t, "A's slot", func() bool { return q.Stats().InUse == 1 })
			for i := range 3 {
				if st, err := send("sk-b", "b-quick "+itoa(i)); err != nil || st != c.status {
					t.Fatalf("B's request %d: %d, %v; want %d", i, st, err, c.status)
				}
			}
			for i := range 3 {
				wg.Go(func() { _, _ = send("sk-b", "b-hold "+itoa(i)) })
			}
			waitUntil(t, "B's three at the backend or held", func() bool {
				return int(arrived.Load())+q.Stats().RampHeld == 3
			})
			if n, h := arrived.Load(), q.Stats().RampHeld; n != int64(c.wantArrived) || h != c.wantRampHeld {
				t.Fatalf("after three %d answers: %d of B's three at the backend, %d held by its ramp; want %d, %d",
					c.status, n, h, c.wantArrived, c.wantRampHeld)
			}
		})
	}
}
