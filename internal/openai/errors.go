// Package openai holds the parts of the OpenAI wire format the gateway
// touches: the request fields it peeks at, the error object, and SSE framing.
package openai

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// Error types used in the "type" field, as OpenAI and compatible servers use them.
const (
	TypeInvalidRequest = "invalid_request_error"
	TypeAuthentication = "authentication_error"
	TypeRateLimit      = "rate_limit_error"
	TypeServer         = "server_error"
)

// Error is an API error with its HTTP status. Gateway stages return it
// (wrapped with %w as needed) and one place turns it into a response.
type Error struct {
	Status  int
	Message string
	Type    string
	Code    string
	Param   string
	// RetryAfter, when positive, is sent as Retry-After (seconds, rounded up)
	// and retry-after-ms, which the official SDKs honour.
	RetryAfter time.Duration
	// Final says a retry of the same request gets the same answer for
	// longer than the official SDKs keep retrying (a full store, a state
	// that will not change back, a request the listener cannot parse): on
	// a status they retry, WriteError sends x-should-retry: false
	// (RetryFutile). A Retry-After over SDKMaxRetryAfter does the same
	// without it.
	Final bool
	// Cause, when set, is the unexpected internal error behind a generic
	// answer. It is logged in full and never sent: Message stays generic.
	Cause error
}

func (e *Error) Error() string {
	return strconv.Itoa(e.Status) + " " + e.Code + ": " + e.Message
}

// JSON renders the OpenAI error object {"error":{"message","type","param","code"}}.
// Messages echo what the client sent (a model name, a URL), so the strings
// are escaped as JSON strings (appendJSONString), never with strconv.Quote,
// whose \x00, \a and \U escapes are Go syntax a JSON parser refuses.
func (e *Error) JSON() []byte {
	b := make([]byte, 0, 96+len(e.Message))
	b = append(b, `{"error":{"message":`...)
	b = appendJSONString(b, e.Message)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, e.Type)
	b = append(b, `,"param":`...)
	if e.Param == "" {
		b = append(b, "null"...)
	} else {
		b = appendJSONString(b, e.Param)
	}
	b = append(b, `,"code":`...)
	if e.Code == "" {
		b = append(b, "null"...)
	} else {
		b = appendJSONString(b, e.Code)
	}
	return append(b, "}}"...)
}

// appendJSONString appends s as a JSON string the way encoding/json writes
// one: control characters as \u00XX, each invalid UTF-8 byte as U+FFFD
// (a JSON text is UTF-8, RFC 8259 8.1), and U+2028/U+2029 escaped so the
// object is also safe inside JavaScript. Everything else is copied.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, "\ufffd"...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// SSEEvent renders the error as one SSE event, for streams that already
// started and cannot change their status code.
func (e *Error) SSEEvent() []byte {
	j := e.JSON()
	out := make([]byte, 0, len(j)+8)
	out = append(out, "data: "...)
	out = append(out, j...)
	return append(out, "\n\n"...)
}

// Errorf-style constructors for the common cases.

func BadRequest(code, msg string) *Error {
	return &Error{Status: 400, Type: TypeInvalidRequest, Code: code, Message: msg}
}

func NotFound(code, msg string) *Error {
	return &Error{Status: 404, Type: TypeInvalidRequest, Code: code, Message: msg}
}

func ServerError(status int, code, msg string) *Error {
	return &Error{Status: status, Type: TypeServer, Code: code, Message: msg}
}
