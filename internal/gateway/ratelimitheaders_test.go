package gateway

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/config"

	"github.com/sluice-gw/sluice/internal/rate"
)

// fixedUsageBackend answers every chat request with 7 tokens of usage.
func fixedUsageBackend(t *testing.T) *httptest.Server { return heldUsageBackend(t, nil) }

// heldUsageBackend is fixedUsageBackend holding each answer until release
// is closed (nil: at once), so identical requests meet in one flight.
func heldUsageBackend(t *testing.T, release chan struct{}) *httptest.Server {
	t.Helper()
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if release != nil {
			<-release
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c","object":"chat.completion","created":1,"model":"m1","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`)
	}))
	t.Cleanup(be.Close)
	return be
}

// A cache hit is charged no tokens (settled after its answer), and its
// x-ratelimit-remaining-tokens used to show its own estimate taken: 1000
// tokens a minute, a miss of 7, then hits said 717 (7 + the hit's 276
// estimate) though the bucket held 993 once each ended. Now a hit states
// the bucket as it leaves it.
func TestCacheHitHeadersShowNoTokensTaken(t *testing.T) {
	be := fixedUsageBackend(t)
	const limit = 1000
	url := tokenGateway(t, testConfig(be.URL), limit)
	body := `{"model":"m1","temperature":0,"messages":[{"role":"user","content":"cached"}]}`
	if status, _, b := remaining(t, url, body); status != 200 {
		t.Fatalf("miss: %d %s", status, b)
	}
	for i := range 2 {
		status, left, b := remaining(t, url, body)
		if status != 200 {
			t.Fatalf("hit %d: %d %s", i, status, b)
		}
		if left != limit-7 {
			t.Fatalf("hit %d: x-ratelimit-remaining-tokens %d, want %d (the miss's 7 only: a hit is charged none)", i, left, limit-7)
		}
	}
}

// A request refused by its requests limit takes no tokens (Check gives
// back what the other limits granted), but its token headers used to
// show its estimate taken. Now they state the bucket as the refusal
// leaves it.
func TestRequestsRefusalHeadersShowNoTokensTaken(t *testing.T) {
	be := fixedUsageBackend(t)
	cfg := testConfig(be.URL)
	const limit = 1000
	tpm := int64(limit)
	cfg.RateLimits.PerKey = config.RateRule{TokensPerMinute: &tpm,
		Requests: &rate.Limit{Rate: 1.0 / 60, Delay: rate.NoDelay}} // one request a minute
	url, _ := startCachingGatewayCfg(t, cfg, nil, (&frozenClock{now: time.Now()}).Now)
	body := `{"model":"m1","messages":[{"role":"user","content":"hi"}],"max_tokens":100}`
	if status, _, b := remaining(t, url, body); status != 200 {
		t.Fatalf("first: %d %s", status, b)
	}
	resp := post(t, url, body, "Authorization", "Bearer k")
	b := readAll(t, resp)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("second: %d %s, want 429 (requests)", resp.StatusCode, b)
	}
	if got, want := resp.Header.Get("X-Ratelimit-Remaining-Tokens"), "993"; got != want {
		t.Fatalf("refused request's x-ratelimit-remaining-tokens %s, want %s (the first's 7 only: the refusal took none)", got, want)
	}
	if got := resp.Header.Get("X-Ratelimit-Remaining-Requests"); got != "0" {
		t.Fatalf("x-ratelimit-remaining-requests %s, want 0", got)
	}
}

// Coalesced followers are charged no tokens either; their headers used to
// show their estimates taken. n identical requests are admitted one after
// another, each reserving est: the last admitted saw limit - n*est. A
// follower now states the bucket without its own reservation, so none says
// less than limit - (n-1)*est.
func TestCoalescedFollowerHeadersShowNoTokensTaken(t *testing.T) {
	release := make(chan struct{})
	be := heldUsageBackend(t, release)
	const limit = 100000
	lim := int64(limit)
	cfg := testConfig(be.URL)
	cfg.RateLimits.PerKey = config.RateRule{TokensPerMinute: &lim}
	url, gw := startCachingGatewayCfg(t, cfg, nil, (&frozenClock{now: time.Now()}).Now)
	openAtCleanup(t, release)
	body := fmt.Sprintf(detBody, `,"max_tokens":100`)
	est := int(admission.EstimateCost(len(body), 100, 256))
	const n = 4
	type answer struct {
		xcache string
		left   int
	}
	done := make(chan answer, n)
	for range n {
		go func() {
			resp := post(t, url, body, "Authorization", "Bearer k")
			readAll(t, resp)
			left, _ := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
			done <- answer{resp.Header.Get("X-Cache"), left}
		}()
	}
	waitFlight(t, gw, n)
	close(release)
	for range n {
		a := <-done
		if a.xcache == "COALESCED" && a.left < limit-(n-1)*est {
			t.Errorf("a follower's x-ratelimit-remaining-tokens %d, below %d: its own %d-token estimate shown taken", a.left, limit-(n-1)*est, est)
		}
	}
}
