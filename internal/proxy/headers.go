package proxy

import (
	"net/http"
	"net/textproto"
	"strings"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// isHopHeader: the header (canonical) is connection-scoped (RFC 9110
// 7.6.1) and never forwarded, in either direction; so is every header a
// Connection header names, and every Proxy-* header. A switch, not a map:
// it runs for every header of every request and answer.
func isHopHeader(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// isClientOnly: request headers that are the client's business with the
// gateway, not the backend's: its credentials (the backend gets its own
// key), its cookies, Expect (the gateway already has the whole body, and
// a 100-continue dance with the backend would only add a round trip), the
// length the gateway recomputes, and forwarding headers, which the gateway
// rewrites from what it believes (gateway/clientip.go) rather than pass a
// client's claims on.
func isClientOnly(k string) bool {
	switch k {
	case "Authorization", "Cookie", "Expect", "Content-Length", "Host", "Forwarded", "X-Forwarded-For", "X-Real-Ip":
		return true
	}
	return false
}

// isClientAccount: request headers that carry a client's credential in
// another provider's form (Azure's api-key, Anthropic's x-api-key,
// Google's x-goog-api-key; some SDKs send the gateway's key that way) or
// choose the account a hosted API bills (OpenAI-Organization,
// OpenAI-Project). They are the client's business with its own provider
// account, so they pass only where the client's Authorization does
// (pass_client_auth): to a backend keyed with the gateway's api_key they
// would choose which of the operator's organizations or projects pays,
// and to any other backend they would hand it the client's key.
func isClientAccount(k string) bool {
	switch k {
	case "Api-Key", "X-Api-Key", "X-Goog-Api-Key", "Openai-Organization", "Openai-Project":
		return true
	}
	return false
}

// connectionScoped reports the headers src's Connection header names.
func connectionScoped(src http.Header) map[string]bool {
	var named map[string]bool
	for _, v := range src["Connection"] { // canonical key: no Values (it canonicalises)
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				if named == nil {
					named = map[string]bool{}
				}
				named[textproto.CanonicalMIMEHeaderKey(f)] = true
			}
		}
	}
	return named
}

// dropHop reports whether header k (canonical) must not cross a hop.
func dropHop(k string, named map[string]bool) bool {
	return isHopHeader(k) || named[k] || strings.HasPrefix(k, "Proxy-")
}

// copyHeader copies a response's end-to-end headers, but not the backend's
// x-ratelimit-* when dst has the gateway's own (OwnRateLimits), nor its
// cookies (isBackendCookie), nor what describes the backend's origin
// rather than the answer (isBackendOrigin).
func copyHeader(dst, src http.Header) {
	named := connectionScoped(src)
	own := OwnRateLimits(dst)
	for k, vv := range src {
		if dropHop(k, named) || own && IsRateLimitHeader(k) || isBackendCookie(k) || isBackendOrigin(k) {
			continue
		}
		dst[k] = vv
	}
}

// isBackendCookie reports a backend's Set-Cookie (or the obsolete
// Set-Cookie2), on any answer. Its cookie is the gateway's upstream
// client's: a hosted API's or its CDN's (Cloudflare's __cf_bm is bound to
// the caller that got it: the gateway's egress and, with api_key, the
// account every client shares), and a client's Cookie is never sent
// upstream (isClientOnly), so the cookie could not work for the client
// that got it, only tell it about the gateway's upstream session (nginx
// and Envoy relay both ways; a gateway that drops the one drops the
// other). Coalesced followers and cache hits never got it either.
func isBackendCookie(k string) bool { return k == "Set-Cookie" || k == "Set-Cookie2" }

// isBackendOrigin reports a response header (canonical) that speaks for
// the backend's server or origin, not for the answer, and so is not the
// client's business with the gateway's origin (nginx's proxy_hide_header
// defaults drop Date, Server, X-Pad and X-Accel-*; Envoy overwrites
// Server):
//   - Date: the backend's clock, and backends' clocks differ; the
//     forwarder dates a relayed answer by the gateway's clock at its
//     head's write (writeHead, httpdate.Cache), as the gateway's own
//     answers are (gateway/date.go).
//   - Server, X-Powered-By: the backend's software; the gateway's own
//     answers name none (net/http sends no Server), so neither do relayed ones.
//   - Alt-Svc: the backend's alternative services, which a client would
//     take for the gateway origin's (an HTTP/3 try on a port the gateway
//     does not serve, RFC 7838).
//   - Strict-Transport-Security, Nel, Report-To, Reporting-Endpoints:
//     policy for an origin, which is the gateway operator's to set, not a
//     backend's (a backend's HSTS would pin the gateway's host to HTTPS;
//     its NEL would send the client's network errors to the backend's
//     collector).
//   - X-Accel-*: nginx's internal controls from an upstream (redirects,
//     buffering) meant for the proxy in front of it, never a client.
//   - Via: the intermediaries between the gateway and the backend (a
//     hosted API's CDN or load balancer, a mesh's proxies, by name). The
//     gateway adds none of its own (nginx adds none, Envoy only when
//     configured), so there is no list to extend (RFC 9110 7.6.3); the
//     hops behind it are its private side, which an intermediary "SHOULD
//     NOT forward" the names of unless told to (same section); and a cache
//     hit or a coalesced follower, which keep no backend header, would
//     otherwise lack the Via of the MISS answering the same request.
//
// A switch and one prefix test: it runs for every header of every
// relayed answer.
func isBackendOrigin(k string) bool {
	switch k {
	case "Date", "Server", "X-Powered-By", "Alt-Svc", "Strict-Transport-Security",
		"Nel", "Report-To", "Reporting-Endpoints", "Via":
		return true
	}
	return strings.HasPrefix(k, "X-Accel-")
}

// IsRateLimitHeader reports whether header k (canonical) is an
// x-ratelimit-* figure. A backend's describe its own account (a hosted
// API's key: the gateway's, shared by every client) at the moment of the
// call that got them, not the client's limits.
func IsRateLimitHeader(k string) bool { return strings.HasPrefix(k, "X-Ratelimit-") }

// OwnRateLimits reports whether h has the gateway's own x-ratelimit-*
// figures (ratelimit.Result.WriteHeaders: a limit with every trio), the
// client's limits. A backend's then neither replace nor mix with them;
// without them (no limit of the gateway's applies) they pass as they come.
func OwnRateLimits(h http.Header) bool {
	return h["X-Ratelimit-Limit-Requests"] != nil || h["X-Ratelimit-Limit-Tokens"] != nil
}

// identityEncoding is the Accept-Encoding of a request whose answer the
// gateway reads, shared: cap 1, so an Add copies.
var identityEncoding = []string{"identity"}

// jsonType is the Content-Type of an inference request's JSON body
// upstream when the client named none or another (outbound), shared as
// identityEncoding is.
var jsonType = []string{"application/json"}

// upstreamHeader builds the headers of a request to backend spec from the
// client's: end-to-end headers only, no X-Sluice-* control header (they
// steer the gateway, and a backend has no business seeing a client's
// priority claims), and the backend's credentials, never the client's:
// Authorization is the backend's api_key, else the client's own only with
// pass_client_auth, else absent; the client's other credential and account
// headers (isClientAccount) likewise pass only with pass_client_auth.
func upstreamHeader(in *Request, spec endpoint.Spec) http.Header {
	src := in.Header
	named := connectionScoped(src)
	h := make(http.Header, len(src)+3)
	for k, vv := range src {
		if dropHop(k, named) || isClientOnly(k) || strings.HasPrefix(k, "X-Sluice-") || !spec.PassClientAuth && isClientAccount(k) {
			continue
		}
		h[k] = vv
	}
	vals := make([]string, 3) // the values set here share one allocation
	switch {
	case spec.APIKey != "":
		vals[0] = "Bearer " + spec.APIKey
		h["Authorization"] = vals[0:1:1]
		// Its answers are read for the key (scrubKey, scrubAnswer), so
		// they are asked uncompressed, whatever the client accepts, on
		// every path (inference, follow-ups) alike; nginx's
		// proxy_set_header Accept-Encoding "" in front of a filter that
		// reads bodies. A backend that compresses anyway is decoded
		// (gzip, deflate) or refused.
		h["Accept-Encoding"] = identityEncoding
	case spec.PassClientAuth:
		if v := src.Values("Authorization"); len(v) > 0 {
			h["Authorization"] = v
		}
	}
	vals[1] = in.RequestID
	h["X-Request-Id"] = vals[1:2:2]
	if in.ForwardedFor != "" {
		vals[2] = in.ForwardedFor
		h["X-Forwarded-For"] = vals[2:3:3]
	}
	return h
}
