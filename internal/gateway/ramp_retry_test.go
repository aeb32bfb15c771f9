package gateway

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
)

// A newcomer's request that does not stream, answered 502 by one backend
// and retried on another that answers it 200, is a ramp completion: the
// request's one ticket is told the outcome of the whole request
// (proxy.Result.Outcome after its retries), not of its first attempt.
// Tenant A holds a slot; tenant B, busy beside it, sends three requests
// one after another, then three at once that the backends hold. Each of
// the three is answered 502 at its first attempt; retried, 200: B's
// allowance is then 4 and all three held requests reach a backend. When
// the retry is answered 502 too, B's allowance stays 1 (one at a backend,
// two held by its ramp). A guard of the review of ramp5 (a retry's
// earlier failure must not hide its success): it passes on the merged
// code, and fails (1 and 2) when a retried request's ticket is told a
// failure.
func TestRampRetriedAnswerCounts(t *testing.T) {
	for _, c := range []struct {
		name         string
		retryStatus  int // what the retry of each of B's three quick requests gets
		wantArrived  int
		wantRampHeld int
	}{
		{"502 then 200", http.StatusOK, 3, 0},
		{"502 then 502", http.StatusBadGateway, 1, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			hold := make(chan struct{})
			var arrived atomic.Int64
			var mu sync.Mutex
			seen := map[string]int{} // attempts of each quick request, by content
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
				case bytes.Contains(b, []byte("b-quick")):
					mu.Lock()
					seen[string(b)]++
					n := seen[string(b)]
					mu.Unlock()
					if n == 1 || c.retryStatus != http.StatusOK {
						w.WriteHeader(http.StatusBadGateway)
						io.WriteString(w, `{"error":{"message":"engine lost","type":"server_error","code":null}}`)
						return
					}
				}
				io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`)
			})
			cfg := testConfig(httptestServer(t, h), httptestServer(t, h))
			cfg.Retry.Attempts, cfg.Retry.HedgeFactor = 2, 0
			cfg.Health.MaxFails = 0 // the 502s must not eject a backend
			cfg.Breaker.Enabled = false
			cfg.Admission.TenantRamp = config.Duration(time.Minute)
			cfg.Auth.Keys = []config.Tenant{{Key: "sk-a", Tenant: "a"}, {Key: "sk-b", Tenant: "b"}}
			srv, gw := startGateway(t, cfg)
			q := gw.Runtime().Pools["m1"].queue

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			send := func(key, content string) (int, error) {
				body := `{"model":"m1","max_tokens":4,"messages":[{"role":"user","content":"` + content + `"}]}`
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(body))
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
				return resp.StatusCode, nil
			}
			var wg sync.WaitGroup
			defer wg.Wait()
			defer close(hold)
			wg.Go(func() { _, _ = send("sk-a", "a-hold") })
			waitUntil(t, "A's slot", func() bool { return q.Stats().InUse == 1 })
			for i := range 3 {
				if st, err := send("sk-b", "b-quick "+itoa(i)); err != nil || st != c.retryStatus {
					t.Fatalf("B's request %d: %d, %v; want %d", i, st, err, c.retryStatus)
				}
			}
			mu.Lock()
			for k, n := range seen {
				if n != 2 {
					t.Errorf("%s: %d attempts; want 2 (a 502, then a retry)", k, n)
				}
			}
			mu.Unlock()
			for i := range 3 {
				wg.Go(func() { _, _ = send("sk-b", "b-hold "+itoa(i)) })
			}
			waitUntil(t, "B's three at a backend or held", func() bool {
				return int(arrived.Load())+q.Stats().RampHeld == 3
			})
			if n, h := arrived.Load(), q.Stats().RampHeld; n != int64(c.wantArrived) || h != c.wantRampHeld {
				t.Fatalf("after three retried requests (%d): %d of B's three at a backend, %d held by its ramp; want %d, %d",
					c.retryStatus, n, h, c.wantArrived, c.wantRampHeld)
			}
		})
	}
}
