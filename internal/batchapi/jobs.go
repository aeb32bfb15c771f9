package batchapi

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/sluice-gw/sluice/internal/jobs"
	"github.com/sluice-gw/sluice/internal/openai"
)

// WebhookHeader is the request header naming the URL a finished async job
// is POSTed to.
const WebhookHeader = "X-Sluice-Webhook"

// maxWebhookLen bounds a webhook URL; it is stored with every job.
const maxWebhookLen = 2048

// Accept submits spec (an async request the gateway decoded: Prefer:
// respond-async, Idempotency-Key, webhook) and answers 202 Accepted with
// Location: /v1/jobs/{id} and the job. A resubmission with an idempotency
// key already used gets the same 202 and job, marked with the header
// Idempotent-Replayed: true, so a client retrying after a lost response
// cannot create two jobs.
func (h *Handler) Accept(w http.ResponseWriter, r *http.Request, spec jobs.Spec) {
	j, existing, err := h.svc.Submit(r.Context(), spec)
	if err != nil {
		h.fail(w, r, fmt.Errorf("submitting job: %w", err), objJob, "")
		return
	}
	w.Header().Set("Location", "/v1/jobs/"+j.ID)
	if existing {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeJSON(w, http.StatusAccepted, j)
}

// ParseWebhook checks the value of the webhook header: an absolute http or
// https URL with a host, at most 2048 bytes. It returns the URL normalised
// (the scheme lower-cased); the error is a 400 *openai.Error naming the
// header. Which hosts may be called is the gateway's policy, not checked
// here.
func ParseWebhook(raw string) (string, error) {
	bad := &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "invalid_webhook",
		Param: WebhookHeader, Message: WebhookHeader + " must be an absolute http or https URL"}
	raw = strings.TrimSpace(raw)
	if raw == "" || len(raw) > maxWebhookLen {
		return "", bad
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" || u.Hostname() == "" {
		return "", bad
	}
	return u.String(), nil
}

// getJob is GET /v1/jobs/{id}.
func (h *Handler) getJob(w http.ResponseWriter, r *http.Request, tenant, id string) {
	j, err := h.svc.Job(r.Context(), tenant, id)
	if err != nil {
		h.fail(w, r, err, objJob, id)
		return
	}
	writeJSON(w, http.StatusOK, j)
}

// cancelJob is DELETE /v1/jobs/{id}: it cancels a queued or running job
// and returns it; a finished job is a 409.
func (h *Handler) cancelJob(w http.ResponseWriter, r *http.Request, tenant, id string) {
	j, err := h.svc.CancelJob(r.Context(), tenant, id)
	if errors.Is(err, jobs.ErrConflict) && j != nil {
		err = &stateError{msg: "Cannot cancel a job with status '" + string(j.Status) + "'.", err: err}
	}
	if err != nil {
		h.fail(w, r, err, objJob, id)
		return
	}
	writeJSON(w, http.StatusOK, j)
}
