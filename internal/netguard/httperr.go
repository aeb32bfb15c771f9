package netguard

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/sluice-gw/sluice/internal/openai"
)

// net/http answers the requests it refuses before any handler runs (a
// malformed head, two differing Content-Lengths, a transfer coding other
// than chunked, an HTTP version it does not speak, a header block over
// MaxHeaderBytes) itself, straight to the connection, in one write, as
// plain text: "HTTP/1.1 400 Bad Request: invalid header name" +
// serverErrorHeaders + the same text. An OpenAI SDK cannot parse that, so
// conn.Write recognises these exact replies and sends the same status as an
// OpenAI error object instead, with a Date and a request id as every
// answer of the gateway has (errorAnswer). The server has no hook for
// them; a handler's answer never matches (it always carries a Date and a
// length or chunking).
const serverErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// serverRefusal is the OpenAI error for one of net/http's own plain-text
// refusals p, or nil when p is not one.
func serverRefusal(p []byte) *openai.Error {
	const proto = "HTTP/1.1 "
	if len(p) > 512 || !bytes.HasPrefix(p, []byte(proto)) {
		return nil
	}
	line, text, ok := bytes.Cut(p[len(proto):], []byte(serverErrorHeaders))
	if !ok || len(line) < 4 || line[3] != ' ' {
		return nil
	}
	// Three digits, 4xx or 5xx: net/http refuses with nothing else, and an
	// Error of any other status has no answer to make (Atoi alone read
	// "+40" as 40 and "-99" as -99).
	status, err := strconv.Atoi(string(line[:3]))
	if err != nil || line[0] < '4' || line[0] > '5' {
		return nil
	}
	// The body repeats the status line ("400 Bad Request: invalid header
	// name"), except for the 501's fixed sentence.
	if !bytes.Equal(text, line) && !(status == http.StatusNotImplemented && string(text) == "Unsupported transfer encoding") {
		return nil
	}
	_, detail, _ := bytes.Cut(line, []byte(": "))
	e := &openai.Error{Status: status, Type: openai.TypeInvalidRequest}
	switch status {
	case http.StatusRequestHeaderFieldsTooLarge:
		e.Code, e.Message = "request_header_too_large", "the request's headers exceed the gateway's size limit (server.max_header_bytes)"
	case http.StatusNotImplemented:
		e.Code, e.Param = "unsupported_transfer_encoding", "Transfer-Encoding"
		e.Message = "the request's Transfer-Encoding is not supported; send the body with Content-Length or Transfer-Encoding: chunked alone"
	case http.StatusHTTPVersionNotSupported:
		e.Code, e.Message = "unsupported_http_version", "the request's HTTP version is not supported; use HTTP/1.1"
	case http.StatusBadRequest:
		e.Code, e.Message = "malformed_request", "the request's head is malformed"
		if len(detail) > 0 {
			// net/http's reasons are fixed phrases ("invalid header name",
			// "missing required Host header"), safe to repeat.
			e.Message += " (" + string(detail) + ")"
		}
		if bytes.Contains(detail, []byte("Host header")) {
			e.Param = "Host"
		}
	default:
		e.Code, e.Message = "malformed_request", "the request was refused: "+http.StatusText(status)
	}
	// Each refuses the request's form, so the same request is refused
	// again: the SDKs, which retry 501 and 505, are told not to.
	e.Final = true
	return e
}

// uriTooLong is the answer, instead of net/http's 431, to a head whose
// request line alone is over the limit, as nginx answers it (RFC 9110
// 15.5.15): the client learns that its URL, not its headers, must shrink.
var uriTooLong = &openai.Error{Status: http.StatusRequestURITooLong, Type: openai.TypeInvalidRequest, Code: "request_uri_too_long",
	Message: "the request target (the URL's path and query) exceeds the gateway's size limit for a request head (server.max_header_bytes)"}

// expectationFailed is the head net/http writes, through the response and
// with no body, for an Expect other than 100-continue; it is followed by
// its Date line and expectationFailedEnd.
var (
	expectationFailed    = []byte("HTTP/1.1 417 Expectation Failed\r\nConnection: close\r\nDate: ")
	expectationFailedEnd = []byte("\r\nContent-Length: 0\r\n\r\n")
	expectationAnswer    = &openai.Error{Status: http.StatusExpectationFailed, Type: openai.TypeInvalidRequest,
		Code: "expectation_failed", Param: "Expect", Message: "the only expectation the gateway meets is Expect: 100-continue"}
)

// expectationRefusal is the OpenAI error for p, net/http's bodiless 417,
// or nil when p is not that answer.
func expectationRefusal(p []byte) *openai.Error {
	if len(p) > 160 || !bytes.HasPrefix(p, expectationFailed) || !bytes.HasSuffix(p, expectationFailedEnd) {
		return nil
	}
	date := p[len(expectationFailed) : len(p)-len(expectationFailedEnd)]
	if bytes.IndexByte(date, '\n') >= 0 {
		return nil
	}
	return expectationAnswer
}

// errorAnswer is a whole HTTP/1.1 answer carrying e, closing the
// connection, with a Date and a new request id (X-Request-Id) as every
// answer of the pipeline has: no request reached the pipeline, but the
// client can still quote the id, and the listener logs it (LogRefusals).
// id is the id's bytes within answer. Made only for a refusal: it
// allocates.
func errorAnswer(e *openai.Error, now time.Time) (answer, id []byte) {
	body := e.JSON()
	b := fmt.Appendf(make([]byte, 0, 256+len(body)), "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nConnection: close\r\n",
		e.Status, http.StatusText(e.Status))
	if openai.RetryFutile(e.Status, e.RetryAfter, e.Final) {
		b = append(b, openai.ShouldRetryHeader+": false\r\n"...)
	}
	b, at := appendIdentity(b, now)
	b = fmt.Appendf(b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	return b, b[at : at+openai.RequestIDLen]
}

// appendIdentity appends an answer's Date (now) and a new X-Request-Id
// header line to b, without allocating when b has room; the id starts at
// b[at].
func appendIdentity(b []byte, now time.Time) (_ []byte, at int) {
	b = append(b, "Date: "...)
	b = now.UTC().AppendFormat(b, http.TimeFormat)
	b = append(b, "\r\nX-Request-Id: "...)
	at = len(b)
	b = openai.AppendRequestID(b)
	return append(b, "\r\n"...), at
}
