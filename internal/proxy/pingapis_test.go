package proxy_test

import (
	"net/http"
	"testing"

	"github.com/sluice-gw/sluice/internal/openai"
)

// A pinging backend within the first-token bound fails over for legacy
// completions and the Responses API as for chat: holdPings is for the
// chat family (openai.APIChat covers completions), and a Responses
// stream holds everything before its first output anyway. A guard: it
// fails if either is narrowed (a ping then commits the stream).
func TestPingingStreamFailsOverPerAPI(t *testing.T) {
	respDone := "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"item_id\":\"m1\",\"output_index\":0,\"content_index\":0,\"delta\":\"hi\",\"sequence_number\":0}\n\n" +
		"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"r1\",\"status\":\"completed\"},\"sequence_number\":1}\n\n"
	compDone := "data: {\"choices\":[{\"index\":0,\"text\":\"hi\"}]}\n\ndata: [DONE]\n\n"
	for _, c := range []struct {
		name, path, body string
		api              openai.API
	}{
		{"completions", "/v1/completions", compDone, openai.APIChat},
		{"responses", "/v1/responses", respDone, openai.APIResponses},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := request(t, c.api, true)
			req.Path = c.path
			res, code, body, good := pingThenFailover(t, req, c.body)
			if code != http.StatusOK || body != c.body || res.Err != nil || res.Backend != good {
				t.Fatalf("status %d body %q err %v", code, body, res.Err)
			}
		})
	}
}
