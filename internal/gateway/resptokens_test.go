package gateway

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/admission"
)

// respStreamBackend answers POST /v1/responses: a stream (the body asks
// "stream":true) of gen one-token deltas ("tok ") after response.created
// and .in_progress, then, when complete, output_text.done and
// response.completed with its usage; when not, it stops after the deltas
// (the connection closes with no final event). A JSON request gets a
// one-token response. The deltas are flushed every 50.
func respStreamBackend(t *testing.T, gen int, complete bool) *httptest.Server {
	t.Helper()
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		resp := func(status, usage string) string {
			return `{"id":"resp_t","object":"response","status":"` + status + `","model":"m1","output":[],"usage":` + usage + `}`
		}
		if !strings.Contains(string(body), `"stream":true`) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, resp("completed", `{"input_tokens":1,"output_tokens":1,"total_tokens":2}`))
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		seq := 0
		event := func(typ, data string) error {
			_, err := fmt.Fprintf(w, "event: %s\ndata: {\"type\":%q,\"sequence_number\":%d,%s}\n\n", typ, typ, seq, data)
			seq++
			return err
		}
		event("response.created", `"response":`+resp("in_progress", "null"))
		event("response.in_progress", `"response":`+resp("in_progress", "null"))
		for i := range gen {
			if err := event("response.output_text.delta", `"item_id":"msg_t","output_index":0,"content_index":0,"delta":"tok ","logprobs":[]`); err != nil {
				return // the gateway cut the stream
			}
			if i%50 == 0 {
				fl.Flush()
			}
		}
		if !complete {
			return
		}
		text := strings.Repeat("tok ", gen)
		event("response.output_text.done", `"item_id":"msg_t","output_index":0,"content_index":0,"text":"`+text+`","logprobs":[]`)
		event("response.completed", `"response":`+resp("completed", fmt.Sprintf(`{"input_tokens":3,"output_tokens":%d,"total_tokens":%d}`, gen, gen+3)))
	}))
	t.Cleanup(be.Close)
	return be
}

// A Responses stream without max_output_tokens reserves
// admission.default_max_tokens (256) for its output, as a chat stream
// without max_tokens does, but was not counted as it went (its relay
// counted text only for chat): under a limit of 1,200 tokens a minute one
// stream relayed all 2,000 of its tokens, 1.7 times the limit, in a
// frozen minute. Now its deltas are counted and it asks its limits for
// each further step, as chat's stream does, and is cut where they refuse,
// told by a Responses "error" event (rate_limit_exceeded).
func TestResponsesStreamStaysWithinTheTokenLimit(t *testing.T) {
	const limit, gen = 1200, 2000
	be := respStreamBackend(t, gen, true)
	url := strings.Replace(tokenGateway(t, testConfig(be.URL), limit), "/v1/chat/completions", "/v1/responses", 1)
	stream := `{"model":"m1","input":"a long story","stream":true,"store":false}`
	resp := post(t, url, stream, "Authorization", "Bearer k")
	b := readAll(t, resp)
	relayed := strings.Count(b, `"delta":"tok "`)
	prompt := int(admission.EstimateCost(len(stream), 0, 0))
	if resp.StatusCode != 200 || relayed+prompt > limit || !strings.Contains(b, "event: error\ndata: {\"type\":\"error\",\"code\":\"rate_limit_exceeded\"") {
		t.Fatalf("%d: %d tokens relayed (+ %d prompt) on a limit of %d a minute; ends %q", resp.StatusCode, relayed, prompt, limit, b[max(0, len(b)-200):])
	}
}

// A Responses stream that ends without its final event (the backend's
// connection closed after 100 deltas: no usage) kept its whole
// reservation, max_output_tokens 5,000 + the prompt's estimate, though
// 100 tokens were generated and relayed; a chat stream in that state is
// charged the prompt's estimate and the tokens relayed. Now so is it.
func TestResponsesStreamWithoutUsageSettlesToTheTokensRelayed(t *testing.T) {
	const gen, maxOut = 100, 5000
	be := respStreamBackend(t, gen, false)
	url := strings.Replace(tokenGateway(t, testConfig(be.URL), 100000), "/v1/chat/completions", "/v1/responses", 1)
	stream := fmt.Sprintf(`{"model":"m1","input":"a story","stream":true,"store":false,"max_output_tokens":%d}`, maxOut)
	status, before, b := remaining(t, url, stream)
	if relayed := strings.Count(b, `"delta":"tok "`); status != 200 || relayed != gen {
		t.Fatalf("%d, %d of %d deltas relayed: %q", status, relayed, gen, b[max(0, len(b)-200):])
	}
	probe := `{"model":"m1","input":"x","store":false,"max_output_tokens":1}`
	_, after, _ := remaining(t, url, probe)
	streamEst := int(admission.EstimateCost(len(stream), maxOut, 256))
	probeEst := int(admission.EstimateCost(len(probe), 1, 256))
	charged := before + streamEst - after - probeEst
	if want := int(admission.EstimateCost(len(stream), 0, 0)) + gen; charged != want {
		t.Fatalf("charged %d for %d tokens relayed, want %d (the prompt's estimate + the tokens relayed; the reservation was %d)",
			charged, gen, want, streamEst)
	}
}
