package main

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"
	"github.com/openai/openai-go/v3/responses"
)

// cutChecks: streams the gateway ends mid-way, from a backend that drops
// every answer half-way (go.sh's third simulator, model cut). A chat
// stream ends with the in-band {"error":{...}} event: the SDK's iterator
// stops and Err() is its *ssestream.StreamError, naming the gateway's
// code and the request id that X-Request-Id carried. A Responses stream
// ends with OpenAI's error event ({"type":"error","code","message"}),
// which this SDK yields as a ResponseErrorEvent and does not raise (as
// against OpenAI): the check switches on it as a user's code must.
func (r *runner) cutChecks(c openai.Client, model string) {
	r.check("chat stream cut mid-way", func() (string, error) {
		var head *http.Response
		s := c.Chat.Completions.NewStreaming(r.ctx, openai.ChatCompletionNewParams{
			Model:     model,
			Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
			MaxTokens: openai.Int(20),
		}, option.WithResponseInto(&head))
		defer s.Close()
		chunks := 0
		for s.Next() {
			chunks++
		}
		var se *ssestream.StreamError
		if !errors.As(s.Err(), &se) {
			return "", fmt.Errorf("after %d chunks Err() = %v, want a *ssestream.StreamError", chunks, s.Err())
		}
		id := ""
		if head != nil {
			id = head.Header.Get("X-Request-Id")
		}
		if chunks == 0 || id == "" || !strings.Contains(se.Message, `"code":"upstream_error"`) || !strings.Contains(se.Message, id) {
			return "", fmt.Errorf("%d chunks, X-Request-Id %q, error %q", chunks, id, se.Message)
		}
		return fmt.Sprintf("%d chunks, then *ssestream.StreamError with code upstream_error naming X-Request-Id %s", chunks, id), nil
	})
	r.check("responses stream cut mid-way", func() (string, error) {
		s := c.Responses.NewStreaming(r.ctx, responses.ResponseNewParams{
			Model:           model,
			Input:           responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")},
			MaxOutputTokens: openai.Int(20),
		})
		defer s.Close()
		events := 0
		var last *responses.ResponseErrorEvent
		for s.Next() {
			events++
			if e, ok := s.Current().AsAny().(responses.ResponseErrorEvent); ok {
				last = &e
			}
		}
		if err := s.Err(); err != nil {
			return "", fmt.Errorf("after %d events Err() = %v, want the error event and no error", events, err)
		}
		if last == nil || last.Code != "upstream_error" || !strings.Contains(last.Message, "mid-stream") || events < 2 {
			return "", fmt.Errorf("%d events, error event %+v", events, last)
		}
		return fmt.Sprintf("%d events, the last a ResponseErrorEvent: code %s, %q", events, last.Code, last.Message), nil
	})
}
