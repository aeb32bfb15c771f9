package proxy

import (
	"net/url"
	"strings"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// isClientQueryCredential reports a query parameter (its decoded name)
// that carries a client's credential: Google's `key` (the Gemini API's
// ?key=API_KEY) and RFC 6750's `access_token` (2.3, the URI query form of
// a bearer token). Like the header forms (isClientAccount) they are the
// client's business with the gateway or with its own provider account,
// never the operator's backend's, so they pass only with pass_client_auth.
// The gateway reads neither as a credential (OpenAI reads only
// Authorization); a client sending its key there is, to the gateway, a
// request without one.
func isClientQueryCredential(name string) bool {
	return strings.EqualFold(name, "key") || strings.EqualFold(name, "access_token")
}

// upstreamQuery is the query of a request to backend spec: the client's
// as sent (Azure's api-version and the like are the backend's business),
// less its credential parameters (isClientQueryCredential) unless the
// backend takes the client's credentials (pass_client_auth). The
// parameters kept are copied byte for byte, in order, never re-encoded.
func upstreamQuery(raw string, spec endpoint.Spec) string {
	if raw == "" || spec.PassClientAuth || !mayHoldCredential(raw) {
		return raw
	}
	var b strings.Builder
	kept := 0 // pairs written: an empty one kept counts, so "&a" stays "&a"
	for rest, more := raw, true; more; {
		var pair string
		pair, rest, more = strings.Cut(rest, "&")
		name, _, _ := strings.Cut(pair, "=")
		if n, err := url.QueryUnescape(name); err == nil {
			name = n
		}
		if isClientQueryCredential(name) {
			continue
		}
		if kept > 0 {
			b.WriteByte('&')
		}
		kept++
		b.WriteString(pair)
	}
	return b.String()
}

// mayHoldCredential is the cheap test that spares the common query (none,
// or api-version alone) the split: a credential parameter's name, in any
// case or percent-encoding, holds a 'k' or 'K' ("key", "access_token")
// or, fully encoded, a '%'.
func mayHoldCredential(raw string) bool {
	return strings.ContainsAny(raw, "kK%")
}
