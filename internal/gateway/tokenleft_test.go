package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/config"
)

// usageBackend answers every POST with a JSON completion reporting
// completion tokens (and 20 prompt tokens), each once it is released
// (release nil: at once), telling arrived when a request reaches it; a
// GET (a Responses follow-up) is answered 404.
func usageBackend(t *testing.T, completion int, arrived chan<- struct{}, release <-chan struct{}) *httptest.Server {
	t.Helper()
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":{"message":"no such response","type":"invalid_request_error","code":"not_found"}}`)
			return
		}
		if arrived != nil {
			arrived <- struct{}{}
		}
		if release != nil {
			<-release
		}
		fmt.Fprintf(w, `{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"..."},"finish_reason":"stop"}],"usage":{"prompt_tokens":20,"completion_tokens":%d,"total_tokens":%d}}`,
			completion, completion+20)
	}))
	t.Cleanup(be.Close)
	return be
}

// A request's estimate holds a completion for each of its choices: n=8
// with max_tokens 500 may generate 4,000 tokens, and reserves them (it
// reserved 500); a legacy completion generates best_of (4, of which n=2
// are returned) of 100. (Azure OpenAI's limits count max_tokens x best_of
// alike.)
func TestEveryChoiceIsInTheTokenEstimate(t *testing.T) {
	be := newOKBackend(t)
	const limit = 100000
	url, _ := tokenGatewayClock(t, testConfig(be.URL), limit)
	for i, c := range []struct {
		path, body string
		completion int
	}{
		{"/v1/chat/completions", `{"model":"m1","messages":[{"role":"user","content":"eight takes"}],"n":8,"max_tokens":500}`, 8 * 500},
		{"/v1/completions", `{"model":"m1","prompt":"four tries","best_of":4,"n":2,"max_tokens":100}`, 4 * 100},
		{"/v1/chat/completions", `{"model":"m1","messages":[{"role":"user","content":"three, no bound"}],"n":3}`, 3 * 256},
	} {
		resp := post(t, strings.Replace(url, "/v1/chat/completions", c.path, 1), c.body, "Authorization", "Bearer k")
		readAll(t, resp)
		left, err := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
		if resp.StatusCode != 200 || err != nil {
			t.Fatalf("%s: %d, %v", c.body, resp.StatusCode, resp.Header)
		}
		// Each answer before is settled to newOKBackend's usage, 7.
		want := int(admission.EstimateCost(len(c.body), c.completion, 0))
		if reserved := limit - 7*i - left; reserved != want {
			t.Fatalf("%s reserved %d tokens, want %d (the prompt and %d of completions)", c.body, reserved, want, c.completion)
		}
	}
}

// Eight JSON requests without max_tokens sent at once on a key of 1,200
// tokens a minute: 4 fit their estimates (prompt + 256) and are admitted,
// each then answers 2,000 completion tokens (+ 20 prompt): 8,080 used.
// A JSON answer cannot be cut, so its usage is charged after it; the
// charge used to be capped at one capacity of debt (2,400 in all), so the
// key was admitted again 2 minutes later, having used 3.4 times its
// limit. Now the debt is owed in full: the key is refused until the
// 8,080 are paid down to room for the next request (~6 minutes), told so
// by Retry-After.
func TestConcurrentJSONOverrunIsOwedInFull(t *testing.T) {
	const limit, n, gen = 1200, 8, 2000
	arrived, release := make(chan struct{}, n), make(chan struct{})
	openAtCleanup(t, release)
	be := usageBackend(t, gen, arrived, release)
	url, clk := tokenGatewayClock(t, testConfig(be.URL), limit)
	statuses := make(chan int, n)
	for i := range n {
		go func() {
			resp := post(t, url, fmt.Sprintf(`{"model":"m1","messages":[{"role":"user","content":"essay %d"}]}`, i), "Authorization", "Bearer k")
			readAll(t, resp)
			statuses <- resp.StatusCode
		}()
	}
	admitted, refused := 0, 0
	for admitted+refused < n {
		select {
		case <-arrived:
			admitted++
		case s := <-statuses:
			if s != http.StatusTooManyRequests {
				t.Fatalf("before any answer: %d", s)
			}
			refused++
		}
	}
	close(release)
	for range admitted {
		if s := <-statuses; s != 200 {
			t.Fatalf("admitted request answered %d", s)
		}
	}
	used := admitted * (gen + 20)
	t.Logf("%d admitted of %d, %d tokens used on %d a minute", admitted, n, used, limit)
	if admitted != 4 {
		t.Fatalf("%d admitted of %d, want 4 (prompt + 256 each, of 1,200)", admitted, n)
	}
	probe := func(after time.Duration) *http.Response {
		clk.Advance(after)
		resp := post(t, url, `{"model":"m1","messages":[{"role":"user","content":"x"}],"max_tokens":1}`, "Authorization", "Bearer k")
		readAll(t, resp)
		return resp
	}
	// Paid back at 20 tokens a second: the bucket idles at 8,080/20 =
	// 404 s, and has room for the probe (~8 tokens) once a minute of it
	// is left, at about 344 s.
	resp := probe(150 * time.Second)
	retry, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	t.Logf("at 150 s: %d, Retry-After %s, reset %s", resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("X-Ratelimit-Reset-Tokens"))
	if resp.StatusCode != http.StatusTooManyRequests || retry < 190 || retry > 200 {
		t.Fatalf("2.5 minutes after using %d tokens of 1,200 a minute: %d, Retry-After %q; want 429, ~194 s (the debt paid in full)",
			used, resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if resp := probe(time.Duration(retry) * time.Second); resp.StatusCode != 200 {
		t.Fatalf("after the Retry-After it was told: %d", resp.StatusCode)
	}
}

// A flight's leader that leaves before the answer used to be settled at
// once, as unreached (its reservation given back), while the flight ran
// on for its followers, who are charged nothing as coalesced: without a
// stream budget (a JSON request, or one with max_tokens) the answer was
// charged to nobody. The leader's reservation is now settled by the
// flight, to the answer's usage: what it would have paid had it stayed.
func TestAnUnbudgetedFlightsLeaderThatLeftPaysForItsAnswer(t *testing.T) {
	const body = `{"model":"m1","temperature":0,"messages":[{"role":"user","content":"a short story"}],"max_tokens":500}`
	arrived, release := make(chan struct{}, 2), make(chan struct{})
	openAtCleanup(t, release)
	be := usageBackend(t, 300, arrived, release)
	cfg := twoKeys(1000)
	cfg.Models[0].Backends = []config.Backend{{URL: be.URL}}
	clk := &frozenClock{now: time.Now()}
	url, gw := startCachingGatewayCfg(t, cfg, nil, clk.Now)

	type answer struct {
		status int
		xcache string
	}
	follower := make(chan answer, 1)
	leaderLeaves(t, url, gw, body, arrived, release, func() {
		resp := post(t, url, body, "Authorization", "Bearer k2")
		readAll(t, resp)
		follower <- answer{resp.StatusCode, resp.Header.Get("X-Cache")}
	})
	got := <-follower
	if got.status != 200 || got.xcache != "COALESCED" || len(arrived) != 0 {
		t.Fatalf("follower: %d, X-Cache %q, %d more backend calls; want it coalesced", got.status, got.xcache, len(arrived))
	}
	wait, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := gw.Runtime().flights.bg.Wait(wait); err != nil {
		t.Fatalf("the flight's call still running: %v", err)
	}
	used1, used2 := 1000-tokensLeft(t, url, "k1"), 100000-tokensLeft(t, url, "k2")
	t.Logf("answer of 320 tokens: k1 (left) charged %d, k2 (followed) charged %d", used1, used2)
	if used1 != 320 || used2 != 0 {
		t.Fatalf("k1, the leader that left, charged %d, k2 the follower %d; want 320 (the answer's usage) and 0", used1, used2)
	}
}

// A follow-up (here GET /v1/responses/{id}) is charged one request and no
// tokens; a key whose token limit is in debt was refused it 429, though
// it asks for none: it could not fetch, or cancel, a response while it
// paid for it.
func TestAFollowUpPassesATokenDebt(t *testing.T) {
	be := usageBackend(t, 2000, nil, nil)
	url, _ := tokenGatewayClock(t, testConfig(be.URL), 1200)
	if resp := post(t, url, `{"model":"m1","messages":[{"role":"user","content":"long"}]}`, "Authorization", "Bearer k"); resp.StatusCode != 200 {
		t.Fatalf("first request: %d", resp.StatusCode)
	} else {
		readAll(t, resp)
	}
	base := strings.TrimSuffix(url, "/v1/chat/completions")
	resp := do(t, http.MethodGet, base+"/v1/responses/resp_0123456789abcdef", "", "Authorization", "Bearer k")
	b := readAll(t, resp)
	t.Logf("follow-up in debt: %d %s", resp.StatusCode, b)
	if resp.StatusCode == http.StatusTooManyRequests {
		t.Fatalf("a follow-up charged no tokens refused for the key's token debt: %s", b)
	}
}

// A stream of n choices without max_tokens reserves the default for each
// (2 x 256), and its budget grants them all before it asks for more (it
// granted one: its steps were charged on top of the second choice's
// reservation, so it was cut 256 tokens short of its limit).
func TestABudgetGrantsEveryChoicesReservation(t *testing.T) {
	const gen, limit = 2000, 1500
	const body = `{"model":"m1","messages":[{"role":"user","content":"two stories"}],"stream":true,"n":2}`
	prompt := int(admission.EstimateCost(len(body), 0, 0))
	be := longStreamBackend(t, gen, nil, nil)
	url, clk := tokenGatewayClock(t, testConfig(be.URL), limit)
	got := readStreamAnswer(t, post(t, url, body, "Authorization", "Bearer k"))
	used := usedOf(t, url, "k", limit, clk)
	if got.status != 200 || !got.cut || got.tokens != limit-prompt || used != limit {
		t.Fatalf("%d, %d of %d tokens, cut %v, charged %d; want cut at %d (the limit less the %d prompt), charged %d",
			got.status, got.tokens, gen, got.cut, used, limit-prompt, prompt, limit)
	}
}

// n choices without max_tokens may need more than a small limit holds at
// once (8 x 256 + prompt on 1,200 a minute): refused as never fitting,
// not retryable, and told which knobs to turn.
func TestChoicesBeyondTheLimitNeverFit(t *testing.T) {
	url, _ := tokenGatewayClock(t, testConfig(newOKBackend(t).URL), 1200)
	resp := post(t, url, `{"model":"m1","messages":[{"role":"user","content":"eight takes"}],"n":8}`, "Authorization", "Bearer k")
	body := readAll(t, resp)
	if _, code, msg := apiErr(t, body); resp.StatusCode != 400 || code != "exceeds_rate_limit_capacity" || !strings.HasSuffix(msg, "reduce the prompt, max_tokens or n") {
		t.Fatalf("n=8 without max_tokens on 1,200 a minute: %d %s", resp.StatusCode, body)
	}
}
