package proxy

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/sluice-gw/sluice/internal/openai"
)

// maxForeignSnippet bounds what of a wrapped error body the log keeps.
const maxForeignSnippet = 512

// wrapForeignError makes resp, a backend's error answer (4xx/5xx) about
// to be relayed, one the official SDKs can read: a body that is JSON (an
// OpenAI error object, FastAPI's {"detail": ...}, any JSON the backend
// chose) passes unchanged, its length exact; any other (an HTML 502 page
// from a proxy in front of the backend, a plain-text 500, an empty body,
// a compressed body not labelled JSON) is replaced by an OpenAI error
// object with the same status and the request id, as LiteLLM maps an
// upstream failure (the SDKs would otherwise show the raw HTML as the
// error's message). The replaced body's start goes to the log
// (Result.ForeignError), never to the client: it may name the backend's
// hosts, software and stack. A keyed backend's body was scrubbed of its
// key before (scrubKey), so the log never holds it either.
//
// A body is judged by its bytes, not its Content-Type (the SDKs parse an
// error body as JSON whatever it is labelled): up to maxScrubbed of it is
// held and checked whole; a longer one passes when its Content-Type says
// JSON and it opens an object, and is wrapped otherwise. A held body
// that is an event stream whose first event is an OpenAI error object
// (vLLM's and SGLang's refusal of a streamed request) passes as that
// object, labelled JSON (sseError). It returns the log's note of a
// wrapped body, "" when it passed.
func wrapForeignError(resp *http.Response, reqID string) string {
	note, _ := wrapForeign(resp, reqID)
	return note
}

// ForeignErrorWriter is a ResponseWriter that relays one answer to
// several clients (a coalescing flight), as a StreamErrorWriter is: a
// wrapped error body names the request id of the client reading it, which
// such a writer knows and the upstream call does not (it carries the
// first client's), so it is given the body as a function of the id, and
// the log's note, before the head: each client gets, and logs, its own.
type ForeignErrorWriter interface {
	KeepForeignError(note string, body func(reqID string) []byte)
}

// wrapErrorFor is wrapForeignError for an answer relayed to w, which
// keeps the wrapped body as a function of the request id when it is a
// ForeignErrorWriter.
func wrapErrorFor(w http.ResponseWriter, resp *http.Response, reqID string) string {
	note, body := wrapForeign(resp, reqID)
	if fw, ok := w.(ForeignErrorWriter); ok && note != "" {
		fw.KeepForeignError(note, body)
	}
	return note
}

// wrapForeign is wrapForeignError, also returning the wrapped body as a
// function of the request id (nil when the body passed).
func wrapForeign(resp *http.Response, reqID string) (string, func(reqID string) []byte) {
	ct := headerGet(resp.Header, "Content-Type")
	var held []byte
	if !encoded(resp) {
		var err error
		held, err = io.ReadAll(io.LimitReader(resp.Body, maxScrubbed+1))
		if err == nil && len(held) <= maxScrubbed && len(bytes.TrimSpace(held)) > 0 && json.Valid(held) {
			resp.Body = heldBody{Reader: bytes.NewReader(held), Closer: resp.Body}
			return "", nil
		}
		if err == nil && len(held) <= maxScrubbed {
			if e := sseError(held); e != nil {
				// An OpenAI error object sent as an event (sseerror.go):
				// relayed as the JSON body it would have been unstreamed.
				resp.Header["Content-Type"] = jsonType
				resp.Header["Content-Length"] = []string{strconv.Itoa(len(e))}
				resp.ContentLength = int64(len(e))
				resp.Body = heldBody{Reader: bytes.NewReader(e), Closer: resp.Body}
				return "", nil
			}
		}
		if err == nil && len(held) > maxScrubbed && jsonContentType(ct) && openai.ObjectPrefix(held) {
			resp.Body = heldBody{Reader: io.MultiReader(bytes.NewReader(held), resp.Body), Closer: resp.Body}
			return "", nil
		}
		// A read error is wrapped too: what was read is no answer.
	} else if jsonContentType(ct) {
		return "", nil // compressed (the client accepts it), labelled JSON: not read here
	}
	status, what := resp.StatusCode, describeBody(ct, held, encoded(resp))
	bodyFor := func(reqID string) []byte {
		e := openai.ServerError(status, "upstream_error", "the backend answered "+strconv.Itoa(status)+
			" with "+what+", not an OpenAI error object; its text is in the gateway's log under request id "+reqID)
		switch {
		case status == http.StatusUnauthorized:
			e.Type = openai.TypeAuthentication
		case status == http.StatusTooManyRequests:
			e.Type = openai.TypeRateLimit
		case status < 500:
			e.Type = openai.TypeInvalidRequest
		}
		return e.JSON()
	}
	body := bodyFor(reqID)
	note := foreignNote(ct, held, encoded(resp))
	resp.Header.Del("Content-Encoding")
	resp.Header["Content-Type"] = jsonType
	resp.Header["Content-Length"] = []string{strconv.Itoa(len(body))}
	resp.ContentLength = int64(len(body))
	resp.Body = heldBody{Reader: bytes.NewReader(body), Closer: resp.Body}
	return note, bodyFor
}

// describeBody names what a wrapped error body was, for the client:
// its type, never its text.
func describeBody(ct string, held []byte, enc bool) string {
	switch {
	case enc:
		return "a compressed body"
	case len(bytes.TrimSpace(held)) == 0:
		return "an empty body"
	case ct == "":
		return "a body that is not JSON"
	}
	mt, _, _ := strings.Cut(ct, ";")
	return "a " + strings.TrimSpace(openai.Echo(mt)) + " body"
}

// foreignNote is the log's note of a wrapped body: its Content-Type and
// its first maxForeignSnippet bytes.
func foreignNote(ct string, held []byte, enc bool) string {
	if enc {
		return "Content-Type " + strconv.Quote(ct) + ", compressed"
	}
	s := held[:min(len(held), maxForeignSnippet)]
	return "Content-Type " + strconv.Quote(ct) + ": " + strings.ToValidUTF8(string(s), "\uFFFD")
}
