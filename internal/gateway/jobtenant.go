package gateway

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/sluice-gw/sluice/internal/openai"
)

// Headers with which a `sluice worker` runs a job as its tenant (the
// tenant percent-encoded, as url.QueryEscape writes it). The
// gateway believes JobTenantHeader only beside a WorkerTokenHeader equal
// to queue.worker_token; a request carrying either without the other, or
// with a wrong token, is refused with 400, so no client can pick the
// tenant it is charged as. Both are removed before the request goes on.
const (
	JobTenantHeader   = "X-Sluice-Job-Tenant"
	WorkerTokenHeader = "X-Sluice-Worker-Token"
)

// maxTenantLen bounds an asserted tenant name (a rate limit bucket key).
const maxTenantLen = 256

// workerJob returns the jobCall a worker's request asserts, nil for an
// ordinary request, or the 400 for a forged or malformed assertion.
func (g *Gateway) workerJob(r *http.Request) (*jobCall, *openai.Error) {
	tenant, hasTenant := r.Header[http.CanonicalHeaderKey(JobTenantHeader)]
	token, hasToken := r.Header[http.CanonicalHeaderKey(WorkerTokenHeader)]
	if !hasTenant && !hasToken {
		return nil, nil
	}
	r.Header.Del(JobTenantHeader)
	r.Header.Del(WorkerTokenHeader)
	if !hasTenant || len(tenant) != 1 || len(token) != 1 || !g.workerTokenOK(token[0]) {
		param := JobTenantHeader
		if hasToken {
			param = WorkerTokenHeader
		}
		return nil, &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "invalid_worker_assertion",
			Param: param, Message: JobTenantHeader + " and " + WorkerTokenHeader + " are reserved for Sluice workers holding queue.worker_token"}
	}
	t, err := url.QueryUnescape(tenant[0]) // percent-encoded: tenant names are any UTF-8
	if err != nil || t == "" || len(t) > maxTenantLen || !utf8.ValidString(t) {
		e := openai.BadRequest("invalid_worker_assertion", JobTenantHeader+" must be a percent-encoded tenant name of 1 to 256 bytes")
		e.Param = JobTenantHeader
		return nil, e
	}
	id := identity{tenant: t, weight: 1, class: classOf(strings.ToLower(r.Header.Get("X-Sluice-Priority")))}
	return &jobCall{id: id}, nil
}

// workerTokenOK compares in constant time (hashes first, so the length
// leaks nothing either); no token configured refuses every one.
func (g *Gateway) workerTokenOK(got string) bool {
	if len(g.workerToken) == 0 {
		return false
	}
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256(g.workerToken)
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}
