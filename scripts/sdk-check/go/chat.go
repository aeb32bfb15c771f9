package main

import (
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// chatChecks: chat (plain and streamed with usage, accumulated by the
// SDK's ChatCompletionAccumulator), completions, embeddings, the models
// list, and X-Request-Id as the SDK's raw response shows it.
func (r *runner) chatChecks(c openai.Client) {
	chat := func() openai.ChatCompletionNewParams {
		return openai.ChatCompletionNewParams{
			Model:     r.model,
			Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("what is a sluice")},
			MaxTokens: openai.Int(8),
		}
	}
	r.check("chat.completions.new", func() (string, error) {
		cc, err := c.Chat.Completions.New(r.ctx, chat())
		if err != nil {
			return "", err
		}
		if len(cc.Choices) != 1 || cc.Choices[0].Message.Content == "" {
			return "", fmt.Errorf("want one choice with content, got %d choices", len(cc.Choices))
		}
		if string(cc.Object) != "chat.completion" || cc.Usage.CompletionTokens <= 0 {
			return "", fmt.Errorf("object %q, completion_tokens %d", cc.Object, cc.Usage.CompletionTokens)
		}
		return fmt.Sprintf("object %s, finish_reason %s, %d chars, usage %d+%d", cc.Object,
			cc.Choices[0].FinishReason, len(cc.Choices[0].Message.Content), cc.Usage.PromptTokens, cc.Usage.CompletionTokens), nil
	})
	r.check("chat stream + accumulator", func() (string, error) {
		p := chat()
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		s := c.Chat.Completions.NewStreaming(r.ctx, p)
		defer s.Close()
		var acc openai.ChatCompletionAccumulator
		chunks, usageChunks := 0, 0
		for s.Next() {
			ch := s.Current()
			chunks++
			if ch.JSON.Usage.Valid() {
				usageChunks++
			}
			if !acc.AddChunk(ch) {
				return "", fmt.Errorf("the accumulator refused chunk %d", chunks)
			}
		}
		if err := s.Err(); err != nil {
			return "", err
		}
		if len(acc.Choices) != 1 || acc.Choices[0].Message.Content == "" || acc.Choices[0].FinishReason == "" {
			return "", fmt.Errorf("accumulated %d choices, want one with content and a finish_reason", len(acc.Choices))
		}
		if usageChunks != 1 || acc.Usage.CompletionTokens <= 0 {
			return "", fmt.Errorf("%d chunks carried usage (want 1), completion_tokens %d", usageChunks, acc.Usage.CompletionTokens)
		}
		return fmt.Sprintf("%d chunks, accumulated %d chars, finish_reason %s, usage %d+%d", chunks,
			len(acc.Choices[0].Message.Content), acc.Choices[0].FinishReason, acc.Usage.PromptTokens, acc.Usage.CompletionTokens), nil
	})
	r.check("completions.new", func() (string, error) {
		cp, err := c.Completions.New(r.ctx, openai.CompletionNewParams{
			Model:     openai.CompletionNewParamsModel(r.model),
			Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String("a sluice is")},
			MaxTokens: openai.Int(8),
		})
		if err != nil {
			return "", err
		}
		if string(cp.Object) != "text_completion" || len(cp.Choices) != 1 || cp.Choices[0].Text == "" {
			return "", fmt.Errorf("object %q, %d choices", cp.Object, len(cp.Choices))
		}
		return fmt.Sprintf("object %s, %d chars, completion_tokens %d", cp.Object, len(cp.Choices[0].Text), cp.Usage.CompletionTokens), nil
	})
	r.check("embeddings.new", func() (string, error) {
		e, err := c.Embeddings.New(r.ctx, openai.EmbeddingNewParams{
			Model: r.model,
			Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a sluice", "a gate"}},
		})
		if err != nil {
			return "", err
		}
		if string(e.Object) != "list" || len(e.Data) != 2 || len(e.Data[0].Embedding) == 0 || e.Data[1].Index != 1 {
			return "", fmt.Errorf("object %q, %d embeddings", e.Object, len(e.Data))
		}
		return fmt.Sprintf("object %s, %d vectors of %d floats, prompt_tokens %d", e.Object, len(e.Data), len(e.Data[0].Embedding), e.Usage.PromptTokens), nil
	})
	r.check("models.list", func() (string, error) {
		var ids []string
		it := c.Models.ListAutoPaging(r.ctx)
		for it.Next() {
			ids = append(ids, it.Current().ID)
		}
		if err := it.Err(); err != nil {
			return "", err
		}
		if !slices.Contains(ids, r.model) {
			return "", fmt.Errorf("model %q not in %v", r.model, ids)
		}
		return fmt.Sprintf("%v", ids), nil
	})
	r.check("X-Request-Id (WithResponseInto)", func() (string, error) {
		var raw *http.Response
		const mine = "sdk-check-go-1"
		if _, err := c.Chat.Completions.New(r.ctx, chat(), option.WithResponseInto(&raw)); err != nil {
			return "", err
		}
		generated := raw.Header.Get("X-Request-Id")
		if _, err := c.Chat.Completions.New(r.ctx, chat(), option.WithHeader("X-Request-Id", mine), option.WithResponseInto(&raw)); err != nil {
			return "", err
		}
		if generated == "" || raw.Header.Get("X-Request-Id") != mine {
			return "", fmt.Errorf("generated %q, sent %q got back %q", generated, mine, raw.Header.Get("X-Request-Id"))
		}
		return fmt.Sprintf("generated %s; the client's %s echoed", generated, mine), nil
	})
}

// apiError is the SDK's documented way to read an API error.
func apiError(err error) (*openai.Error, error) {
	var e *openai.Error
	if err == nil {
		return nil, errors.New("no error, want an *openai.Error")
	}
	if !errors.As(err, &e) {
		return nil, fmt.Errorf("%T (%v), want an *openai.Error", err, err)
	}
	return e, nil
}
