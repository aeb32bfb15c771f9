package gateway

import (
	"net/http"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/endpoint"
)

// A backend's 429/503 reached the client with its Retry-After as sent:
// 10^20 s or a date in 2100 (with x-should-retry: false, so a client that
// honours it stays away for ever), "1.5" (no delay-seconds), and a
// retry-after-ms that disagreed with the Retry-After the gateway acted
// on. The client now gets the wait the gateway reads and acts on, in the
// gateway's own form: whole seconds and retry-after-ms from the one
// duration, retry-after-ms first as the SDKs read it, and the gateway's
// own estimate (the busy penalty) for a wait past a day, as for one it
// cannot read; the backend is busy for as long as the client is told.
func TestRelayedPushBackIsRestated(t *testing.T) {
	cases := []struct {
		name        string
		hdr         []string
		ra, ms      string
		shouldRetry string
		busyAt2h    bool // still counted busy two hours on
	}{
		{"absurd seconds", []string{"Retry-After", "99999999999999999999"}, "1", "1000", "", false},
		{"a date in 2100", []string{"Retry-After", "Fri, 01 Jan 2100 00:00:00 GMT"}, "1", "1000", "", false},
		{"25 hours", []string{"Retry-After", "90000"}, "1", "1000", "", false},
		{"garbage", []string{"Retry-After", "soon"}, "1", "1000", "", false},
		{"negative", []string{"Retry-After", "-5"}, "1", "1000", "", false},
		{"fraction", []string{"Retry-After", "1.5"}, "2", "1500", "", false},
		{"an hour's quota", []string{"Retry-After", "3600"}, "3600", "3600000", "false", false},
		{"a day exactly", []string{"Retry-After", "86400"}, "86400", "86400000", "false", true},
		{"ms wins", []string{"Retry-After", "7", "Retry-After-Ms", "2500"}, "3", "2500", "", false},
		{"absurd ms", []string{"Retry-After", "7", "Retry-After-Ms", "99999999999"}, "1", "1000", "", false},
		{"unreadable ms", []string{"Retry-After", "7", "Retry-After-Ms", "x"}, "7", "7000", "", false},
		{"ms alone", []string{"Retry-After-Ms", "250"}, "1", "250", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			be := statusBackend(t, http.StatusTooManyRequests, tc.hdr...)
			cfg := testConfig(be.URL)
			cfg.Health.BusyPenalty = config.Duration(time.Second)
			srv, gw := startGateway(t, cfg)
			resp := post(t, srv.URL+"/v1/chat/completions", `{"model":"m1","messages":[{"role":"user","content":"hi"}]}`)
			readAll(t, resp)
			if resp.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("status %d, want the backend's 429", resp.StatusCode)
			}
			if ra, ms, sr := resp.Header.Get("Retry-After"), resp.Header.Get("Retry-After-Ms"), resp.Header.Get("X-Should-Retry"); ra != tc.ra || ms != tc.ms || sr != tc.shouldRetry {
				t.Errorf("Retry-After %q, retry-after-ms %q, x-should-retry %q; want %q, %q, %q", ra, ms, sr, tc.ra, tc.ms, tc.shouldRetry)
			}
			b := gw.Runtime().Pools["m1"].Backends[0]
			if busy := b.State(time.Now().Add(2*time.Hour)) == endpoint.StateBusy; busy != tc.busyAt2h {
				t.Errorf("busy two hours on: %v, want %v", busy, tc.busyAt2h)
			}
		})
	}
}
