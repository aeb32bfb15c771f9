package batchapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/sluice-gw/sluice/internal/openai"
)

// OpenAI's file expiration policy (FileExpirationAfter on POST /v1/files,
// BatchFileExpirationAfter as a batch's output_expires_after): anchor
// "created_at" (of the file: a batch's output files count from when they
// are written, not from the batch's creation) and seconds from 3600 (1
// hour) to 2592000 (30 days). The store keeps no file past its
// retention (queue.retention, default 7 days): a longer lifetime is
// shortened to it, and the file object's expires_at says when it goes.
const (
	expiresAnchor     = "created_at"
	minExpiresSeconds = 3600
	maxExpiresSeconds = 2592000
	// The multipart names of expires_after's fields, as the SDKs send
	// a nested object in a form (openai-node, openai-python alike).
	anchorField  = "expires_after[anchor]"
	secondsField = "expires_after[seconds]"
)

// expiresAfter is the JSON object (output_expires_after). Pointers tell
// absent from empty.
type expiresAfter struct {
	Anchor  *string `json:"anchor"`
	Seconds *int64  `json:"seconds"`
}

// lifetime validates an expiration policy; param names the object in
// errors ("output_expires_after", "expires_after").
func (e *expiresAfter) lifetime(param string) (time.Duration, error) {
	switch {
	case e.Anchor == nil:
		return 0, missingParam(param + ".anchor")
	case *e.Anchor != expiresAnchor:
		return 0, &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "invalid_value",
			Param:   param + ".anchor",
			Message: "Invalid value for '" + param + ".anchor': " + strconv.Quote(openai.Echo(*e.Anchor)) + "; supported: 'created_at'"}
	case e.Seconds == nil:
		return 0, missingParam(param + ".seconds")
	case *e.Seconds < minExpiresSeconds:
		return 0, &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "integer_below_min_value",
			Param: param + ".seconds", Message: "Invalid '" + param + ".seconds': integer below minimum value. Expected a value >= " +
				strconv.Itoa(minExpiresSeconds) + ", but got " + strconv.FormatInt(*e.Seconds, 10) + " instead."}
	case *e.Seconds > maxExpiresSeconds:
		return 0, &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "integer_above_max_value",
			Param: param + ".seconds", Message: "Invalid '" + param + ".seconds': integer above maximum value. Expected a value <= " +
				strconv.Itoa(maxExpiresSeconds) + ", but got " + strconv.FormatInt(*e.Seconds, 10) + " instead."}
	}
	return time.Duration(*e.Seconds) * time.Second, nil
}

// uploadExpiresAfter is the lifetime the expires_after form fields ask
// for (fields holds at least one of them).
func uploadExpiresAfter(fields map[string]string) (time.Duration, error) {
	var e expiresAfter
	if v, ok := fields[anchorField]; ok {
		e.Anchor = &v
	}
	if v, ok := fields[secondsField]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "invalid_type",
				Param: "expires_after.seconds", Message: "Invalid type for 'expires_after.seconds': expected an integer, but got " +
					strconv.Quote(openai.Echo(v)) + " instead."}
		}
		e.Seconds = &n
	}
	return e.lifetime("expires_after")
}
