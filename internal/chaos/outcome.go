package chaos

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// outcome is how one request ended, as a client sees it.
type outcome int

const (
	served      outcome = iota // a complete answer
	refused                    // an announced failure: an OpenAI-shaped 4xx/5xx (with Retry-After on 429/503), or an error event in a stream
	unannounced                // anything else: not OpenAI-shaped, 429/503 without Retry-After, a hang, a reset, a stream cut without an error
)

// announcedError reports whether a non-2xx answer is announced: an
// OpenAI-shaped JSON error object, and a Retry-After on 429 and 503 (the
// statuses that tell a client to come back). It returns a short reason
// when it is not.
func announcedError(status int, h http.Header, body []byte) (bool, string) {
	if !isOpenAIError(body) {
		return false, "status " + strconv.Itoa(status) + " without an OpenAI error object"
	}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		ra := strings.TrimSpace(h.Get("Retry-After"))
		if ra == "" {
			return false, "status " + strconv.Itoa(status) + " without Retry-After"
		}
		if _, err := strconv.Atoi(ra); err != nil {
			if _, err := http.ParseTime(ra); err != nil {
				return false, "status " + strconv.Itoa(status) + " with an unparseable Retry-After"
			}
		}
	}
	return true, ""
}

// isOpenAIError reports {"error":{"message":string,"type":string,...}}.
func isOpenAIError(body []byte) bool {
	var e struct {
		Error *struct {
			Message *string `json:"message"`
			Type    *string `json:"type"`
		} `json:"error"`
	}
	if json.Unmarshal(bytes.TrimSpace(body), &e) != nil || e.Error == nil {
		return false
	}
	return e.Error.Message != nil && e.Error.Type != nil
}

// tally counts outcomes and keeps the served requests' times to first
// token; safe for concurrent use.
type tally struct {
	mu        sync.Mutex
	sent      int
	byOutcome [3]int
	ttft      []time.Duration
	reasons   map[string]int // unannounced failures by reason
	trace     *tracer        // every request, when the run is traced
}

func (t *tally) add(o outcome, ttft time.Duration, reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sent++
	t.byOutcome[o]++
	if o == served && ttft > 0 {
		t.ttft = append(t.ttft, ttft)
	}
	if o == unannounced {
		if t.reasons == nil {
			t.reasons = map[string]int{}
		}
		t.reasons[reason]++
	}
}

// p99Since is the p99 TTFT of the requests served since the first
// `from` served ones, and how many have been served in all, so a caller
// can sample it interval by interval.
func (t *tally) p99Since(from int) (time.Duration, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	from = min(from, len(t.ttft))
	return percentile(t.ttft[from:], 0.99), len(t.ttft)
}

// counts is a snapshot of a tally.
type counts struct {
	Sent, Served, Refused, Unannounced int
	P99                                time.Duration // of served requests' TTFT; 0 when none
	Reasons                            map[string]int
}

func (t *tally) counts() counts {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := counts{Sent: t.sent, Served: t.byOutcome[served], Refused: t.byOutcome[refused],
		Unannounced: t.byOutcome[unannounced], P99: percentile(t.ttft, 0.99), Reasons: map[string]int{}}
	for k, v := range t.reasons {
		c.Reasons[k] = v
	}
	return c
}

func (c counts) plus(o counts) counts {
	r := counts{Sent: c.Sent + o.Sent, Served: c.Served + o.Served, Refused: c.Refused + o.Refused,
		Unannounced: c.Unannounced + o.Unannounced, P99: c.P99, Reasons: map[string]int{}}
	for k, v := range c.Reasons {
		r.Reasons[k] += v
	}
	for k, v := range o.Reasons {
		r.Reasons[k] += v
	}
	return r
}

// percentile is the nearest-rank percentile.
func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	slices.Sort(s)
	i := int(float64(len(s))*q+0.999999) - 1
	i = max(0, min(i, len(s)-1))
	return s[i]
}

func jsonValid(b []byte, v any) bool { return json.Unmarshal(b, v) == nil }

func readAll(resp *http.Response) ([]byte, error) {
	return io.ReadAll(io.LimitReader(resp.Body, 64<<20))
}
