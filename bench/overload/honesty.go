package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/bench"
)

// The Retry-After honesty test: a burst at 3x capacity for 10 s, then 0.5x
// for 30 s, through Sluice's defaults (shed regime). Every client refused
// with Retry-After sleeps exactly the advised time and retries once. Honest
// advice points to a moment when the request will be served, so nearly
// every retry succeeds.
const (
	honestyBurstX = 3.0
	honestyBurst  = 10 * time.Second
	honestyCalmX  = 0.5
	honestyCalm   = 30 * time.Second
	// honestyMaxWait bounds the test: a client does not wait longer than
	// this; longer advice is counted and not retried.
	honestyMaxWait = 60 * time.Second
	// targetHonesty is the share of retries that must succeed.
	targetHonesty = 0.90
)

// Honesty is the outcome of the Retry-After honesty test.
type Honesty struct {
	Trace    string  `json:"trace"`
	Requests int     `json:"requests"`
	BurstReq int     `json:"burst_requests"`
	BurstX   float64 `json:"burst_x_capacity"`
	BurstS   float64 `json:"burst_s"`
	CalmX    float64 `json:"calm_x_capacity"`
	CalmS    float64 `json:"calm_s"`
	FirstOK  int     `json:"first_attempt_ok"`
	// Refusals of first attempts: 429/503 with and without Retry-After.
	RefusedWithRA int `json:"refused_with_retry_after"`
	RefusedNoRA   int `json:"refused_without_retry_after"`
	// OtherFailures: first attempts that failed otherwise (5xx, timeouts,
	// broken streams).
	OtherFailures int `json:"other_failures"`
	// Unparsable: Retry-After values that are neither seconds nor an
	// HTTP date (not retried).
	Unparsable int `json:"retry_after_unparsable"`
	// BeyondCap: advice longer than honestyMaxWait (not retried).
	BeyondCap int `json:"retry_after_beyond_cap"`
	// BeyondBurst: refusals whose advised retry moment (refusal plus
	// Retry-After) lies after the end of the burst.
	BeyondBurst int `json:"advised_after_burst_end"`
	// DuringBurst: refusals advised to come back while the burst was
	// still on (advised moment at or before its end): outside the issue's
	// population ("load back under capacity within the advised time").
	DuringBurst    int     `json:"advised_during_burst"`
	RetryAfterP50s float64 `json:"retry_after_p50_s"`
	RetryAfterMaxs float64 `json:"retry_after_max_s"`
	Retried        int     `json:"retried"`
	RetriedOK      int     `json:"retried_ok"`
	RetriedRefused int     `json:"retried_refused_again"`
	RetrySuccess   float64 `json:"retry_success_share"`
	// The target population: retries whose advised moment lies
	// after the burst's end, when the offered load is back under capacity.
	AfterRetried int     `json:"after_burst_retried"`
	AfterOK      int     `json:"after_burst_retried_ok"`
	AfterShare   float64 `json:"after_burst_retry_success_share"`
	// Retries advised into the burst, shown beside it.
	DuringRetried int `json:"during_burst_retried"`
	DuringOK      int `json:"during_burst_retried_ok"`
	// Refused lists every client refused with a parseable Retry-After:
	// when it was refused, the moment it was advised to come back, and
	// what its retry got.
	Refused []RefusedClient `json:"refused_clients,omitempty"`
	WallS   float64         `json:"wall_s"`
}

// RefusedClient is one refused client of the honesty test; times are
// seconds since the test's start.
type RefusedClient struct {
	RefusedAtS  float64 `json:"refused_at_s"`
	AdvisedAtS  float64 `json:"advised_at_s"`
	AfterBurst  bool    `json:"advised_after_burst_end"`
	Retried     bool    `json:"retried"`
	RetryOK     bool    `json:"retry_ok"`
	RetryRefuse bool    `json:"retry_refused_again"`
}

// advisedAfter reports whether r was advised to come back after end (the
// burst's end, since the start): the client the target counts.
func (r hOutcome) advisedAfter(end time.Duration) bool {
	return r.refusedAt+r.advised > end
}

// hOutcome is what happened to one client of the honesty test.
type hOutcome struct {
	status    int // first attempt; 0 = no response
	ok        bool
	ra        string // Retry-After of the first attempt
	advised   time.Duration
	refusedAt time.Duration // since the start, when the refusal arrived
	retried   bool
	retryOK   bool
	retryRef  bool // the retry was refused again
	unparsed  bool
	capped    bool
}

func runHonesty(ctx context.Context, o options, p *pool) (*Honesty, error) {
	burst, calm, err := honestyPlan(p)
	if err != nil {
		return nil, err
	}
	o.prog.Printf("honesty: %s, %d requests at %gx for %s then %d at %gx for %s, through Sluice (shed); clients retry once after Retry-After",
		traceName(p.Path), len(burst), honestyBurstX, honestyBurst, len(calm), honestyCalmX, honestyCalm)
	wall := time.Now()
	outs, err := honestyReplay(ctx, o, append(slices.Clone(burst), calm...))
	if err != nil {
		return nil, err
	}
	h := &Honesty{Trace: traceName(p.Path), Requests: len(outs), BurstReq: len(burst), BurstX: honestyBurstX,
		BurstS: honestyBurst.Seconds(), CalmX: honestyCalmX, CalmS: honestyCalm.Seconds()}
	h.count(outs, honestyBurst)
	h.WallS = time.Since(wall).Seconds()
	o.prog.Printf("      retries advised after the burst's end %d, succeeded %d (%.1f%%); all retries %d, succeeded %d (%.1f%%); advised during the burst %d; refusals %d with / %d without Retry-After",
		h.AfterRetried, h.AfterOK, 100*h.AfterShare, h.Retried, h.RetriedOK, 100*h.RetrySuccess, h.DuringBurst, h.RefusedWithRA, h.RefusedNoRA)
	return h, nil
}

// honestyPlan is the burst, then the calm from the next trace requests on,
// its times following the burst's end.
func honestyPlan(p *pool) (burst, calm []bench.Arrival, err error) {
	burst, _, next, err := p.plan(0, honestyBurstX, honestyBurst)
	if err != nil {
		return nil, nil, err
	}
	calm, _, _, err = p.plan(next, honestyCalmX, honestyCalm)
	if err != nil {
		return nil, nil, err
	}
	for i := range calm {
		calm[i].At += honestyBurst
	}
	return burst, calm, nil
}

// honestyReplay sends arr through one Sluice with defaults in front of
// fresh simulators (shed regime), a client per request.
func honestyReplay(ctx context.Context, o options, arr []bench.Arrival) ([]hOutcome, error) {
	rig, err := startRig(ctx, o, regimeShed, pathSluice, 0, nil)
	if err != nil {
		return nil, err
	}
	defer rig.Stop()
	c := &hClient{client: bench.NewClient(), url: rig.Targets[0] + "/v1/chat/completions", timeout: o.ClientTimeout}
	defer c.client.CloseIdleConnections()
	outs := make([]hOutcome, len(arr))
	start := time.Now()
	var wg sync.WaitGroup
	for i, a := range arr {
		if !sleepUntil(ctx, start.Add(a.At)) {
			break
		}
		wg.Go(func() { outs[i] = c.client1(ctx, start, chatBody(a, i)) })
	}
	wg.Wait()
	return outs, ctx.Err()
}

// count tallies the clients' outcomes; burstEnd is when the offered load
// falls back under capacity, since the start.
func (h *Honesty) count(outs []hOutcome, burstEnd time.Duration) {
	var advice []float64
	for _, r := range outs {
		refused := r.status == http.StatusTooManyRequests || r.status == http.StatusServiceUnavailable
		switch {
		case r.ok:
			h.FirstOK++
		case refused && r.ra == "":
			h.RefusedNoRA++
		case refused:
			h.RefusedWithRA++
		default:
			h.OtherFailures++
		}
		if !refused || r.ra == "" {
			continue
		}
		switch {
		case r.unparsed:
			h.Unparsable++
			continue
		case r.capped:
			h.BeyondCap++
		}
		advice = append(advice, r.advised.Seconds())
		after := r.advisedAfter(burstEnd)
		if after {
			h.BeyondBurst++
		} else {
			h.DuringBurst++
		}
		h.Refused = append(h.Refused, RefusedClient{RefusedAtS: r.refusedAt.Seconds(), AdvisedAtS: (r.refusedAt + r.advised).Seconds(),
			AfterBurst: after, Retried: r.retried, RetryOK: r.retryOK, RetryRefuse: r.retryRef})
		if r.retried {
			h.Retried++
			if r.retryOK {
				h.RetriedOK++
			}
			if r.retryRef {
				h.RetriedRefused++
			}
			if after {
				h.AfterRetried++
				if r.retryOK {
					h.AfterOK++
				}
			} else {
				h.DuringRetried++
				if r.retryOK {
					h.DuringOK++
				}
			}
		}
	}
	if h.Retried > 0 {
		h.RetrySuccess = float64(h.RetriedOK) / float64(h.Retried)
	}
	if h.AfterRetried > 0 {
		h.AfterShare = float64(h.AfterOK) / float64(h.AfterRetried)
	}
	if len(advice) > 0 {
		slices.Sort(advice)
		h.RetryAfterP50s, h.RetryAfterMaxs = advice[(len(advice)-1)/2], advice[len(advice)-1]
	}
}

// sleepUntil waits for t; false when ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// retryAfter reads a Retry-After value: seconds (integer, or fractional
// for generosity) or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 {
		return time.Duration(s * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// hClient is the honesty test's client: one streaming request, then at
// most one retry after the advised time.
type hClient struct {
	client  *http.Client
	url     string
	timeout time.Duration
}

// client1 is one client: the request, and on a refusal with Retry-After
// the single retry.
func (c *hClient) client1(ctx context.Context, start time.Time, body []byte) hOutcome {
	var r hOutcome
	var ok bool
	r.status, r.ra, ok = c.do(ctx, body)
	r.ok = ok
	refused := r.status == http.StatusTooManyRequests || r.status == http.StatusServiceUnavailable
	if ok || !refused || r.ra == "" {
		return r
	}
	now := time.Now()
	r.refusedAt = now.Sub(start)
	if r.advised, ok = retryAfter(r.ra, now); !ok {
		r.unparsed = true
		return r
	}
	if r.advised > honestyMaxWait {
		r.capped = true
		return r
	}
	if !sleepUntil(ctx, now.Add(r.advised)) {
		return r
	}
	r.retried = true
	status, _, ok := c.do(ctx, body)
	r.retryOK = ok
	r.retryRef = status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable
	return r
}

// do sends body and reads the answer to its end: ok means 2xx and a
// complete stream ("data: [DONE]", no error event).
func (c *hClient) do(ctx context.Context, body []byte) (status int, retryAfter string, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return 0, "", false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, "", false
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 256<<10)) // the connection goes back to the pool
		return resp.StatusCode, resp.Header.Get(hdrRetryAfter), false
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 16<<10), 1<<20)
	done, broken := false, false
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case bytes.Equal(line, []byte("data: [DONE]")):
			done = true
		case bytes.HasPrefix(line, []byte(`data: {"error"`)):
			broken = true
		}
	}
	return resp.StatusCode, "", done && !broken && sc.Err() == nil
}

// chatBody is a streaming chat request for a: InputTokens words (the
// simulator counts one token per word), the first unique to the request so
// no two prompts share a cached prefix, and max_tokens OutputTokens.
func chatBody(a bench.Arrival, i int) []byte {
	var p strings.Builder
	fmt.Fprintf(&p, "honesty-%d", i)
	for j := 1; j < max(a.InputTokens, 1); j++ {
		fmt.Fprintf(&p, " w%d", (i*31+j*7)%997)
	}
	b, _ := json.Marshal(map[string]any{ // strings and ints always marshal
		"model":      "sim-model",
		"stream":     true,
		"max_tokens": max(a.OutputTokens, 1),
		"messages":   []map[string]string{{"role": "user", "content": p.String()}},
	})
	return b
}
