package gateway

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/openai"
)

// Control headers are untrusted input like the body: a value the gateway
// cannot read is a 400 naming the header, never silently ignored (a client
// that asked for a short wait or the batch class and got neither would not
// know). Unknown Prefer preferences stay ignored, as RFC 7240 asks.

const (
	headerPriority = "X-Sluice-Priority"
	headerMaxWait  = "X-Sluice-Max-Wait"
	headerPrefer   = "Prefer"
	headerProgress = "X-Sluice-Progress"
	// headerRequestID names a request in both directions: kept from the
	// client when sane, else made (requestID), and always answered.
	headerRequestID = "X-Request-Id"
)

// headerGet is h.Get for a key already in canonical form (the constants
// here): net/http stores every received key canonical, and Get would
// re-canonicalise the key on every call, which costs more than the lookup
// itself on a path that reads a dozen headers per request.
func headerGet(h http.Header, canonicalKey string) string {
	return first(h[canonicalKey])
}

// credential is the request's Authorization value: its only one, "" for
// none, and twoCredentials for more than one. RFC 9110 gives Authorization
// one value; with two, a gateway reading the first and a proxy before it
// (or a backend after it) reading the other would disagree on who calls,
// so the request is refused once a credential is checked (identifyFrom,
// the admin listener).
func credential(v []string) string {
	if len(v) > 1 {
		return twoCredentials
	}
	return first(v)
}

// twoCredentials stands for a request with more than one Authorization
// header: no bearer (bearer returns "" for it), so it never matches a key
// or a token.
const twoCredentials = "\x00two Authorization headers"

// first is the first of a header's values, or "".
func first(v []string) string {
	if len(v) > 0 {
		return v[0]
	}
	return ""
}

// maxWaitLimit bounds X-Sluice-Max-Wait: a longer wait than the configured
// objective is clamped to it anyway, but a value must still be sane.
const maxWaitLimit = 24 * time.Hour

func headerError(header, msg string) *openai.Error {
	e := openai.BadRequest("invalid_header", msg)
	e.Param = header
	return e
}

// parsePriority reads X-Sluice-Priority: interactive or batch (any case);
// ok is false when the header is absent.
func parsePriority(h string) (class admission.Class, ok bool, err *openai.Error) {
	if h == "" {
		return admission.Interactive, false, nil
	}
	switch {
	case strings.EqualFold(strings.TrimSpace(h), "interactive"):
		return admission.Interactive, true, nil
	case strings.EqualFold(strings.TrimSpace(h), "batch"):
		return admission.Batch, true, nil
	}
	return admission.Interactive, false, headerError(headerPriority, headerPriority+` must be "interactive" or "batch"`)
}

// parseMaxWait reads X-Sluice-Max-Wait: whole milliseconds ("1500") or a
// Go duration ("1.5s"), positive and at most a day; 0 when absent.
func parseMaxWait(h string) (time.Duration, *openai.Error) {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0, nil
	}
	bad := headerError(headerMaxWait, headerMaxWait+` must be a positive duration of at most 24h, in milliseconds ("1500") or with a unit ("1.5s")`)
	var d time.Duration
	if ms, err := strconv.ParseInt(h, 10, 64); err == nil {
		if ms <= 0 || ms > maxWaitLimit.Milliseconds() {
			return 0, bad
		}
		d = time.Duration(ms) * time.Millisecond
	} else if pd, err := time.ParseDuration(h); err == nil {
		d = pd
	} else {
		return 0, bad
	}
	if d <= 0 || d > maxWaitLimit {
		return 0, bad
	}
	return d, nil
}

// parsePrefer reports an RFC 7240 "Prefer: respond-async" among the
// header's values. Preferences are split on commas outside quoted strings;
// unknown preferences are ignored. respond-async takes no value, so
// "respond-async=yes", or a respond-async followed by junk, is a 400.
func parsePrefer(values []string) (async bool, err *openai.Error) {
	const name = "respond-async"
	bad := func() *openai.Error {
		return headerError(headerPrefer, `Prefer: malformed respond-async preference; send "Prefer: respond-async"`)
	}
	for _, v := range values {
		for _, pref := range splitQuoted(v, ',') {
			token := pref
			if i := strings.IndexAny(token, ";="); i >= 0 {
				token = token[:i]
			}
			token = strings.TrimSpace(token)
			switch {
			case strings.EqualFold(token, name):
				rest := strings.TrimSpace(pref[strings.Index(pref, token)+len(token):])
				if strings.HasPrefix(rest, "=") {
					return false, bad()
				}
				async = true
			case len(token) > len(name) && strings.EqualFold(token[:len(name)], name) &&
				(token[len(name)] == ' ' || token[len(name)] == '\t'):
				return false, bad() // "respond-async foo"
			}
		}
	}
	return async, nil
}

// parseProgress reads X-Sluice-Progress: "1" or "true" asks for queue
// progress comments on a streaming request (progress.go), "0" or "false"
// (or no header) does not; any case.
func parseProgress(h string) (bool, *openai.Error) {
	switch v := strings.TrimSpace(h); {
	case v == "" || v == "0" || strings.EqualFold(v, "false"):
		return false, nil
	case v == "1" || strings.EqualFold(v, "true"):
		return true, nil
	}
	return false, headerError(headerProgress, headerProgress+` must be "1" or "0"`)
}

// controlHeaders are a request's validated control headers (priority is
// read with the identity: tenants.identify).
type controlHeaders struct {
	maxWait  time.Duration // 0: none
	async    bool
	progress bool // queue progress comments, for streaming requests only
}

// readControlHeaders validates the control headers up front, before any
// limit is charged: the values of X-Sluice-Max-Wait and X-Sluice-Progress,
// and Prefer's (requestHeaders).
func readControlHeaders(maxWait string, prefer []string, progress string) (controlHeaders, *openai.Error) {
	var c controlHeaders
	if maxWait == "" && len(prefer) == 0 && progress == "" {
		return c, nil // what the parsers read from no headers, without three calls per request
	}
	var err *openai.Error
	if c.maxWait, err = parseMaxWait(maxWait); err != nil {
		return c, err
	}
	if c.async, err = parsePrefer(prefer); err != nil {
		return c, err
	}
	if c.progress, err = parseProgress(progress); err != nil {
		return c, err
	}
	return c, nil
}

// errContentEncoding refuses a request body sent with a content coding.
// The gateway reads the body as sent and forwards it byte for byte: it
// would parse a gzip body as (invalid) JSON, and a plain body labelled
// gzip as plain while a backend that decodes codings read it as gzip.
var errContentEncoding = &openai.Error{Status: http.StatusUnsupportedMediaType, Type: openai.TypeInvalidRequest,
	Code: "unsupported_content_encoding", Param: "Content-Encoding",
	Message: "the request body must not be compressed: send it without Content-Encoding (or with identity)"}

// codedBody reports whether Content-Encoding values v name any coding
// other than identity.
func codedBody(v []string) bool {
	for _, line := range v {
		for _, c := range strings.Split(line, ",") {
			if c = strings.TrimSpace(c); c != "" && !strings.EqualFold(c, "identity") {
				return true
			}
		}
	}
	return false
}
