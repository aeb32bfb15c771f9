package main

import (
	"fmt"
	"net/http"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// cacheReplayChecks: the response cache answers a request in the other
// shape than it stored (a stream read back as JSON, a JSON answer
// replayed as a stream), and what the SDK makes of the replay is what
// it made of the backend's answer: a stream accumulated by its
// ChatCompletionAccumulator equals the plain answer, field by field.
func (r *runner) cacheReplayChecks(c openai.Client) {
	params := func(prompt string) openai.ChatCompletionNewParams {
		return openai.ChatCompletionNewParams{
			Model:       r.model,
			Messages:    []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
			MaxTokens:   openai.Int(8),
			Temperature: openai.Float(0), // deterministic: cached
		}
	}
	plain := func(prompt string) (*openai.ChatCompletion, string, error) {
		var raw *http.Response
		cc, err := c.Chat.Completions.New(r.ctx, params(prompt), option.WithResponseInto(&raw))
		if err != nil {
			return nil, "", err
		}
		return cc, raw.Header.Get("X-Cache"), nil
	}
	streamed := func(prompt string) (*openai.ChatCompletion, string, error) {
		p := params(prompt)
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		var raw *http.Response
		s := c.Chat.Completions.NewStreaming(r.ctx, p, option.WithResponseInto(&raw))
		defer s.Close()
		var acc openai.ChatCompletionAccumulator
		for s.Next() {
			if !acc.AddChunk(s.Current()) {
				return nil, "", fmt.Errorf("the accumulator refused a chunk")
			}
		}
		if err := s.Err(); err != nil {
			return nil, "", err
		}
		xc := ""
		if raw != nil {
			xc = raw.Header.Get("X-Cache")
		}
		return &acc.ChatCompletion, xc, nil
	}
	same := func(a, b *openai.ChatCompletion) error {
		if len(a.Choices) != 1 || len(b.Choices) != 1 {
			return fmt.Errorf("choices %d and %d, want one each", len(a.Choices), len(b.Choices))
		}
		x, y := a.Choices[0], b.Choices[0]
		switch {
		case a.ID != b.ID || a.Created != b.Created || a.Model != b.Model:
			return fmt.Errorf("id/created/model %s/%d/%s vs %s/%d/%s", a.ID, a.Created, a.Model, b.ID, b.Created, b.Model)
		case x.Message.Content != y.Message.Content || x.Message.Role != y.Message.Role:
			return fmt.Errorf("message %s %q vs %s %q", x.Message.Role, x.Message.Content, y.Message.Role, y.Message.Content)
		case x.FinishReason != y.FinishReason:
			return fmt.Errorf("finish_reason %s vs %s", x.FinishReason, y.FinishReason)
		case a.Usage.PromptTokens != b.Usage.PromptTokens || a.Usage.CompletionTokens != b.Usage.CompletionTokens || a.Usage.TotalTokens != b.Usage.TotalTokens:
			return fmt.Errorf("usage %d+%d=%d vs %d+%d=%d", a.Usage.PromptTokens, a.Usage.CompletionTokens, a.Usage.TotalTokens,
				b.Usage.PromptTokens, b.Usage.CompletionTokens, b.Usage.TotalTokens)
		}
		return nil
	}
	r.check("cache: a stream read back as JSON", func() (string, error) {
		const prompt = "a stream the cache keeps"
		s, xs, err := streamed(prompt)
		if err != nil {
			return "", err
		}
		p, xp, err := plain(prompt)
		if err != nil {
			return "", err
		}
		if xp != "HIT" {
			return "", fmt.Errorf("plain request after the stream: X-Cache %q (stream: %q), want HIT", xp, xs)
		}
		if err := same(s, p); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s then %s: equal (%d chars, %s, usage %d+%d)", xs, xp, len(p.Choices[0].Message.Content),
			p.Choices[0].FinishReason, p.Usage.PromptTokens, p.Usage.CompletionTokens), nil
	})
	r.check("cache: a JSON answer replayed as a stream", func() (string, error) {
		const prompt = "an answer the cache keeps"
		p, xp, err := plain(prompt)
		if err != nil {
			return "", err
		}
		s, xs, err := streamed(prompt)
		if err != nil {
			return "", err
		}
		if xs != "HIT" {
			return "", fmt.Errorf("stream after the plain request: X-Cache %q (plain: %q), want HIT", xs, xp)
		}
		if err := same(p, s); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s then %s: accumulated equal (%d chars, %s)", xp, xs, len(s.Choices[0].Message.Content), s.Choices[0].FinishReason), nil
	})
}
