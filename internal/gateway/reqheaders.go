package gateway

import "net/http"

// requestHeaders are the request headers the inference chain reads,
// gathered once at its start (read) instead of looked up one
// by one by the stages that use them.
type requestHeaders struct {
	requestID     string // X-Request-Id (requestID)
	authorization string // identify
	priority      string // X-Sluice-Priority (identify)
	maxWait       string // X-Sluice-Max-Wait (readControlHeaders)
	progress      string // X-Sluice-Progress (readControlHeaders)
	cacheControl  string // cacheBypassed
	prefer        []string
	encoding      []string // Content-Encoding (codedBody)
	jobTenant     bool     // X-Sluice-Job-Tenant present (jobTenantRefusal)
	// userAgent is the access line's (record): read in the same pass, as
	// a lookup of its own costs about what the whole pass over a small
	// map does.
	userAgent string
}

// onePassMax is the largest header map read in one pass over its entries;
// a larger one is read by a lookup per header. Each lookup in a map of up
// to 8 entries (Go's one-group map) compares the key with every entry, so
// for a few entries one walk over them is cheaper than eight lookups; a
// larger map is hashed, and eight lookups cost less than walking a dozen
// or more entries (an SDK sends ~16). Chosen by BenchmarkRequestHeaders'
// instruction counts (docs/BENCHMARKS.md §9).
const onePassMax = 8

// read sets rh (zero) from h, whose keys are canonical (net/http's server
// stores them so): each value is headerGet's, Prefer's is h[Prefer], and
// jobTenant is the key's presence.
func (rh *requestHeaders) read(h http.Header) {
	if len(h) > onePassMax {
		rh.lookup(h)
	} else {
		rh.walk(h)
	}
}

func (rh *requestHeaders) lookup(h http.Header) {
	rh.requestID = headerGet(h, headerRequestID)
	rh.authorization = credential(h["Authorization"])
	rh.priority = headerGet(h, headerPriority)
	rh.maxWait = headerGet(h, headerMaxWait)
	rh.progress = headerGet(h, headerProgress)
	rh.cacheControl = headerGet(h, "Cache-Control")
	rh.prefer = h[headerPrefer]
	rh.encoding = h["Content-Encoding"]
	_, rh.jobTenant = h[JobTenantHeader]
	rh.userAgent = headerGet(h, "User-Agent")
}

func (rh *requestHeaders) walk(h http.Header) {
	for k, v := range h {
		switch k {
		case headerRequestID:
			rh.requestID = first(v)
		case "Authorization":
			rh.authorization = credential(v)
		case headerPriority:
			rh.priority = first(v)
		case headerMaxWait:
			rh.maxWait = first(v)
		case headerProgress:
			rh.progress = first(v)
		case "Cache-Control":
			rh.cacheControl = first(v)
		case headerPrefer:
			rh.prefer = v
		case "Content-Encoding":
			rh.encoding = v
		case JobTenantHeader:
			rh.jobTenant = true
		case "User-Agent":
			rh.userAgent = first(v)
		}
	}
}
