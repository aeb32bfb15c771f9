package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// HTTPExecutor runs jobs by sending them to a Sluice gateway's admin
// listener over HTTP: what a separate `sluice worker` process uses. Each
// request goes to /worker<job path> (e.g. /worker/v1/chat/completions),
// authenticated with admin.token, and names the job's tenant in
// X-Sluice-Job-Tenant, which only that authenticated admin route believes:
// the gateway runs it through the same chain as a public request, charged
// to its tenant's rate limits and token accounting, and only into a free
// slot. A refusal (no room, or the tenant's limit) comes back as a 429/503
// Result with the gateway's Retry-After, which the worker treats as "not
// now": the job goes back to the queue without counting an attempt.
type HTTPExecutor struct {
	Admin string // the gateway's admin base URL, e.g. http://127.0.0.1:9091
	// Token is the gateway's admin.token (required: the gateway runs jobs
	// as their tenants only for an authenticated worker).
	Token  string
	Client *http.Client // default: a client with a 10 minute timeout
	// MaxBody bounds an answer, default 64 MiB.
	MaxBody int64
	// Now is the clock Retry-After dates are read against, default time.Now.
	Now Clock
}

// Execute implements Executor.
func (e *HTTPExecutor) Execute(ctx context.Context, j *Job) (Result, error) {
	client := e.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Minute}
	}
	limit := e.MaxBody
	if limit <= 0 {
		limit = 64 << 20
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(e.Admin, "/")+"/worker"+j.Path, bytes.NewReader(j.Body))
	if err != nil {
		return Result{}, fmt.Errorf("job %s: %w", j.ID, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", j.ID+"-"+strconv.Itoa(j.Attempts))
	req.Header.Set("X-Sluice-Priority", j.Class)
	req.Header.Set("X-Sluice-Max-Wait", "1ms")
	req.Header.Set("X-Sluice-Job-Tenant", url.QueryEscape(j.Tenant))
	req.Header.Set("Authorization", "Bearer "+e.Token)
	req.Header.Set("Cache-Control", "no-store") // a job's answer must be its own run
	resp, err := client.Do(req)
	if err != nil {
		return Result{}, fmt.Errorf("job %s: %w", j.ID, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		// The admin listener refused the worker, not the job's request:
		// that is no answer to store as the job's result.
		return Result{}, fmt.Errorf("job %s: the gateway's admin listener refused the worker (%d): check --admin-token against admin.token", j.ID, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return Result{}, fmt.Errorf("job %s: reading the answer: %w", j.ID, err)
	}
	if int64(len(body)) > limit {
		return Result{}, fmt.Errorf("job %s: answer over %d bytes", j.ID, limit)
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") && resp.StatusCode == http.StatusOK {
		// Results are stored whole: keep a streamed answer as the JSON a
		// plain request gets.
		if body, err = openai.AccumulateStream(body); err != nil {
			return Result{}, fmt.Errorf("job %s: %w", j.ID, err)
		}
	}
	if !json.Valid(body) {
		return Result{}, fmt.Errorf("job %s: the gateway answered %d with a body that is not JSON", j.ID, resp.StatusCode)
	}
	res := Result{StatusCode: resp.StatusCode, RequestID: resp.Header.Get("X-Request-Id"), Body: json.RawMessage(body)}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		now := time.Now
		if e.Now != nil {
			now = e.Now
		}
		res.RetryAfter = proxy.ParseRetryAfter(resp.Header.Get("Retry-After"), now())
	}
	return res, nil
}

// HTTPGate asks a gateway's GET /spare whether its pool has spare capacity
// (nothing waiting in the admission queue, a slot free), polling until it
// has: separate workers then pull jobs only when they can run at once.
// /spare is on the gateway's admin listener, not the public one.
type HTTPGate struct {
	Admin  string        // the gateway's admin base URL, e.g. http://127.0.0.1:9091
	Token  string        // admin.token, sent as a bearer token when set
	Client *http.Client  // default: a client with a 2s timeout
	Poll   time.Duration // default 25ms
}

// Wait implements Gate. An unreachable gateway counts as no room.
func (g *HTTPGate) Wait(ctx context.Context, model string) error {
	client := g.Client
	if client == nil {
		client = &http.Client{Timeout: 2 * time.Second}
	}
	poll := g.Poll
	if poll <= 0 {
		poll = 25 * time.Millisecond
	}
	u := strings.TrimRight(g.Admin, "/") + "/spare?model=" + url.QueryEscape(model)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		if g.Token != "" {
			req.Header.Set("Authorization", "Bearer "+g.Token)
		}
		if resp, err := client.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}
