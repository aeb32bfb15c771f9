package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// all502 is n backends that read each request's body, then answer 502:
// the request was sent, and taken, before it failed. calls counts them.
func all502(t *testing.T, n int, calls *atomic.Int32) []string {
	urls := make([]string, n)
	for i := range urls {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			calls.Add(1)
			w.WriteHeader(http.StatusBadGateway)
		}))
		t.Cleanup(srv.Close)
		urls[i] = srv.URL
	}
	return urls
}

// TestRetriesOf502AreBounded measures how many backend calls client
// requests cause when every backend answers 502 after reading the body,
// with the default retry settings (3 attempts, budget 0.2 of requests and
// 5 a second): one request alone makes 3 (attempts); 100 within one
// second of the gateway's clock at most 100 × 1.2 + the 5 the budget
// starts with + the 5 its floor adds in that second (measured: 129).
// Passive ejection, which app wires and this gateway has not, is left out:
// the bound holds without it. Each client gets the last backend's 502.
func TestRetriesOf502AreBounded(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int
		max  int32
	}{
		{"one request", 1, 3},
		{"burst", 100, 100*6/5 + 5 + 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			cfg := testConfig(all502(t, 3, &calls)...)
			clock := new(atomic.Int64)
			clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
			srv, _ := startGatewayWith(t, cfg, func(d *Deps) {
				d.Now = func() time.Time { return time.Unix(0, clock.Load()) }
			})
			statuses := map[int]int{}
			for i := range tc.n {
				clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * 10 * time.Millisecond).UnixNano())
				resp := post(t, srv.URL+"/v1/chat/completions", chatBody)
				readAll(t, resp)
				statuses[resp.StatusCode]++
			}
			if statuses[http.StatusBadGateway] != tc.n {
				t.Errorf("answers %v, want %d 502s", statuses, tc.n)
			}
			got := calls.Load()
			t.Logf("%d requests: %d backend calls (%.2f each), answers %v", tc.n, got, float64(got)/float64(tc.n), statuses)
			if got > tc.max {
				t.Fatalf("%d backend calls for %d requests, want at most %d", got, tc.n, tc.max)
			}
		})
	}
}
