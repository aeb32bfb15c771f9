package gateway

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluice-gw/sluice/internal/jobs"
)

// A job run in process holds its answer in memory to store it whole
// (answerSink): it is bounded as a separate worker's is
// (jobs.DefaultMaxAnswerBytes, 64 KiB here), and past it the run fails
// (the proxy stops reading the backend), for a plain answer and a
// stream alike, with jobs.ErrAnswerTooLarge, which the worker counts. An answer within the bound is the job's result. Before, the sink
// had no bound: 1 MiB answers (and a stream of 1 MiB) were held whole and
// stored as the result.
func TestJobAnswerIsBounded(t *testing.T) {
	const limit = 64 << 10
	var size atomic.Int64 // of the answer's content, set per case
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		content := strings.Repeat("a", 1024)
		n := int(size.Load()) / len(content)
		req, _ := io.ReadAll(r.Body)
		if !strings.Contains(string(req), `"stream":true`) {
			body := fmt.Sprintf(`{"id":"c","object":"chat.completion","model":"m1","choices":[{"index":0,"message":{"role":"assistant","content":"%s"},"finish_reason":"stop"}]}`,
				strings.Repeat(content, n))
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, body)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for range n {
			_, err := fmt.Fprintf(w, "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"%s\"}}]}\n\n", content)
			if err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(backend.Close)
	_, gw := startGatewayWith(t, testConfig(backend.URL), nil)
	gw.jobAnswerMax = limit
	run := func(stream bool) (jobs.Result, error) {
		body := `{"model":"m1","messages":[{"role":"user","content":"hi"}]}`
		if stream {
			body = `{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]}`
		}
		return gw.JobExecutor().Execute(t.Context(), &jobs.Job{ID: "j", Path: "/v1/chat/completions", Model: "m1", Class: "batch", Body: []byte(body)})
	}
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprint("stream=", stream), func(t *testing.T) {
			size.Store(8 << 10)
			if res, err := run(stream); err != nil || res.StatusCode != http.StatusOK || len(res.Body) < 8<<10 {
				t.Fatalf("an 8 KiB answer: %d, %d bytes, %v; want it stored", res.StatusCode, len(res.Body), err)
			}
			size.Store(1 << 20)
			res, err := run(stream)
			var over errJobAnswerTooLarge
			if !errors.As(err, &over) {
				t.Fatalf("a 1 MiB answer: %d, %d bytes, %v; want the run failed at the %d-byte bound", res.StatusCode, len(res.Body), err, limit)
			}
			// What the worker counts (sluice_jobs_answers_too_large_total).
			if !errors.Is(err, jobs.ErrAnswerTooLarge) {
				t.Fatalf("a 1 MiB answer: %v; want jobs.ErrAnswerTooLarge", err)
			}
		})
	}
}
