package netguard

import (
	"net/http"
	"strconv"

	"github.com/sluice-gw/sluice/internal/openai"
)

// MaxHeaderFields bounds the header field lines a request may carry;
// Guard answers one with more 431 and closes its connection.
//
// server.max_header_bytes bounds a head's bytes, but not what net/http
// builds of them: each field line becomes a map entry, a canonical key
// string and a one-element slice, about 70 bytes for a line as short as
// "X-1: v" (8 bytes). A 64 KiB head of such lines (7,700 fields) held
// 520 KiB of heap per connection measured on the binary, 8.5 times the
// bytes received, for as long as its body took to arrive (60 s between
// reads, server.body_read_timeout): 1,000 connections from one address
// (max_connections_per_ip), 0.5 GiB. At 1,000 fields the map is under
// 70 KiB, so a head holds at most about twice its bytes. Real clients send
// 10 to 30 fields (the OpenAI SDKs about 15, plus what proxies add);
// Node.js's server keeps 2,000 (maxHeadersCount) and Envoy refuses past
// 100 (max_headers_count).
//
// The lines are counted as net/http's header map holds them (Host aside,
// folded lines joined to their field): on a scanning connection by the
// framing scan as the head arrives (framing.NewScanner's maxFields), else
// by tooManyFields.
const MaxHeaderFields = 1000

// tooManyFields reports whether h holds more than MaxHeaderFields field
// lines (a repeated name counts once per line, as net/http appends each).
func tooManyFields(h http.Header) bool {
	if len(h) > MaxHeaderFields {
		return true
	}
	n := 0
	for _, vs := range h {
		if n += len(vs); n > MaxHeaderFields {
			return true
		}
	}
	return false
}

// refuseTooManyFields answers a request with more than MaxHeaderFields
// header fields. The connection ends with it: its head was already read
// whole, and a client sending thousands of fields is not one whose next
// request is worth a kept connection. r's header map is let go of first:
// net/http keeps r until the connection's Close returns, and that close
// lingers up to server.linger.total_timeout for an unread body's rest.
func refuseTooManyFields(w http.ResponseWriter, r *http.Request) {
	r.Header = nil
	w.Header().Set("Connection", "close")
	w.Header().Set("X-Request-Id", openai.NewRequestID()) // as every answer has: the client can quote it
	openai.WriteError(w, &openai.Error{
		Status: http.StatusRequestHeaderFieldsTooLarge, Type: openai.TypeInvalidRequest,
		Code:    "request_header_too_large",
		Message: "the request has more than " + strconv.Itoa(MaxHeaderFields) + " header fields; send fewer",
	})
}
