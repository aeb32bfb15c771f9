package gateway

import (
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/sluice-gw/sluice/internal/netguard"
	"github.com/sluice-gw/sluice/internal/openai"
)

// A `sluice worker` runs a job as its tenant by sending the job's request
// to the admin listener under WorkerPath (POST /worker/v1/chat/completions
// and so on), authenticated with admin.token, naming the tenant in
// JobTenantHeader (percent-encoded, as url.QueryEscape writes it). The
// request then enters the same chain as a public one, as that tenant. The
// public listener never believes the header: a request carrying it there
// is refused with 400, so no client can pick the tenant it is charged as.
const (
	WorkerPath      = "/worker"
	JobTenantHeader = "X-Sluice-Job-Tenant"
)

// maxTenantLen bounds an asserted tenant name (a rate limit bucket key).
const maxTenantLen = 256

// serveWorkerJob is the admin listener's entry for a worker's job request
// (path under WorkerPath), after AdminHandler checked admin.token: it
// takes the asserted tenant, removes the header and sends the request
// into the chain as a job call, as the in-process executor does.
func (g *Gateway) serveWorkerJob(w http.ResponseWriter, r *http.Request, token string) {
	if token == "" {
		writeError(w, &openai.Error{Status: http.StatusForbidden, Type: openai.TypeInvalidRequest, Code: "admin_token_required",
			Message: "running jobs as their tenant needs admin.worker_token (or admin.token) set on the gateway and sent by the worker (--token)"})
		return
	}
	path := strings.TrimPrefix(r.URL.Path, WorkerPath)
	switch path {
	case "/v1/chat/completions", "/v1/completions", pathEmbeddings, pathResponses:
	default:
		writeError(w, openai.NotFound("unknown_url", "Unknown worker URL: "+openai.Echo(r.Method+" "+r.URL.Path)))
		return
	}
	if r.Method != http.MethodPost {
		// Said here, before the path loses its prefix: the chain's own 405
		// would name /v1/..., a path the worker never asked for.
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, openai.MethodNotAllowed(r, http.MethodPost))
		return
	}
	jc, err := assertedJob(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if !g.workers.enter() {
		writeError(w, errWorkerDraining)
		return
	}
	defer g.workers.exit()
	r2 := r.Clone(r.Context())
	r2.URL.Path, r2.URL.RawPath = path, ""
	r2.Header.Del("Authorization") // the admin token goes no further
	start := g.now()
	gd := g.guard(w, r2, start, netguard.BodyReceived(r2), nil)
	defer gd.body.Restore()
	g.handle(&gd.sendWriter, r2, jc, openai.EndpointNone, start, &gd.vals, netguard.ConnMemo(r2.Context()), nil)
}

// assertedJob reads the job call a worker's request asserts.
func assertedJob(r *http.Request) (*jobCall, *openai.Error) {
	tenant := r.Header.Values(JobTenantHeader)
	r.Header.Del(JobTenantHeader)
	var t string
	var err error
	if len(tenant) == 1 {
		t, err = url.QueryUnescape(tenant[0]) // percent-encoded: tenant names are any UTF-8
	}
	if len(tenant) != 1 || err != nil || t == "" || len(t) > maxTenantLen || !utf8.ValidString(t) {
		e := openai.BadRequest("invalid_worker_assertion", JobTenantHeader+" must be one percent-encoded tenant name of 1 to 256 bytes")
		e.Param = JobTenantHeader
		return nil, e
	}
	id := identity{tenant: t, weight: 1, class: classOf(strings.ToLower(r.Header.Get("X-Sluice-Priority")))}
	return &jobCall{id: id}, nil
}

// jobTenantRefusal is the public listener's answer to a request naming a
// tenant (requestHeaders.jobTenant): 400, naming the header. Only the
// admin listener's worker entry may (serveWorkerJob).
func jobTenantRefusal() *openai.Error {
	return &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "invalid_worker_assertion",
		Param: JobTenantHeader, Message: JobTenantHeader + " is reserved for Sluice workers, on the gateway's admin listener"}
}
