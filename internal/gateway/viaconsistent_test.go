package gateway

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/sim"
)

// TestAnswerRolesAgreeOnViaAndBuffering: one request answered four ways
// (direct: the client's no-cache; MISS: the flight's leader; COALESCED; a
// HIT), JSON and stream, behind a hosted API whose answers carry a Via.
// None carries the backend's Via (before: the direct and MISS answers did,
// the follower and the HIT did not), and every stream says
// X-Accel-Buffering: no (before: the follower's live stream did not, so
// an nginx in front buffered it, nor did a HIT's).
func TestAnswerRolesAgreeOnViaAndBuffering(t *testing.T) {
	for _, stream := range []bool{false, true} {
		extra := map[bool]string{false: "", true: `,"stream":true`}[stream]
		gate := make(chan struct{})
		url, gw := startCachingGatewayCfg(t, testConfig(hostedSim(t, gate, sim.Faults{})), nil, time.Now)
		openAtCleanup(t, gate)
		body := fmt.Sprintf(detBody, extra)
		type answer struct {
			who string
			h   http.Header
		}
		answers := make(chan answer, 2)
		ask := func(who string) {
			resp := post(t, url, body)
			readAll(t, resp)
			answers <- answer{who, resp.Header}
		}
		go ask("leader")
		waitFlight(t, gw, 1)
		go ask("follower")
		waitFlight(t, gw, 2)
		close(gate)
		got := map[string]http.Header{}
		for range 2 {
			a := <-answers
			got[a.who] = a.h
		}
		resp := post(t, url, body)
		readAll(t, resp)
		got["hit"] = resp.Header
		resp = post(t, url, body, "Cache-Control", "no-cache")
		readAll(t, resp)
		got["direct"] = resp.Header
		for who, xcache := range map[string]string{"direct": "BYPASS", "leader": "MISS", "follower": "COALESCED", "hit": "HIT"} {
			h := got[who]
			if h.Get("X-Cache") != xcache {
				t.Fatalf("stream %v, %s: X-Cache %q, want %s", stream, who, h.Get("X-Cache"), xcache)
			}
			if v := h.Values("Via"); len(v) != 0 {
				t.Errorf("stream %v, %s: Via %q, want none", stream, who, v)
			}
			want := map[bool]string{true: "no"}[stream]
			if v := h.Get("X-Accel-Buffering"); v != want {
				t.Errorf("stream %v, %s: X-Accel-Buffering %q, want %q", stream, who, v, want)
			}
		}
	}
}
