package bench

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// keptUpLag is the scheduling-lag p99 under which the generator is judged to
// have kept up: an arrival that much late is invisible next to LLM latencies
// (hundreds of milliseconds to seconds), yet a generator starved of CPU
// shows lags far above it.
const keptUpLag = 50 * time.Millisecond

// maxHeaderValues bounds the distinct values counted per header of interest;
// the rest are counted under "(other)".
const maxHeaderValues = 64

// Result is the outcome of a run. Rates are per second of Window: from the
// start of the run to the end of the last request. Latency summaries are in
// milliseconds.
type Result struct {
	Label       string  `json:"label,omitempty"`
	Target      string  `json:"target"`
	Model       string  `json:"model"`
	Stream      bool    `json:"stream"`
	Interrupted bool    `json:"interrupted,omitempty"` // ctx was cancelled
	WindowS     float64 `json:"window_s"`

	Planned int `json:"planned"` // arrivals in the plan
	Offered int `json:"offered"` // arrivals whose time came (Sent + DroppedByClient)
	Sent    int `json:"sent"`
	// DroppedByClient counts arrivals not sent because MaxInFlight requests
	// were already running.
	DroppedByClient int `json:"dropped_by_client"`
	OK              int `json:"ok"`
	// Refused counts 429 and 503 answers: explicit "come back later".
	Refused  int               `json:"refused"`
	ByStatus map[int]int       `json:"by_status"`
	Errors   map[ErrorKind]int `json:"errors"`
	// ErrorRate is the share of sent requests that failed other than by a
	// 429: 5xx (503 included), timeouts, connection errors, broken streams.
	ErrorRate float64 `json:"error_rate"`
	// RateLimitedRate is the share of sent requests answered 429.
	RateLimitedRate float64 `json:"rate_limited_rate"`

	RPS              float64 `json:"rps"`      // OK requests per second
	SentRPS          float64 `json:"sent_rps"` // requests sent per second
	OutputTokensPerS float64 `json:"output_tokens_per_s"`
	PromptTokens     int64   `json:"prompt_tokens"`     // of OK requests
	CompletionTokens int64   `json:"completion_tokens"` // of OK requests

	Goodput Goodput `json:"goodput"`

	TTFT Summary `json:"ttft"` // OK requests that produced content
	ITL  Summary `json:"itl"`  // all gaps between content events (±1.6%)
	E2E  Summary `json:"e2e"`  // OK requests
	// TimeToRefuse is the end-to-end latency of refused requests.
	TimeToRefuse Summary `json:"time_to_refuse"`
	// RetryAfterShare is the share of refusals carrying Retry-After.
	RetryAfterShare float64 `json:"retry_after_share"`

	// Lag is how late requests started compared with the plan.
	Lag Summary `json:"lag"`
	// KeptUp reports that the offered load was the plan: lag p99 under 50ms
	// and no arrival dropped at MaxInFlight.
	KeptUp bool `json:"generator_kept_up"`

	// Headers counts the values of Config.HeadersOfInterest over responses.
	Headers map[string]map[string]int `json:"headers,omitempty"`
	Tenants []TenantResult            `json:"tenants,omitempty"`
	// Fairness is JainIndex over the tenants' served output tokens (0
	// without tenants). Compute other indices from Tenants.
	Fairness float64 `json:"jain_index,omitempty"`

	// Records has one entry per offered arrival, in plan order.
	Records []Record `json:"-"`
}

// Goodput counts OK requests that met the SLO.
type Goodput struct {
	SLOTTFTms float64 `json:"slo_ttft_ms,omitempty"` // 0 = no TTFT bound
	SLOE2Ems  float64 `json:"slo_e2e_ms,omitempty"`  // 0 = no E2E bound
	Count     int     `json:"count"`
	PerS      float64 `json:"per_s"`
	Fraction  float64 `json:"fraction"` // of offered arrivals
}

// TenantResult is one tenant's share of a run.
type TenantResult struct {
	Name             string  `json:"name"`
	Offered          int     `json:"offered"`
	Sent             int     `json:"sent"`
	OK               int     `json:"ok"`
	Refused          int     `json:"refused"`
	Failed           int     `json:"failed"` // sent, not OK, not refused
	PromptTokens     int64   `json:"prompt_tokens"`
	CompletionTokens int64   `json:"completion_tokens"`
	OutputTokensPerS float64 `json:"output_tokens_per_s"`
	Goodput          int     `json:"goodput"`
	TTFT             Summary `json:"ttft"`
	E2E              Summary `json:"e2e"`
}

// result aggregates the first offered records.
func (r *runner) result(offered int, window time.Duration, interrupted bool) *Result {
	cfg := r.cfg
	recs := r.records[:offered]
	res := &Result{
		Label: cfg.Label, Target: r.url, Model: cfg.Model, Stream: cfg.Stream,
		Interrupted: interrupted, WindowS: window.Seconds(),
		Planned: len(r.arr), Offered: offered,
		ByStatus: map[int]int{}, Errors: map[ErrorKind]int{},
		Goodput: Goodput{SLOTTFTms: ms(cfg.SLOTTFT), SLOE2Ems: ms(cfg.SLOE2E)},
		ITL:     r.itl.summary(),
		Headers: map[string]map[string]int{},
		Records: recs,
	}
	t := &tally{res: res, tenants: make([]tenantAcc, max(len(cfg.Tenants), 1)), retryAfter: -1}
	for i, h := range cfg.HeadersOfInterest {
		if strings.EqualFold(h, "Retry-After") {
			t.retryAfter = i
		}
	}
	for i := range recs {
		if !recs[i].Dropped {
			r.countHeaders(res.Headers, &recs[i])
		}
		t.add(&recs[i], &r.cfg)
	}
	t.close(window)
	if len(cfg.Tenants) > 0 {
		res.Tenants, res.Fairness = tenantResults(cfg.Tenants, t.tenants, window)
	}
	return res
}

// tally sums records into a Result and its per-tenant accumulators.
type tally struct {
	res                     *Result
	tenants                 []tenantAcc
	lag, ttft, e2e, refuse  []time.Duration
	withRetryAfter, limited int
	retryAfter              int // index of Retry-After among the headers of interest, -1 if not there
}

func (a *tally) add(rec *Record, cfg *Config) {
	res, t := a.res, &a.tenants[rec.Tenant]
	t.Offered++
	a.lag = append(a.lag, rec.Lag)
	if rec.Dropped {
		res.DroppedByClient++
		return
	}
	res.Sent++
	t.Sent++
	if rec.Status != 0 {
		res.ByStatus[rec.Status]++
	}
	if rec.Kind != "" {
		res.Errors[rec.Kind]++
	}
	switch {
	case rec.OK():
		res.OK++
		t.OK++
		res.PromptTokens += int64(rec.PromptTokens)
		res.CompletionTokens += int64(rec.CompletionTokens)
		t.PromptTokens += int64(rec.PromptTokens)
		t.CompletionTokens += int64(rec.CompletionTokens)
		a.e2e = append(a.e2e, rec.E2E)
		t.e2e = append(t.e2e, rec.E2E)
		if rec.TTFT > 0 {
			a.ttft = append(a.ttft, rec.TTFT)
			t.ttft = append(t.ttft, rec.TTFT)
		}
		if (cfg.SLOTTFT == 0 || rec.TTFT <= cfg.SLOTTFT) && (cfg.SLOE2E == 0 || rec.E2E <= cfg.SLOE2E) {
			res.Goodput.Count++
			t.Goodput++
		}
	case rec.Refused():
		res.Refused++
		t.Refused++
		a.refuse = append(a.refuse, rec.E2E)
		if a.retryAfter >= 0 && a.retryAfter < len(rec.Headers) && rec.Headers[a.retryAfter] != "" {
			a.withRetryAfter++
		}
	default:
		t.Failed++
	}
	if rec.Status == http.StatusTooManyRequests {
		a.limited++
	}
}

// close turns the sums into the Result's summaries, rates and shares.
func (a *tally) close(window time.Duration) {
	res := a.res
	res.TTFT, res.E2E, res.TimeToRefuse, res.Lag = summarize(a.ttft), summarize(a.e2e), summarize(a.refuse), summarize(a.lag)
	res.KeptUp = res.Lag.P99 < ms(keptUpLag) && res.DroppedByClient == 0
	res.ErrorRate = ratio(res.Sent-res.OK-a.limited, res.Sent)
	res.RateLimitedRate = ratio(a.limited, res.Sent)
	res.RetryAfterShare = ratio(a.withRetryAfter, res.Refused)
	res.Goodput.Fraction = ratio(res.Goodput.Count, res.Offered)
	if w := window.Seconds(); w > 0 {
		res.RPS = float64(res.OK) / w
		res.SentRPS = float64(res.Sent) / w
		res.OutputTokensPerS = float64(res.CompletionTokens) / w
		res.Goodput.PerS = float64(res.Goodput.Count) / w
	}
}

// tenantResults are the named tenants' results and Jain's fairness index
// over the completion tokens each was served.
func tenantResults(named []Tenant, acc []tenantAcc, window time.Duration) ([]TenantResult, float64) {
	out := make([]TenantResult, 0, len(acc))
	served := make([]float64, len(acc))
	for i, t := range acc {
		tr := t.TenantResult
		tr.Name = named[i].Name
		if tr.Name == "" {
			tr.Name = fmt.Sprintf("tenant-%d", i+1)
		}
		tr.TTFT, tr.E2E = summarize(t.ttft), summarize(t.e2e)
		if w := window.Seconds(); w > 0 {
			tr.OutputTokensPerS = float64(tr.CompletionTokens) / w
		}
		out = append(out, tr)
		served[i] = float64(tr.CompletionTokens)
	}
	return out, JainIndex(served)
}

type tenantAcc struct {
	TenantResult
	ttft, e2e []time.Duration
}

func (r *runner) countHeaders(into map[string]map[string]int, rec *Record) {
	for i, v := range rec.Headers {
		if v == "" {
			continue
		}
		name := r.cfg.HeadersOfInterest[i]
		m := into[name]
		if m == nil {
			m = map[string]int{}
			into[name] = m
		}
		if _, seen := m[v]; !seen && len(m) >= maxHeaderValues {
			v = "(other)"
		}
		m[v]++
	}
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
