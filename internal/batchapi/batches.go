package batchapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sluice-gw/sluice/internal/jobs"
	"github.com/sluice-gw/sluice/internal/netguard"
	"github.com/sluice-gw/sluice/internal/openai"
)

// Limits OpenAI documents for POST /v1/batches and its list.
const (
	maxBatchBody      = 1 << 20 // the JSON body; ids and 16 metadata pairs need far less
	maxMetadataPairs  = 16
	maxMetadataKey    = 64
	maxMetadataValue  = 512
	defaultListLimit  = 20
	maxListLimit      = 100
	completionWindow  = "24h"
	batchInputPurpose = "batch"
)

// createBatchRequest is POST /v1/batches. Pointers tell absent from empty;
// any other field is refused by name (decodeCreateBatch).
type createBatchRequest struct {
	InputFileID      *string `json:"input_file_id"`
	Endpoint         *string `json:"endpoint"`
	CompletionWindow *string `json:"completion_window"`
	// Metadata values are pointers so that a null value is refused
	// rather than stored as "" (as a map of strings would decode it).
	Metadata map[string]*string `json:"metadata"`
	// OutputExpiresAfter is the lifetime of the output and error files;
	// null or absent: the store's retention.
	OutputExpiresAfter *expiresAfter `json:"output_expires_after"`
}

// createBatch is POST /v1/batches: it reads the input file again and
// validates it against this batch (every line's url is the batch endpoint,
// the models are still served, the request cap), then records the batch.
func (h *Handler) createBatch(w http.ResponseWriter, r *http.Request, tenant string) {
	req, err := decodeCreateBatch(http.MaxBytesReader(w, r.Body, maxBatchBody))
	if err == nil {
		err = h.checkCreateBatch(req)
	}
	var outputLifetime time.Duration
	if err == nil && req.OutputExpiresAfter != nil {
		outputLifetime, err = req.OutputExpiresAfter.lifetime("output_expires_after")
	}
	if err != nil {
		h.fail(w, r, err, objBatch, "")
		return
	}
	fileID, endpoint := *req.InputFileID, *req.Endpoint
	f, err := h.svc.File(r.Context(), tenant, fileID)
	if err != nil {
		h.fail(w, r, err, objInputFile, fileID)
		return
	}
	if f.Purpose != batchInputPurpose {
		e := openai.BadRequest("invalid_value", "file "+fileID+" has purpose '"+f.Purpose+
			"'; a batch input must be uploaded with purpose 'batch'")
		e.Param = "input_file_id"
		h.fail(w, r, e, objBatch, "")
		return
	}
	// The file's requests are held whole until the batch is enqueued
	// (about 2.6 times its size in the heap): the gate bounds how many
	// bytes of input files creations hold at once.
	release, err := h.creates.acquire(r.Context(), f.Bytes)
	if err != nil {
		h.fail(w, r, err, objBatch, "")
		return
	}
	defer release()
	rc, err := h.svc.FileContent(r.Context(), tenant, fileID)
	if err != nil {
		h.fail(w, r, err, objInputFile, fileID)
		return
	}
	reqs, lineErrs, err := ParseBatchInput(rc, ParseOptions{
		Endpoints:    []string{endpoint},
		Models:       h.models,
		MaxRequests:  h.maxBatchRequests,
		MaxLineBytes: h.maxLineBytes,
	})
	rc.Close()
	if err != nil {
		h.fail(w, r, fmt.Errorf("reading input file %s: %w", fileID, err), objInputFile, fileID)
		return
	}
	if len(lineErrs) > 0 {
		e := lineErrors(lineErrs)
		e.Param = "input_file_id"
		h.fail(w, r, e, objBatch, "")
		return
	}
	b, err := h.svc.CreateBatch(r.Context(), jobs.BatchSpec{
		Tenant:             tenant,
		InputFileID:        fileID,
		Endpoint:           endpoint,
		CompletionWindow:   completionWindow,
		Metadata:           metadataStrings(req.Metadata),
		Requests:           reqs,
		OutputExpiresAfter: outputLifetime,
	})
	if err != nil {
		h.fail(w, r, fmt.Errorf("creating batch: %w", err), objBatch, "")
		return
	}
	writeJSON(w, http.StatusOK, b)
}

// decodeCreateBatch decodes the body as OpenAI reads it: exactly one
// JSON object of UTF-8 text, its keys matched exactly, a key it does not
// know refused by name (400 unknown_parameter), as OpenAI refuses one,
// rather than dropped: a client that sets a parameter the gateway does
// not implement (or misspells one, or writes "Endpoint") learns so
// instead of getting a batch that ignored it. A type error names the
// field. Duplicate keys take the last, as Python's json does.
func decodeCreateBatch(body io.Reader) (*createBatchRequest, error) {
	raw, err := io.ReadAll(body)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) || errors.Is(err, netguard.ErrBodyTimeout) {
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	var top map[string]json.RawMessage
	err = json.Unmarshal(raw, &top)
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &syn):
		// The decoder's own text names Go types; say where, not how.
		return nil, openai.BadRequest("invalid_json", "the body must be a JSON object (invalid JSON at byte "+strconv.FormatInt(syn.Offset, 10)+")")
	case err != nil || top == nil:
		return nil, openai.BadRequest("invalid_json", "the body must be a JSON object")
	case !utf8.Valid(raw):
		return nil, openai.BadRequest("invalid_json", "the body is not UTF-8 text (byte "+strconv.Itoa(invalidUTF8At(raw))+"); JSON must be sent as UTF-8")
	}
	if err := unknownParams(top, "", createBatchParams); err != nil {
		return nil, err
	}
	if oe := top["output_expires_after"]; len(oe) > 0 && oe[0] == '{' {
		var inner map[string]json.RawMessage
		if json.Unmarshal(oe, &inner) == nil {
			if err := unknownParams(inner, "output_expires_after.", expiresAfterParams); err != nil {
				return nil, err
			}
		}
	}
	var req createBatchRequest
	err = json.Unmarshal(raw, &req)
	var te *json.UnmarshalTypeError
	switch {
	case err == nil:
		return &req, nil
	case errors.As(err, &te) && te.Field != "":
		return nil, &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "invalid_type",
			Param: te.Field, Message: "Invalid type for '" + te.Field + "': expected " + jsonTypeOf(te.Field)}
	default:
		return nil, openai.BadRequest("invalid_json", "the body must be a JSON object")
	}
}

// The keys of POST /v1/batches's body and of its output_expires_after.
var (
	createBatchParams  = []string{"input_file_id", "endpoint", "completion_window", "metadata", "output_expires_after"}
	expiresAfterParams = []string{"anchor", "seconds"}
)

// unknownParams refuses the first (in sorted order, so the answer does
// not vary) key of m that is not one of known, exactly (case and all),
// named with prefix as OpenAI names it: 400 unknown_parameter, "Unknown
// parameter: 'x'.", param x.
func unknownParams(m map[string]json.RawMessage, prefix string, known []string) error {
	var unknown []string
	for k := range m {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	return unknownParam(prefix + openai.Echo(unknown[0]))
}

// jsonTypeOf names the JSON type a create-batch field takes.
// Every field is a string but metadata, an object of strings, and
// output_expires_after, an object whose seconds are an integer.
func jsonTypeOf(field string) string {
	switch field {
	case "metadata":
		return "an object of strings"
	case "output_expires_after":
		return "an object"
	case "output_expires_after.seconds":
		return "an integer"
	}
	return "a string"
}

// checkCreateBatch validates the parameters that need no lookup.
func (h *Handler) checkCreateBatch(req *createBatchRequest) error {
	invalid := func(param, msg string) error {
		return &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "invalid_value", Param: param, Message: msg}
	}
	switch {
	case req.InputFileID == nil || *req.InputFileID == "":
		return missingParam("input_file_id")
	case !validID(*req.InputFileID):
		return notFound(objInputFile, *req.InputFileID)
	case req.Endpoint == nil || *req.Endpoint == "":
		return missingParam("endpoint")
	case !slices.Contains(h.endpoints, *req.Endpoint):
		return invalid("endpoint", "Invalid value for 'endpoint': "+strconv.Quote(openai.Echo(*req.Endpoint))+"; supported: "+quoteAll(h.endpoints))
	case req.CompletionWindow == nil || *req.CompletionWindow == "":
		return missingParam("completion_window")
	case *req.CompletionWindow != completionWindow:
		return invalid("completion_window", "Invalid value for 'completion_window': only '24h' is supported")
	case len(req.Metadata) > maxMetadataPairs:
		return invalid("metadata", "metadata has more than "+strconv.Itoa(maxMetadataPairs)+" pairs")
	}
	for k, v := range req.Metadata {
		if v == nil {
			return &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "invalid_type",
				Param: "metadata." + openai.Echo(k), Message: "Invalid type for 'metadata." + openai.Echo(k) + "': expected a string, but got null instead."}
		}
		// OpenAI's limits are in characters, not bytes: 64 CJK characters
		// (192 bytes) are a valid key.
		if utf8.RuneCountInString(k) > maxMetadataKey || utf8.RuneCountInString(*v) > maxMetadataValue {
			return invalid("metadata", "metadata keys are at most "+strconv.Itoa(maxMetadataKey)+
				" characters and values at most "+strconv.Itoa(maxMetadataValue))
		}
	}
	return nil
}

// metadataStrings is m with its values dereferenced (checkCreateBatch
// refused nil ones); nil stays nil, so a batch without metadata shows null.
func metadataStrings(m map[string]*string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = *v
	}
	return out
}

// getBatch is GET /v1/batches/{id}.
func (h *Handler) getBatch(w http.ResponseWriter, r *http.Request, tenant, id string) {
	b, err := h.svc.Batch(r.Context(), tenant, id)
	if err != nil {
		h.fail(w, r, err, objBatch, id)
		return
	}
	writeJSON(w, http.StatusOK, b)
}

// batchList is the cursor page OpenAI's list endpoints return; the SDKs
// page with after=<last_id> while has_more.
type batchList struct {
	Object  string        `json:"object"`
	Data    []*jobs.Batch `json:"data"`
	FirstID *string       `json:"first_id"`
	LastID  *string       `json:"last_id"`
	HasMore bool          `json:"has_more"`
}

// listBatches is GET /v1/batches?after=&limit=, newest first.
func (h *Handler) listBatches(w http.ResponseWriter, r *http.Request, tenant string) {
	q := r.URL.Query()
	after := q.Get("after")
	limit, err := listLimit(q, defaultListLimit, maxListLimit)
	if err != nil {
		h.fail(w, r, err, objBatch, "")
		return
	}
	var bs []*jobs.Batch
	var more bool
	if after == "" || batchCursor(after) {
		bs, more, err = h.svc.ListBatches(r.Context(), tenant, after, limit)
	}
	if err != nil {
		h.fail(w, r, fmt.Errorf("listing batches: %w", err), objBatch, after)
		return
	}
	page := batchList{Object: "list", Data: bs, HasMore: more}
	if page.Data == nil {
		page.Data = []*jobs.Batch{}
	}
	if len(bs) > 0 {
		page.FirstID, page.LastID = &bs[0].ID, &bs[len(bs)-1].ID
	}
	writeJSON(w, http.StatusOK, page)
}

// listLimit reads a list's limit query parameter: def when absent, else
// an integer from 1 to maxLimit, or a 400 naming it.
func listLimit(q url.Values, def, maxLimit int) (int, error) {
	s := q.Get("limit")
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxLimit {
		return 0, &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "invalid_value",
			Param: "limit", Message: "Invalid value for 'limit': must be an integer from 1 to " + strconv.Itoa(maxLimit)}
	}
	return n, nil
}

// listOrder reads GET /v1/files' order query parameter: "" (newest
// first), "asc" or "desc", or a 400 naming it.
func listOrder(q url.Values) (string, error) {
	order := q.Get("order")
	if order != "" && order != "asc" && order != "desc" {
		return "", &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "invalid_value",
			Param: "order", Message: "Invalid value for 'order': must be asc or desc"}
	}
	return order, nil
}

// batchCursor reports whether after can mark a place among batch ids,
// which sort by creation time: a batch id, also of a batch that is gone.
// Anything else names no batch and answers an empty page, as a cursor
// naming no file does (filesAfter): not a 404, which no list operation in
// OpenAI's spec answers.
func batchCursor(after string) bool {
	hexTime, ok := strings.CutPrefix(after, "batch_")
	if !ok || len(hexTime) < 12 || !validID(after) {
		return false
	}
	for _, c := range hexTime[:12] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// cancelBatch is POST /v1/batches/{id}/cancel: the batch goes to
// cancelling; a batch already finished is a 409, as OpenAI answers.
func (h *Handler) cancelBatch(w http.ResponseWriter, r *http.Request, tenant, id string) {
	b, err := h.svc.CancelBatch(r.Context(), tenant, id)
	if errors.Is(err, jobs.ErrConflict) {
		if b == nil {
			b, _ = h.svc.Batch(r.Context(), tenant, id)
		}
		if b != nil {
			err = &stateError{msg: "Cannot cancel a batch with status '" + b.Status + "'.", err: err}
		}
	}
	if err != nil {
		h.fail(w, r, err, objBatch, id)
		return
	}
	writeJSON(w, http.StatusOK, b)
}
