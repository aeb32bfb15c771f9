package sim

import (
	"encoding/json"
	"io"
	"net/http"
)

// busyBody is the 503 a drowning vLLM-like server sends. It is constant and
// sent under overload, so it is built once. There is deliberately no
// Retry-After header: the gateway must cope with a blind 503.
const busyBody = `{"error":{"message":"server busy, please try again later","type":"server_error","param":null,"code":"server_busy"}}`

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"` // null when the error names no field
	Code    *string `json:"code"`  // null only where OpenAI sends null (the Responses store's 404)
}

// writeError writes an OpenAI error JSON body. All error responses of the
// simulator go through here (or busyBody), so their shape is uniform.
func writeError(w http.ResponseWriter, status int, typ, code, msg string) {
	writeErrorParam(w, status, typ, code, "", msg)
}

// writeErrorParam is writeError naming the field param ("": none).
func writeErrorParam(w http.ResponseWriter, status int, typ, code, param, msg string) {
	d := errorDetail{Message: msg, Type: typ}
	if param != "" {
		d.Param = &param
	}
	if code != "" {
		d.Code = &code
	}
	b, _ := json.Marshal(errorBody{d}) // strings always marshal
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

func writeBusy(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusServiceUnavailable)
	io.WriteString(w, busyBody)
}

func writeModelNotFound(w http.ResponseWriter, model string) {
	writeError(w, http.StatusNotFound, "invalid_request_error", "model_not_found",
		"The model `"+model+"` does not exist.")
}

func writeShuttingDown(w http.ResponseWriter) {
	writeError(w, http.StatusServiceUnavailable, "server_error", "shutting_down", "server is shutting down")
}
