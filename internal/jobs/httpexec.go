package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// DefaultMaxAnswerBytes bounds the answer a job's run holds in memory,
// in a separate worker (HTTPExecutor.MaxBody) and in the gateway's own
// (the in-process job entry): a job's answer is stored whole, so a backend
// answering without end would otherwise grow the process without bound.
// Over it the run fails as any other error does (retried, then
// dead-lettered), with ErrAnswerTooLarge.
const DefaultMaxAnswerBytes = 64 << 20

// ErrAnswerTooLarge wraps an Executor's error when the job's answer was
// over the bound its run holds in memory (DefaultMaxAnswerBytes): a
// failed attempt as any other, counted apart too
// (sluice_jobs_answers_too_large_total), so that an operator who finds
// jobs dead-lettered can tell answers too large to store from backends
// failing.
var ErrAnswerTooLarge = errors.New("the answer is over the most a job's answer may hold")

// HTTPExecutor runs jobs by sending them to a Sluice gateway's admin
// listener over HTTP: what a separate `sluice worker` process uses. Each
// request goes to /worker<job path> (e.g. /worker/v1/chat/completions),
// authenticated with admin.worker_token (else admin.token), and names the job's tenant in
// X-Sluice-Job-Tenant, which only that authenticated admin route believes:
// the gateway runs it through the same chain as a public request, charged
// to its tenant's rate limits and token accounting, and only into a free
// slot. A refusal (no room, or the tenant's limit) comes back as a 429/503
// Result with the gateway's Retry-After, which the worker treats as "not
// now": the job goes back to the queue without counting an attempt.
type HTTPExecutor struct {
	Admin string // the gateway's admin base URL, e.g. http://127.0.0.1:9091
	// Token is the gateway's admin.worker_token, or its admin.token when
	// that is unset (required: the gateway runs jobs as their tenants only
	// for an authenticated worker).
	Token  string
	Client *http.Client // default: a client with a 10 minute timeout
	// MaxBody bounds an answer, default DefaultMaxAnswerBytes.
	MaxBody int64
	// Now is the clock Retry-After dates are read against, default time.Now.
	Now Clock
	// Log, when set, takes a line for each job the gateway refused the
	// worker (its credential): those go back to the queue, not run.
	Log *slog.Logger
}

// Execute implements Executor.
func (e *HTTPExecutor) Execute(ctx context.Context, j *Job) (Result, error) {
	client := e.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Minute}
	}
	limit := e.MaxBody
	if limit <= 0 {
		limit = DefaultMaxAnswerBytes
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
		if notSent(err) {
			// No connection to the gateway (gone, restarting, not up
			// yet): the job never reached it, which is no failure of the
			// job's (it counted an attempt, and dead-lettered the jobs a
			// worker took while its gateway restarted).
			return Result{}, fmt.Errorf("job %s: %w: %w", j.ID, ErrNotDelivered, err)
		}
		return Result{}, fmt.Errorf("job %s: %w", j.ID, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		// The admin listener refused the worker, not the job's request:
		// that is no answer to store as the job's result, and the job did
		// not run: back to the queue uncounted (ErrNotDelivered), as while
		// a credential is rotated (admin.worker_token set on the gateways
		// before the workers' --token), not dead-lettered after
		// max-attempts refusals.
		err := fmt.Errorf("the gateway's admin listener refused the worker (%d): check --token against admin.worker_token (admin.token when that is unset)", resp.StatusCode)
		if e.Log != nil {
			e.Log.Warn("job not run", "job", j.ID, "error", err.Error())
		}
		return Result{}, fmt.Errorf("job %s: %w: %w", j.ID, ErrNotDelivered, err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return Result{}, fmt.Errorf("job %s: reading the answer: %w", j.ID, err)
	}
	if int64(len(body)) > limit {
		return Result{}, fmt.Errorf("job %s: %w (%d bytes)", j.ID, ErrAnswerTooLarge, limit)
	}
	if resp.StatusCode == StatusRevoked && revokedAnswer(body) {
		// The gateway refused the job itself: its tenant's last API key
		// was removed. Not run, and not to be run later.
		return Result{}, fmt.Errorf("job %s: %w", j.ID, ErrRevoked)
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
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusBadGateway {
		now := time.Now
		if e.Now != nil {
			now = e.Now
		}
		res.RetryAfter = proxy.ParseRetryAfter(resp.Header.Get("Retry-After"), now())
	}
	return res, nil
}

// revokedAnswer reports whether the body of a StatusRevoked answer is
// the gateway's refusal of a revoked job (error code CodeRevoked).
func revokedAnswer(body []byte) bool {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	return json.Unmarshal(body, &e) == nil && e.Error.Code == CodeRevoked
}

// ErrNotDelivered wraps an Executor's error when the job never reached
// what runs it (no connection to the gateway could be made): the worker
// sends the job back to the queue without counting the attempt, as for a
// busy answer. An error once the request was sent (the connection cut
// mid-answer) still counts: the gateway may have run it, and a job that
// brings its gateway down must still end dead-lettered.
var ErrNotDelivered = errors.New("the job did not reach the gateway")

// notSent reports whether err is the failure to make a connection (dial:
// refused, unreachable, a name that does not resolve), before any byte of
// the request was sent.
func notSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}
