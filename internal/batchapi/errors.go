package batchapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/sluice-gw/sluice/internal/jobs"
	"github.com/sluice-gw/sluice/internal/netguard"
	"github.com/sluice-gw/sluice/internal/openai"
)

// object names the kind of thing a request addresses, for the wording of
// its 404 and 409.
type object int

const (
	objNone object = iota
	objFile
	objInputFile // a file named by a batch's input_file_id
	objBatch
	objJob
)

// stateError is a refused state change (jobs.ErrConflict) with the message
// the client sees, which names the object's current status.
type stateError struct {
	msg string
	err error
}

func (e *stateError) Error() string { return e.msg + ": " + e.err.Error() }
func (e *stateError) Unwrap() error { return e.err }

// errFileTooLarge is an upload beyond Options.MaxFileBytes.
var errFileTooLarge = errors.New("file exceeds the upload size limit")

// closedRetry is how long a client should wait when the queue is closed
// (shutdown or a NATS outage): long enough for a restart.
const closedRetry = 5 * time.Second

// tooManyBatchesRetry is the advice when the active batches are at their
// bound: batches run for minutes, so a minute.
const tooManyBatchesRetry = time.Minute

// unavailableRetry is the advice while NATS is away: the Store reconnects
// every 250ms, so a short wait finds it back soon after NATS is.
const unavailableRetry = 2 * time.Second

// busyRetry is the Retry-After of 503 queue_busy: the backlog of
// acknowledgements a publish waited 200 ms on clears in about that long.
const busyRetry = time.Second

// storeFailingRetry is the Retry-After of 503 storage_unavailable: the
// embedded store checks its disk every 5s (jobs.EmbeddedOptions
// .RecoverEvery) and an operator freeing space takes longer than that.
const storeFailingRetry = 30 * time.Second

// apiError maps any error a handler meets to the status and OpenAI error
// object the client sees. This is the one place that decides it; internal
// reports whether the error is ours (worth logging) rather than the
// client's.
func apiError(err error, kind object, id string) (e *openai.Error, internal bool) {
	var oe *openai.Error
	var se *stateError
	var mbe *http.MaxBytesError
	var bodyTimeout *netguard.BodyTimeoutError
	switch {
	case errors.As(err, &oe):
		return oe, false
	case errors.Is(err, jobs.ErrNotFound):
		return notFound(kind, id), false
	case errors.Is(err, jobs.ErrFileUnreadable):
		// A stored file damaged or missing in part, or a store that sent
		// no chunk for FileReadIdle: ours, logged with the request id. Not
		// final: a stalled store may answer the SDKs' retry.
		return &openai.Error{Status: http.StatusInternalServerError, Type: openai.TypeServer, Code: "file_unreadable",
			Message: "the file's stored content cannot be read whole"}, true
	case errors.As(err, &se):
		// OpenAI answers 409 "Cannot cancel a batch with status
		// 'completed'." (the python SDK raises ConflictError). Final: the
		// SDKs retry a 409 (a lock timeout, to them), but a finished or
		// finalizing object does not go back.
		return &openai.Error{Status: http.StatusConflict, Type: openai.TypeInvalidRequest, Message: se.msg, Final: true}, false
	case errors.Is(err, jobs.ErrIdempotencyMismatch):
		// draft-ietf-httpapi-idempotency-key-header: a key reused with
		// another payload is a 422; Final, as a retry cannot succeed.
		return &openai.Error{Status: http.StatusUnprocessableEntity, Type: openai.TypeInvalidRequest,
			Code: "idempotency_key_reused", Param: "Idempotency-Key", Final: true,
			Message: "this Idempotency-Key was already used for a different request; use a new key for a new request"}, false
	case errors.Is(err, jobs.ErrConflict):
		return &openai.Error{Status: http.StatusConflict, Type: openai.TypeInvalidRequest,
			Message: "the object's current status does not allow this operation", Final: true}, false
	case errors.Is(err, errFileTooLarge), errors.Is(err, jobs.ErrTooLarge), errors.As(err, &mbe):
		if kind == objFile {
			return &openai.Error{Status: http.StatusRequestEntityTooLarge, Type: openai.TypeInvalidRequest,
				Code: "file_too_large", Param: "file", Message: "the file exceeds the upload size limit"}, false
		}
		return &openai.Error{Status: http.StatusRequestEntityTooLarge, Type: openai.TypeInvalidRequest,
			Code: "request_too_large", Message: "the request body exceeds the size limit"}, false
	case errors.Is(err, ErrLineMemory):
		// An upload's line buffer draws from server.max_body_memory with
		// the inference bodies: the gateway's answer when it is full.
		return &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: "body_memory_full",
			Message: "the gateway holds as many request bodies as its memory bound allows; retry shortly", RetryAfter: time.Second}, false
	case errors.Is(err, errSpoolFull):
		// The uploads being received hold Options.MaxSpoolBytes of
		// temporary disk: busy, not this upload's fault (one beyond the
		// file limit is the 413 above).
		return &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: "upload_spool_full",
			Message: "the gateway is receiving as many uploads as its temporary disk bound allows; retry shortly", RetryAfter: spoolFullRetry}, false
	case errors.As(err, &bodyTimeout):
		// The gateway's body timeouts (netguard.TimedBody) cut a stalled
		// or trickling upload; the connection closes after this answer.
		return &openai.Error{Status: http.StatusRequestTimeout, Type: openai.TypeInvalidRequest, Code: "request_timeout",
			Message: bodyTimeout.Error()}, false
	case errors.Is(err, errMalformedUpload):
		// The multipart reader's text is Go's; the client needs only this,
		// as the audio routes answer it.
		return openai.BadMultipart(), false
	case errors.Is(err, jobs.ErrTooManyBatches):
		// A bound on batches not finished (queue.max_active_batches, and
		// per tenant): like OpenAI's batch queue limits, a 429 to retry
		// once one has finished.
		return &openai.Error{Status: http.StatusTooManyRequests, Type: openai.TypeRateLimit, Code: "too_many_active_batches",
			Message: "too many batches are in progress; retry when one has finished", RetryAfter: tooManyBatchesRetry}, false
	case errors.Is(err, jobs.ErrTooManyListings):
		// A bound on listings reading every file's metadata at once
		// (jobs.MaxFileListings); one takes well under a second unless
		// thousands of files and many listings compete. The process's
		// capacity, shared by every tenant, not the caller's rate: 503,
		// as batch_create_busy and too_many_watchers.
		return &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: "too_many_file_listings",
			Message: "too many file listings are running; retry shortly", RetryAfter: time.Second}, false
	case errors.Is(err, jobs.ErrBatchTooLarge):
		// Its results alone are expected to take more than the store
		// admits (jobs' reservation, two copies of each line): a 507
		// "delete files" was refused again after every delete.
		return &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "batch_too_large", Param: "input_file_id",
			Message: "the batch's results are expected to take more room than the job store admits (queue.max_store_bytes); split the input file into smaller batches"}, false
	case errors.Is(err, jobs.ErrStoreFull):
		// Before IsUnavailable: JetStream's refusal can come with a
		// timeout's text. 507 (RFC 4918: the server cannot store what the
		// request needs), not 429/503: space frees only as files are
		// deleted or retention expires, so no Retry-After is promised,
		// and Final stops the SDKs' two retries of a 5xx (an upload
		// sent three times over to a full store).
		return &openai.Error{Status: http.StatusInsufficientStorage, Type: openai.TypeServer, Code: "storage_full",
			Message: "the job store is full (queue.max_store_bytes); delete files or wait for retention to free space", Final: true}, false
	case errors.Is(err, jobs.ErrStoreFailing):
		// Before IsUnavailable: a write the failing disk never
		// acknowledged ends in a timeout. The embedded server's disk
		// refused writes (full, read-only, failing); the gateway starts
		// its server again by itself once it takes writes, so a retry
		// later may succeed. Nothing about the disk goes to the client.
		return &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: "storage_unavailable",
			Message: "the job store cannot write to its disk; nothing was stored; retry later", RetryAfter: storeFailingRetry}, false
	case errors.Is(err, jobs.ErrBusy):
		// Before IsUnavailable: the stalled publish may come with a
		// timeout too. The queue is up but its writes are backed up:
		// load, not a fault, so a retry soon is the advice.
		return &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: "queue_busy",
			Message: "the job queue is busy with other writes; nothing was queued; retry shortly", RetryAfter: busyRetry}, false
	case jobs.IsUnavailable(err):
		return &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: "queue_unavailable",
			Message: "the job queue is unreachable; retry shortly", RetryAfter: unavailableRetry}, false
	case errors.Is(err, jobs.ErrClosed):
		return &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: "queue_unavailable",
			Message: "the job queue is not available; retry shortly", RetryAfter: closedRetry}, false
	case errors.Is(err, context.Canceled):
		// nginx's 499, as the gateway: the client left; nobody reads it.
		return &openai.Error{Status: 499, Type: openai.TypeServer, Code: "client_closed_request", Message: "client closed the request"}, false
	default:
		return openai.ServerError(http.StatusInternalServerError, "internal_error", "internal error"), true
	}
}

// notFound words a 404 as OpenAI does for files ("No such File object:
// file-abc", param "id"); batches and jobs follow the same shape. The same
// answer is given for another tenant's object.
func notFound(kind object, id string) *openai.Error {
	id = openai.Echo(id)
	var msg string
	param := "id"
	switch kind {
	case objFile:
		msg = "No such File object: " + id
	case objInputFile:
		msg, param = "No such File object: "+id, "input_file_id"
	case objBatch:
		msg = "No such Batch object: " + id
	case objJob:
		msg = "No such Job object: " + id
	default:
		msg = "Not found"
	}
	e := openai.NotFound("", msg)
	e.Param = param
	return e
}

// fail writes err's response, logging the ones that are our fault.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error, kind object, id string) {
	e, internal := apiError(err, kind, id)
	if internal {
		// The client gets a generic answer; the id (set by the gateway)
		// finds this line.
		reqID := w.Header().Get("X-Request-Id")
		h.log.ErrorContext(r.Context(), "batch api request failed", "method", r.Method, "path", r.URL.Path,
			"request_id", reqID, "err", err)
		if reqID != "" {
			c := *e
			c.Message += " (request id " + reqID + ")"
			e = &c
		}
	}
	openai.WriteError(w, e)
}

// writeJSON answers status with v encoded.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own types are encoded here; they always marshal.
		openai.WriteError(w, openai.ServerError(http.StatusInternalServerError, "internal_error", "encoding the response failed"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
