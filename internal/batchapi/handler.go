// Package batchapi is the HTTP layer of async jobs and of the OpenAI Files
// and Batches APIs, shaped so the official OpenAI SDKs work unmodified. It
// validates input, calls a jobs.Service and maps its errors; the gateway
// authenticates the client and routes here with the tenant.
package batchapi

import (
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/jobs"
	"github.com/sluice-gw/sluice/internal/netguard"
	"github.com/sluice-gw/sluice/internal/openai"
)

// Defaults of Options.
const (
	DefaultMaxFileBytes     = 200 << 20                 // OpenAI's batch input limit
	DefaultMaxBatchRequests = jobs.DefaultMaxBatchLines // OpenAI's per-batch limit; the tracker's bound assumes it
)

// defaultEndpoints are the endpoints OpenAI's Batch API accepts that an
// OpenAI-compatible inference server serves.
var defaultEndpoints = []string{"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"}

// Options configure a Handler. Only Service is required.
type Options struct {
	Service jobs.Service
	// Now is the clock (default time.Now); it stamps uploaded files.
	Now func() time.Time
	// MaxFileBytes caps an upload's file part (default 200 MiB); larger
	// uploads get 413.
	MaxFileBytes int64
	// MaxBatchRequests caps the lines of a batch input (default 50,000).
	MaxBatchRequests int
	// MaxLineBytes caps one line of a batch input (default 8 MiB).
	MaxLineBytes int
	// Endpoints are the allowed batch endpoints (default
	// /v1/chat/completions, /v1/completions, /v1/embeddings).
	Endpoints []string
	// Models reports whether a model is served; a line naming another is
	// invalid. nil accepts every model.
	Models func(name string) bool
	// TempDir is where uploads are spooled before they are stored
	// (default os.TempDir()): a 200 MiB upload is never held in memory.
	TempDir string
	// Logger gets failures that are the gateway's fault (default: discard).
	Logger *slog.Logger
	// Registerer gets the create gate's metrics (createGate); nil: none.
	Registerer prometheus.Registerer
	// BodyMemory is the gateway's request body budget
	// (server.max_body_memory), which an upload's line buffers draw from
	// while it is validated; BodyMetrics counts the uploads it refuses.
	// nil: unbounded, uncounted.
	BodyMemory  *netguard.Budget
	BodyMetrics *netguard.BodyMetrics
	// MaxSpoolBytes bounds the bytes of the uploads being received,
	// spooled in TempDir until each is stored (default
	// DefaultMaxSpoolBytes; at least MaxFileBytes, so one upload always
	// fits): past it an upload gets 503 upload_spool_full.
	MaxSpoolBytes int64
}

// Handler serves the routes listed at Handles. Safe for concurrent use.
type Handler struct {
	svc              jobs.Service
	now              func() time.Time
	maxFileBytes     int64
	maxBatchRequests int
	maxLineBytes     int
	endpoints        []string
	models           func(string) bool
	tempDir          string
	log              *slog.Logger
	bodyMem          *netguard.Budget
	bodyMetrics      *netguard.BodyMetrics
	// creates bounds the input file bytes POST /v1/batches holds at once.
	creates *createGate
	// spools bounds the disk the uploads being received hold.
	spools *spoolBound
	// newSpool makes the spool of an upload (newTempSpool; a fuzz test's
	// is in memory: a file created and removed per input is system calls
	// and a filesystem's journal, most of each input's time).
	newSpool func() (spool, error)
}

// New returns a Handler for opts, with defaults filled in.
func New(opts Options) *Handler {
	h := &Handler{
		svc:              opts.Service,
		now:              opts.Now,
		maxFileBytes:     opts.MaxFileBytes,
		maxBatchRequests: opts.MaxBatchRequests,
		maxLineBytes:     opts.MaxLineBytes,
		endpoints:        slices.Clone(opts.Endpoints),
		models:           opts.Models,
		tempDir:          opts.TempDir,
		log:              opts.Logger,
		bodyMem:          opts.BodyMemory,
		bodyMetrics:      opts.BodyMetrics,
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.maxFileBytes <= 0 {
		h.maxFileBytes = DefaultMaxFileBytes
	}
	if h.maxBatchRequests <= 0 {
		h.maxBatchRequests = DefaultMaxBatchRequests
	}
	if h.maxLineBytes <= 0 {
		h.maxLineBytes = defaultMaxLineBytes
	}
	if len(h.endpoints) == 0 {
		h.endpoints = slices.Clone(defaultEndpoints)
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.newSpool = h.newTempSpool
	h.creates = newCreateGate(h.maxFileBytes, opts.Registerer)
	spoolLimit := opts.MaxSpoolBytes
	if spoolLimit <= 0 {
		spoolLimit = DefaultMaxSpoolBytes
	}
	h.spools = newSpoolBound(max(spoolLimit, h.maxFileBytes), opts.Registerer)
	return h
}

// route is a parsed request path.
type route int

const (
	routeNone route = iota
	routeFiles
	routeFile
	routeFileContent
	routeBatches
	routeBatch
	routeBatchCancel
	routeJob
)

// parseRoute recognises the API's paths; id is the path's object id.
// Paths: /v1/files, /v1/files/{id}, /v1/files/{id}/content, /v1/batches,
// /v1/batches/{id}, /v1/batches/{id}/cancel, /v1/jobs/{id}.
func parseRoute(path string) (rt route, id string) {
	rest, ok := strings.CutPrefix(path, "/v1/")
	if !ok {
		return routeNone, ""
	}
	parts := strings.Split(rest, "/")
	if len(parts) > 3 {
		return routeNone, ""
	}
	for _, p := range parts[1:] {
		if p == "" {
			return routeNone, ""
		}
	}
	switch parts[0] {
	case "files":
		switch {
		case len(parts) == 1:
			return routeFiles, ""
		case len(parts) == 2:
			return routeFile, parts[1]
		case parts[2] == "content":
			return routeFileContent, parts[1]
		}
	case "batches":
		switch {
		case len(parts) == 1:
			return routeBatches, ""
		case len(parts) == 2:
			return routeBatch, parts[1]
		case parts[2] == "cancel":
			return routeBatchCancel, parts[1]
		}
	case "jobs":
		if len(parts) == 2 {
			return routeJob, parts[1]
		}
	}
	return routeNone, ""
}

// Handles reports whether path is one of this handler's routes, for the
// gateway's router.
func (h *Handler) Handles(path string) bool { return IsRoute(path) }

// IsRoute reports whether path is one of the Handler's routes, for a
// gateway that has no Handler yet (its queue is still connecting).
func IsRoute(path string) bool {
	rt, _ := parseRoute(path)
	return rt != routeNone
}

// availability is what a Service may report about its connection (the
// Store does): while it is down every route answers 503 with Retry-After
// without waiting on the queue.
type availability interface{ Available() error }

// Serve answers r for tenant, which the gateway has authenticated. Another
// tenant's objects are answered 404, as if they did not exist.
func (h *Handler) Serve(w http.ResponseWriter, r *http.Request, tenant string) {
	rt, id := parseRoute(r.URL.Path)
	kind := objNone
	switch rt {
	case routeFile, routeFileContent:
		kind = objFile
	case routeBatch, routeBatchCancel:
		kind = objBatch
	case routeJob:
		kind = objJob
	}
	if id != "" && !validID(id) {
		// Never let a malformed id reach the store (it becomes part of a
		// NATS key); it names nothing, so 404 like an unknown one.
		openai.WriteError(w, notFound(kind, id))
		return
	}
	if a, ok := h.svc.(availability); ok && rt != routeNone {
		if err := a.Available(); err != nil {
			h.fail(w, r, err, kind, id) // 503 at once, before an upload is read
			return
		}
	}
	m := r.Method
	if m == http.MethodHead {
		m = http.MethodGet // net/http drops the body
	}
	switch rt {
	case routeFiles:
		if allow(w, r, m, http.MethodGet, http.MethodPost) {
			if m == http.MethodGet {
				h.listFiles(w, r, tenant)
			} else {
				h.uploadFile(w, r, tenant)
			}
		}
	case routeFile:
		if allow(w, r, m, http.MethodGet, http.MethodDelete) {
			if m == http.MethodGet {
				h.getFile(w, r, tenant, id)
			} else {
				h.deleteFile(w, r, tenant, id)
			}
		}
	case routeFileContent:
		if allow(w, r, m, http.MethodGet) {
			h.fileContent(w, r, tenant, id)
		}
	case routeBatches:
		if allow(w, r, m, http.MethodGet, http.MethodPost) {
			if m == http.MethodGet {
				h.listBatches(w, r, tenant)
			} else {
				h.createBatch(w, r, tenant)
			}
		}
	case routeBatch:
		if allow(w, r, m, http.MethodGet) {
			h.getBatch(w, r, tenant, id)
		}
	case routeBatchCancel:
		if allow(w, r, m, http.MethodPost) {
			h.cancelBatch(w, r, tenant, id)
		}
	case routeJob:
		if allow(w, r, m, http.MethodGet, http.MethodDelete) {
			if m == http.MethodGet {
				h.getJob(w, r, tenant, id)
			} else {
				h.cancelJob(w, r, tenant, id)
			}
		}
	default:
		openai.WriteError(w, notFound(objNone, ""))
	}
}

// allow reports whether method (r's, HEAD read as GET) is one of allowed;
// otherwise it answers 405 with the Allow header.
func allow(w http.ResponseWriter, r *http.Request, method string, allowed ...string) bool {
	if slices.Contains(allowed, method) {
		return true
	}
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	openai.WriteError(w, openai.MethodNotAllowed(r, allowed...))
	return false
}

// validID accepts the ids the store hands out: letters, digits, "-" and
// "_", at most 128 bytes.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
