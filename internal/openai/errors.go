// Package openai holds the parts of the OpenAI wire format the gateway
// touches: the request fields it peeks at, the error object, and SSE framing.
package openai

import (
	"strconv"
	"strings"
	"time"
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
	// Cause, when set, is the unexpected internal error behind a generic
	// answer. It is logged in full and never sent: Message stays generic.
	Cause error
}

func (e *Error) Error() string {
	return strconv.Itoa(e.Status) + " " + e.Code + ": " + e.Message
}

// JSON renders the OpenAI error object {"error":{"message","type","param","code"}}.
func (e *Error) JSON() []byte {
	var sb strings.Builder
	sb.Grow(96 + len(e.Message))
	sb.WriteString(`{"error":{"message":`)
	sb.WriteString(strconv.Quote(e.Message))
	sb.WriteString(`,"type":`)
	sb.WriteString(strconv.Quote(e.Type))
	sb.WriteString(`,"param":`)
	if e.Param == "" {
		sb.WriteString("null")
	} else {
		sb.WriteString(strconv.Quote(e.Param))
	}
	sb.WriteString(`,"code":`)
	if e.Code == "" {
		sb.WriteString("null")
	} else {
		sb.WriteString(strconv.Quote(e.Code))
	}
	sb.WriteString("}}")
	return []byte(sb.String())
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
