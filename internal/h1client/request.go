package h1client

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Request-side errors: the request cannot be sent as given.
var (
	errHeaderField = errors.New("h1client: invalid header field")
	errBodyLength  = errors.New("h1client: request body length differs from ContentLength")
)

// encoded is a request ready to write: msg is the head and, when it fits
// the write buffer, the whole body (one write); otherwise rest streams
// after it, framed by Content-Length (length >= 0) or chunked (-1).
type encoded struct {
	msg    []byte
	rest   io.Reader
	length int64
}

// whole says the message holds the entire request, so it can be sent
// again on another connection.
func (e encoded) whole() bool { return e.rest == nil }

// encode appends req's head to b and, when it fits within max bytes in
// all, its body.
func encode(b []byte, req *http.Request, max int) (encoded, error) {
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if !validHost(host) || !validToken(method) {
		return encoded{}, fmt.Errorf("%w: method or host", errHeaderField)
	}
	b = append(b, method...)
	b = append(b, ' ')
	b = append(b, requestURI(req.URL)...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\n"...)
	b, err := appendHeader(b, req)
	if err != nil {
		return encoded{}, err
	}
	if req.Close {
		b = append(b, "Connection: close\r\n"...)
	}
	return appendBody(b, req, max)
}

// requestURI is the request target; RequestURI rejects nothing but
// allocates only when it must escape.
func requestURI(u *url.URL) string {
	s := u.RequestURI()
	for i := 0; i < len(s); i++ {
		// An Opaque URL is taken verbatim. A byte loop: ContainsAny
		// builds its set of three bytes afresh on every request.
		if c := s[i]; c == ' ' || c == '\r' || c == '\n' {
			return url.PathEscape(s)
		}
	}
	return s
}

// appendHeader writes req.Header as net/http does: the fields it frames
// itself (Host, Content-Length, Transfer-Encoding, Trailer) are left out,
// User-Agent defaults to Go's, and an invalid name or value fails.
func appendHeader(b []byte, req *http.Request) ([]byte, error) {
	ua := "Go-http-client/1.1"
	if v, ok := req.Header["User-Agent"]; ok {
		ua = ""
		if len(v) > 0 {
			ua = v[0]
		}
	}
	for k, vs := range req.Header {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		if !validToken(k) {
			return nil, fmt.Errorf("%w: name %q", errHeaderField, k)
		}
		for _, v := range vs {
			if !validValue(v) {
				return nil, fmt.Errorf("%w: value of %q", errHeaderField, k)
			}
			b = appendField(b, k, v)
		}
	}
	if ua != "" {
		if !validValue(ua) {
			return nil, fmt.Errorf("%w: value of User-Agent", errHeaderField)
		}
		b = appendField(b, "User-Agent", ua)
	}
	return b, nil
}

func appendField(b []byte, k, v string) []byte {
	b = append(b, k...)
	b = append(b, ": "...)
	b = append(b, strings.TrimSpace(v)...)
	return append(b, "\r\n"...)
}

// appendBody frames the body: Content-Length when known (or when an
// unknown-length body turns out to be empty), chunked otherwise. A known
// body that fits in max bytes with the head is read into the message.
func appendBody(b []byte, req *http.Request, max int) (encoded, error) {
	body := req.Body
	if body == http.NoBody {
		body = nil
	}
	n := req.ContentLength
	if body == nil || n == 0 && isEmpty(&body) {
		if n > 0 {
			return encoded{}, fmt.Errorf("%w: %d declared, none given", errBodyLength, n)
		}
		if bodyExpected(req.Method) {
			b = append(b, "Content-Length: 0\r\n"...)
		}
		return encoded{msg: append(b, "\r\n"...)}, nil
	}
	if n <= 0 { // unknown length
		b = append(b, "Transfer-Encoding: chunked\r\n\r\n"...)
		return encoded{msg: b, rest: body, length: -1}, nil
	}
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, n, 10)
	b = append(b, "\r\n\r\n"...)
	if int64(len(b))+n > int64(max) {
		return encoded{msg: b, rest: body, length: n}, nil
	}
	head := len(b)
	b = append(b, make([]byte, n+1)...)[:head+int(n)]
	if _, err := io.ReadFull(body, b[head:]); err != nil {
		return encoded{}, fmt.Errorf("%w: %w", errBodyLength, err)
	}
	// A byte past n would mean the body is longer than declared; it is
	// read into the message's spare byte (made above), not into a local
	// array, which the interface call would move to the heap.
	if m, _ := body.Read(b[len(b) : len(b)+1]); m > 0 {
		return encoded{}, fmt.Errorf("%w: more than %d bytes", errBodyLength, n)
	}
	return encoded{msg: b}, nil
}

// isEmpty reads one byte of a body of unknown length; if there is one,
// it is put back in front of the rest.
func isEmpty(body *io.ReadCloser) bool {
	var one [1]byte
	m, err := io.ReadFull(*body, one[:])
	if m == 0 && err != nil {
		return true
	}
	*body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(strings.NewReader(string(one[:m])), *body), *body}
	return false
}

// bodyExpected: methods whose empty body net/http frames as
// Content-Length: 0.
func bodyExpected(method string) bool {
	return method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch
}
