package gateway

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestFollowUpStreamQueryReadAsBackendsMay: a follow-up whose query may
// ask a stream of the backend in any way a backend's parser reads it is
// asked uncompressed. "stream" named twice is taken by some backends at
// its first value, by others (Starlette's, so FastAPI's) at its last; a
// key may come percent-encoded. Before, only the first value of a literal
// "stream" key was read: ?stream=false&stream=true went upstream with the
// client's gzip, and a backend taking the last value sent a compressed
// stream the relay could neither read nor end with its error event. A
// query asking no stream (stream=false alone) keeps the client's
// Accept-Encoding.
func TestFollowUpStreamQueryReadAsBackendsMay(t *testing.T) {
	asked := make(chan string, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/responses/") {
			return // a health check: 200
		}
		asked <- r.Header.Get("Accept-Encoding")
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write([]byte(followUpEvents))
	}))
	t.Cleanup(backend.Close)
	srv, _ := startGateway(t, testConfig(backend.URL))
	for _, tc := range []struct{ query, want string }{
		{"stream=false&stream=true", "identity"},
		{"stream=true&stream=false", "identity"},
		{"str%65am=true", "identity"},
		{"stream=TRUE", "identity"},
		{"stream=false", "gzip"},
		{"include=x", "gzip"},
	} {
		getAcceptingGzip(t, srv.URL+"/v1/responses/resp_1?"+tc.query)
		select {
		case got := <-asked:
			if got != tc.want {
				t.Errorf("?%s went upstream with Accept-Encoding %q; want %q", tc.query, got, tc.want)
			}
		case <-time.After(time.Minute):
			t.Fatalf("?%s never reached the backend", tc.query)
		}
	}
}
