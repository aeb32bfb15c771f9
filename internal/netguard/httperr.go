package netguard

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"

	"github.com/sluice-gw/sluice/internal/openai"
)

// net/http answers the requests it refuses before any handler runs (a
// malformed head, two differing Content-Lengths, a transfer coding other
// than chunked, an HTTP version it does not speak, a header block over
// MaxHeaderBytes) itself, straight to the connection, in one write, as
// plain text: "HTTP/1.1 400 Bad Request: invalid header name" +
// serverErrorHeaders + the same text. An OpenAI SDK cannot parse that, so
// conn.Write recognises these exact replies and sends the same status as an
// OpenAI error object instead. The server has no hook for them; a handler's
// answer never matches (it always carries a Date and a length or chunking).
const serverErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// serverRefusal is the OpenAI error object for one of net/http's own
// plain-text refusals p, or nil when p is not one. tooLarge reports a 431.
func serverRefusal(p []byte) (answer []byte, tooLarge bool) {
	const proto = "HTTP/1.1 "
	if len(p) > 512 || !bytes.HasPrefix(p, []byte(proto)) {
		return nil, false
	}
	line, text, ok := bytes.Cut(p[len(proto):], []byte(serverErrorHeaders))
	if !ok || len(line) < 4 || line[3] != ' ' {
		return nil, false
	}
	status, err := strconv.Atoi(string(line[:3]))
	if err != nil {
		return nil, false
	}
	// The body repeats the status line ("400 Bad Request: invalid header
	// name"), except for the 501's fixed sentence.
	if !bytes.Equal(text, line) && !(status == http.StatusNotImplemented && string(text) == "Unsupported transfer encoding") {
		return nil, false
	}
	_, detail, _ := bytes.Cut(line, []byte(": "))
	e := &openai.Error{Status: status, Type: openai.TypeInvalidRequest}
	switch status {
	case http.StatusRequestHeaderFieldsTooLarge:
		e.Code, e.Message = "request_header_too_large", "the request's headers exceed the gateway's size limit"
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
	return errorAnswer(e, ""), status == http.StatusRequestHeaderFieldsTooLarge
}

// expectationFailed is the head net/http writes, through the response and
// with no body, for an Expect other than 100-continue; it is followed by
// its Date line and expectationFailedEnd.
var (
	expectationFailed    = []byte("HTTP/1.1 417 Expectation Failed\r\nConnection: close\r\nDate: ")
	expectationFailedEnd = []byte("\r\nContent-Length: 0\r\n\r\n")
	expectationAnswer    = &openai.Error{Status: http.StatusExpectationFailed, Type: openai.TypeInvalidRequest,
		Code: "expectation_failed", Param: "Expect", Message: "the only expectation the gateway meets is Expect: 100-continue"}
)

// expectationRefusal is p, net/http's bodiless 417, as an OpenAI error
// object with the same Date, or nil when p is not that answer.
func expectationRefusal(p []byte) []byte {
	if len(p) > 160 || !bytes.HasPrefix(p, expectationFailed) || !bytes.HasSuffix(p, expectationFailedEnd) {
		return nil
	}
	date := p[len(expectationFailed) : len(p)-len(expectationFailedEnd)]
	if bytes.IndexByte(date, '\n') >= 0 {
		return nil
	}
	return errorAnswer(expectationAnswer, "Date: "+string(date)+"\r\n")
}

// errorAnswer is a whole HTTP/1.1 answer carrying e, closing the
// connection; extra is further header lines, each ending in CRLF.
func errorAnswer(e *openai.Error, extra string) []byte {
	body := e.JSON()
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nConnection: close\r\n%sContent-Length: %d\r\n\r\n%s",
		e.Status, http.StatusText(e.Status), extra, len(body), body)
}
