// Package jobs is the durable job queue behind async requests and the
// OpenAI Batch API, on NATS JetStream.
package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"time"
)

// Status is a job's state. queued -> running -> succeeded | failed, or
// cancelled from queued/running. A job in a terminal state never changes
// again: that is what suppresses duplicate executions on redelivery.
type Status string

const (
	StatusQueued    Status = "queued"
	StatusRunning   Status = "running"
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
	StatusCancelled Status = "cancelled"
)

// Terminal reports whether s is final.
func (s Status) Terminal() bool {
	return s == StatusSucceeded || s == StatusFailed || s == StatusCancelled
}

// Spec is what a client submits: one inference request to run later.
type Spec struct {
	Tenant string          // owner; other tenants get 404
	Path   string          // "/v1/chat/completions", "/v1/completions" or "/v1/embeddings"
	Model  string          // the body's model (already validated by the caller)
	Body   json.RawMessage // the request body as received (stream is ignored: results are stored whole)
	// Class is the admission class the job runs in: "batch" for the Batch
	// API, the submitter's class for async single requests.
	Class string
	// IdempotencyKey, when set, makes a resubmission by the same tenant
	// of the same request (Path and Body) return the job created first
	// (Submit's existing result); another request with it is
	// ErrIdempotencyMismatch.
	IdempotencyKey string
	// Webhook, when set, is POSTed the finished job (signed, see Webhook).
	Webhook string
}

// Result is the upstream answer a job got.
type Result struct {
	StatusCode int             `json:"status_code"`
	RequestID  string          `json:"request_id,omitempty"`
	Body       json.RawMessage `json:"body"` // JSON object as returned (errors: the OpenAI error object)
	// RetryAfter is the gateway's advice on a busy answer (429/503) or a
	// 502 (when a backend is back): the job goes back to the queue for at
	// least this long. Not stored.
	RetryAfter time.Duration `json:"-"`
}

// JobError says why a job failed without an upstream answer worth storing
// (attempts exhausted on transport errors, cancelled, expired).
type JobError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Job is the stored record of one job (JSON in the jobs key-value bucket;
// also the body of GET /v1/jobs/{id} and of webhooks).
type Job struct {
	ID         string          `json:"id"`
	Object     string          `json:"object"` // "job"
	Status     Status          `json:"status"`
	Tenant     string          `json:"-"`
	Path       string          `json:"endpoint"`
	Model      string          `json:"model"`
	Class      string          `json:"class,omitempty"`
	Body       json.RawMessage `json:"-"`
	BatchID    string          `json:"batch_id,omitempty"`
	CustomID   string          `json:"custom_id,omitempty"`
	Webhook    string          `json:"-"`
	Attempts   int             `json:"attempts"`
	CreatedAt  int64           `json:"created_at"` // unix seconds, as OpenAI objects
	StartedAt  int64           `json:"started_at,omitempty"`
	FinishedAt int64           `json:"finished_at,omitempty"`
	Result     *Result         `json:"result,omitempty"`
	Error      *JobError       `json:"error,omitempty"`
	// WebhookState is the webhook's outcome (set only on jobs submitted
	// with a webhook); not in the webhook's own body.
	WebhookState *WebhookDelivery `json:"webhook,omitempty"`
	// CancelRequested is set by Cancel on a running job; the worker drops
	// the result and records cancelled.
	CancelRequested bool `json:"-"`
	// fingerprint is the record's Fingerprint (jobRecord).
	fingerprint string
}

// WebhookDelivery is a job's webhook outcome, the "webhook" object of
// GET /v1/jobs/{id}. Status is pending until the job finishes and its
// webhook is sent or given up (while pending after failed attempts,
// NextAttemptAt says when it is tried again: webhookretry.go; one that a
// queue bound kept out waits for the sweep, pending too); then delivered,
// or failed (a final answer, or every step of the retry schedule made).
// dropped is only on records written before bounds left webhooks pending.
// Reason is a short code, never an error's text (which can name internal
// addresses): receiver_error (StatusCode says which), network_error,
// timeout, destination_refused (a private or unresolvable address,
// refused where it is dialled), invalid_url or not_signed (no
// queue.webhook_secret); on an old dropped record, the
// sluice_jobs_webhooks_dropped_total reason.
type WebhookDelivery struct {
	Status      string `json:"status"` // pending, delivered, failed, dropped
	Attempts    int    `json:"attempts"`
	DeliveredAt int64  `json:"delivered_at,omitempty"` // unix seconds
	FailedAt    int64  `json:"failed_at,omitempty"`    // unix seconds, failed or dropped
	StatusCode  int    `json:"status_code,omitempty"`  // the receiver's last answer
	Reason      string `json:"reason,omitempty"`
	// NextAttemptAt is when a pending webhook whose attempts so far failed
	// is tried again (unix seconds); 0 otherwise.
	NextAttemptAt int64 `json:"next_attempt_at,omitempty"`
}

// Webhook outcome statuses.
const (
	WebhookPending   = "pending"
	WebhookDelivered = "delivered"
	WebhookFailed    = "failed"
	WebhookDropped   = "dropped"
)

// File is an OpenAI file object (GET /v1/files/{id}).
type File struct {
	ID        string `json:"id"`
	Object    string `json:"object"` // "file"
	Bytes     int64  `json:"bytes"`
	CreatedAt int64  `json:"created_at"`
	ExpiresAt int64  `json:"expires_at,omitempty"`
	Filename  string `json:"filename"`
	Purpose   string `json:"purpose"` // "batch" for uploads; "batch_output" for output and error files
	Status    string `json:"status"`  // "processed" (deprecated by OpenAI but still read by SDKs)
	Tenant    string `json:"-"`
}

// BatchCounts are a batch's request counts.
type BatchCounts struct {
	Total     int `json:"total"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
}

// BatchUsage is the batch object's "usage": OpenAI's names, whatever
// the endpoint (a chat answer's prompt_tokens count as input_tokens).
// Comparable, so the tracker can tell whether it changed.
type BatchUsage struct {
	InputTokens         int64              `json:"input_tokens"`
	InputTokensDetails  BatchInputDetails  `json:"input_tokens_details"`
	OutputTokens        int64              `json:"output_tokens"`
	OutputTokensDetails BatchOutputDetails `json:"output_tokens_details"`
	TotalTokens         int64              `json:"total_tokens"`
}

// BatchInputDetails is usage.input_tokens_details of a batch.
type BatchInputDetails struct {
	CachedTokens int64 `json:"cached_tokens"`
}

// BatchOutputDetails is usage.output_tokens_details of a batch.
type BatchOutputDetails struct {
	ReasoningTokens int64 `json:"reasoning_tokens"`
}

// BatchErrors is the batch object's "errors" field (validation errors of
// the input file; null when there were none).
type BatchErrors struct {
	Object string           `json:"object"` // "list"
	Data   []BatchLineError `json:"data"`
}

// BatchLineError is one input-file problem.
type BatchLineError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Param   string `json:"param,omitempty"`
	Line    int    `json:"line,omitempty"` // 1-based
}

// Batch is an OpenAI batch object (GET /v1/batches/{id}). Status is one of
// validating, failed, in_progress, finalizing, completed, expired,
// cancelling, cancelled. Timestamps are unix seconds, absent until reached.
type Batch struct {
	ID       string `json:"id"`
	Object   string `json:"object"` // "batch"
	Endpoint string `json:"endpoint"`
	// Model is the model every line names (OpenAI's batches have one);
	// absent when the lines name several, which Sluice allows.
	Model            string       `json:"model,omitempty"`
	Errors           *BatchErrors `json:"errors"`
	InputFileID      string       `json:"input_file_id"`
	CompletionWindow string       `json:"completion_window"`
	Status           string       `json:"status"`
	OutputFileID     *string      `json:"output_file_id"`
	ErrorFileID      *string      `json:"error_file_id"`
	CreatedAt        int64        `json:"created_at"`
	InProgressAt     *int64       `json:"in_progress_at"`
	ExpiresAt        *int64       `json:"expires_at"`
	FinalizingAt     *int64       `json:"finalizing_at"`
	CompletedAt      *int64       `json:"completed_at"`
	FailedAt         *int64       `json:"failed_at"`
	ExpiredAt        *int64       `json:"expired_at"`
	CancellingAt     *int64       `json:"cancelling_at"`
	CancelledAt      *int64       `json:"cancelled_at"`
	RequestCounts    BatchCounts  `json:"request_counts"`
	// Usage is the tokens of the batch's answers so far, summed from
	// their usage objects (OpenAI's batch "usage", which the SDKs read).
	Usage    BatchUsage        `json:"usage"`
	Metadata map[string]string `json:"metadata"`
	Tenant   string            `json:"-"`
}

// BatchRequest is one validated line of a batch input file.
type BatchRequest struct {
	CustomID string
	Method   string // "POST"
	URL      string // the endpoint, equal to the batch's
	Model    string
	Body     json.RawMessage
}

// BatchSpec is a POST /v1/batches, with the input file already read and
// validated by the caller (every line's URL equals Endpoint).
type BatchSpec struct {
	Tenant           string
	InputFileID      string
	Endpoint         string
	CompletionWindow string // "24h"
	Metadata         map[string]string
	Requests         []BatchRequest
	// OutputExpiresAfter is how long the batch's output and error files
	// are kept after they are written (output_expires_after.seconds), 0
	// for Options.Retention, which also bounds it.
	OutputExpiresAfter time.Duration
}

// Errors callers map to HTTP statuses.
var (
	ErrNotFound = errors.New("not found")           // 404 (also for another tenant's object)
	ErrConflict = errors.New("conflicting state")   // 409 / 400: e.g. cancelling a finished batch
	ErrTooLarge = errors.New("too large")           // 413
	ErrClosed   = errors.New("job queue is closed") // 503
	// ErrIdempotencyMismatch: an idempotency key already used for another
	// request (another path or body). 422, as the IETF Idempotency-Key
	// draft says.
	ErrIdempotencyMismatch = errors.New("idempotency key already used for a different request")
	// ErrUnavailable: NATS is not reachable now (the connection is
	// reconnecting, or a call failed for want of it). 503 with
	// Retry-After; the Store recovers by itself when NATS returns.
	ErrUnavailable = errors.New("job queue unavailable")
	// ErrBusy: NATS left the Store's asynchronous publishes unacknowledged
	// past nats.go's stall wait (its window, Options.PublishWindow, full:
	// large batches created at once, or a slow link to NATS). Nothing is
	// wrong but load: 503 with Retry-After.
	ErrBusy = errors.New("job queue busy: too many writes awaiting acknowledgement")
)

// Service is what the HTTP layer (internal/batchapi) and the gateway need
// from the queue. *Store implements it.
type Service interface {
	// Submit creates and enqueues a job. With an IdempotencyKey already
	// used by the tenant it returns that job and existing=true instead, or
	// ErrIdempotencyMismatch when that job was another request.
	Submit(ctx context.Context, s Spec) (j *Job, existing bool, err error)
	// Job returns the tenant's job, or ErrNotFound.
	Job(ctx context.Context, tenant, id string) (*Job, error)
	// CancelJob cancels a queued or running job; a finished job is
	// returned unchanged with ErrConflict.
	CancelJob(ctx context.Context, tenant, id string) (*Job, error)

	// PutFile stores an uploaded file (content read fully from r, at
	// most the configured limit: ErrTooLarge beyond it).
	PutFile(ctx context.Context, f File, r io.Reader) (*File, error)
	File(ctx context.Context, tenant, id string) (*File, error)
	// ListFiles returns the tenant's files newest first, of purpose when
	// it is not "".
	ListFiles(ctx context.Context, tenant, purpose string) ([]*File, error)
	// FileCursor returns the tenant's file also when it is deleted or
	// expired (until retention ends), or ErrNotFound: where a list's
	// after= stands.
	FileCursor(ctx context.Context, tenant, id string) (*File, error)
	// FileContent opens the file's bytes; the caller closes the reader.
	FileContent(ctx context.Context, tenant, id string) (io.ReadCloser, error)
	DeleteFile(ctx context.Context, tenant, id string) error

	// CreateBatch records the batch and enqueues one job per request.
	CreateBatch(ctx context.Context, s BatchSpec) (*Batch, error)
	Batch(ctx context.Context, tenant, id string) (*Batch, error)
	// ListBatches returns the tenant's batches newest first, starting
	// after the batch with id after ("" = from the newest), at most limit,
	// and whether more follow.
	ListBatches(ctx context.Context, tenant, after string, limit int) ([]*Batch, bool, error)
	CancelBatch(ctx context.Context, tenant, id string) (*Batch, error)
}

// Executor runs one job's request (in the gateway: through the same
// admission, routing and retries as a live request, in the job's class)
// and returns the answer. An error means no answer (transport failure,
// shutdown): the job is retried. A Result with status 429 or 503 means the
// pool had no room: the job is retried later without counting an attempt.
type Executor interface {
	Execute(ctx context.Context, j *Job) (Result, error)
}

// Gate is the admission controller's view of spare capacity: Wait returns
// when model's pool can take one more job without making interactive
// traffic wait, or with ctx's error. model "" asks whether any pool has
// room (a worker asks that before it pulls a message, then again for the
// job's model).
type Gate interface {
	Wait(ctx context.Context, model string) error
}

// Clock is injected time.
type Clock func() time.Time
