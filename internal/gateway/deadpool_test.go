package gateway

import (
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
)

// resettingBackend is a backend that accepts each connection and closes it
// at once, unanswered: the gateway's attempt fails (502 upstream_error)
// and accepts counts them.
func resettingBackend(t *testing.T, accepts *atomic.Int32) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepts.Add(1)
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	return "http://" + ln.Addr().String()
}

// sdkCall is one client request as openai-python (max_retries=2) makes it,
// on the gateway's injected clock: a 408/409/429/5xx is retried unless
// x-should-retry says false, after its Retry-After when 0 < it <= 60 s;
// the clock advances by that wait (or by the SDK's first backoffs, 0.5
// and 1 s, unjittered, without one). It returns the answers' statuses and
// Retry-After values and the time the call took.
func sdkCall(t *testing.T, url, body string, clock *atomic.Int64) (answers []string, took time.Duration) {
	t.Helper()
	start := clock.Load()
	for n := 0; n < 3; n++ {
		resp := post(t, url, body)
		readAll(t, resp)
		ra, sr := resp.Header.Get("Retry-After"), resp.Header.Get("X-Should-Retry")
		answers = append(answers, strconv.Itoa(resp.StatusCode)+" ra="+ra+" sr="+sr)
		retry := sr == "true" || sr != "false" && (resp.StatusCode == 408 || resp.StatusCode == 409 || resp.StatusCode == 429 || resp.StatusCode >= 500)
		if !retry || n == 2 {
			break
		}
		wait := time.Duration(500<<n) * time.Millisecond
		if s, err := strconv.Atoi(ra); err == nil && s > 0 && s <= 60 {
			wait = time.Duration(s) * time.Second
		}
		clock.Add(int64(wait))
	}
	return answers, time.Duration(clock.Load() - start)
}

// TestOwn502OfADeadPoolSaysWhenItIsBack: the gateway's own 502 (every
// attempt failed) said Retry-After: 1 whatever the failures did to the
// pool. With its only backend dead (every connection reset) and the
// default health settings (max_fails 3, fail_timeout 10s), an SDK call's
// third failure ejects it for 10 s; told 1 s, the next client's SDK came
// back twice within 2 s, each retry a trial on the same dead backend, and
// gave up after 2 s of a 10 s ejection. The 502 now says the ejection's
// end (10), as the 503 no_healthy_backend of the same pool does; while
// the backend is still usable (its first two failures, or max_fails 0:
// nothing is ejected) it stays a second, and a wait past what the SDKs
// honour (a 3-minute fail_timeout) gets x-should-retry: false, so the
// second call ends at its first answer. Old code: every answer ra=1. A
// cacheable request (its 502 answered by its coalescing flight) is told
// the same.
func TestOwn502OfADeadPoolSaysWhenItIsBack(t *testing.T) {
	for _, cacheable := range []bool{false, true} {
		t.Run(map[bool]string{false: "direct", true: "coalesced"}[cacheable], func(t *testing.T) { deadPoolRetryAfter(t, cacheable) })
	}
}

func deadPoolRetryAfter(t *testing.T, cacheable bool) {
	for _, tc := range []struct {
		name         string
		maxFails     int
		failTimeout  time.Duration
		first, again []string // the two SDK calls' answers
		againTook    time.Duration
	}{
		{"ejected for fail_timeout", 3, 10 * time.Second,
			[]string{"502 ra=1 sr=", "502 ra=1 sr=", "502 ra=10 sr="},
			[]string{"502 ra=10 sr=", "502 ra=10 sr=", "502 ra=10 sr="}, 20 * time.Second},
		{"no passive ejection", 0, 10 * time.Second,
			[]string{"502 ra=1 sr=", "502 ra=1 sr=", "502 ra=1 sr="},
			[]string{"502 ra=1 sr=", "502 ra=1 sr=", "502 ra=1 sr="}, 2 * time.Second},
		{"ejected past what the SDKs wait", 3, 3 * time.Minute,
			[]string{"502 ra=1 sr=", "502 ra=1 sr=", "502 ra=180 sr=false"},
			[]string{"502 ra=180 sr=false"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var accepts atomic.Int32
			cfg := testConfig(resettingBackend(t, &accepts))
			cfg.Health.MaxFails = tc.maxFails
			cfg.Health.FailTimeout = config.Duration(tc.failTimeout)
			clock := new(atomic.Int64)
			clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
			now := func() time.Time { return time.Unix(0, clock.Load()) }
			var url string
			body := chatBody
			if cacheable {
				url, _ = startCachingGatewayCfg(t, cfg, nil, now)
				body = fmt.Sprintf(detBody, "")
			} else {
				srv, _ := startGatewayWith(t, cfg, func(d *Deps) { d.Now = now })
				url = srv.URL + "/v1/chat/completions"
			}
			first, took := sdkCall(t, url, body, clock)
			t.Logf("first SDK call: %v, %d backend connections, %v of the gateway's clock", first, accepts.Load(), took)
			again, tookAgain := sdkCall(t, url, body, clock)
			t.Logf("second SDK call: %v, %d backend connections in all, %v of the gateway's clock", again, accepts.Load(), tookAgain)
			if !slices.Equal(first, tc.first) || !slices.Equal(again, tc.again) || tookAgain != tc.againTook {
				t.Fatalf("answers %v then %v (%v), want %v then %v (%v)", first, again, tookAgain, tc.first, tc.again, tc.againTook)
			}
		})
	}
}

// TestOwn502KeepsASecondWhileAnotherBackendServes: one dead backend of
// two, the request goes to the dead one first and is retried on the
// other: served. With both failing only some of the time, nothing is
// ejected and the pool is usable, so a 502 says a second.
func TestOwn502KeepsASecondWhileAnotherBackendServes(t *testing.T) {
	var a, b atomic.Int32
	cfg := testConfig(resettingBackend(t, &a), resettingBackend(t, &b))
	cfg.Retry.Attempts = 2 // one failure each: neither reaches max_fails
	srv, _ := startGateway(t, cfg)
	resp := post(t, srv.URL+"/v1/chat/completions", chatBody)
	readAll(t, resp)
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("status %d Retry-After %q, want 502 with 1", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}
