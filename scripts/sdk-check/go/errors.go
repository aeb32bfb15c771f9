package main

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// countedClient is a client whose every HTTP request, retries included,
// passes through a counting transport (option.WithHTTPClient).
func (r *runner) countedClient(key string) (openai.Client, *countingTransport) {
	ct := &countingTransport{next: http.DefaultTransport}
	return r.client(key, option.WithHTTPClient(&http.Client{Transport: ct})), ct
}

func (r *runner) chatParams(model string, maxTokens int64) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:     model,
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		MaxTokens: openai.Int(maxTokens),
	}
}

// errorChecks: the gateway's own 400 for bad input, and a 404, as the
// SDK's *openai.Error, sent once (the SDK does not retry a 4xx but 408/409/429).
func (r *runner) errorChecks(key string) {
	r.check("400 bad input", func() (string, error) {
		c, ct := r.countedClient(key)
		_, err := c.Chat.Completions.New(r.ctx, r.chatParams(r.model, -1))
		e, aerr := apiError(err)
		if aerr != nil {
			return "", aerr
		}
		if e.StatusCode != 400 || e.Type != "invalid_request_error" || e.Code != "invalid_value" || e.Param != "max_tokens" || ct.sent.Load() != 1 {
			return "", fmt.Errorf("status %d type %q code %q param %q, sent %d", e.StatusCode, e.Type, e.Code, e.Param, ct.sent.Load())
		}
		return fmt.Sprintf("*openai.Error %d type %s code %s param %s, sent %d, X-Request-Id %s", e.StatusCode, e.Type,
			e.Code, e.Param, ct.sent.Load(), e.Response.Header.Get("X-Request-Id")), nil
	})
	r.check("404 unknown model", func() (string, error) {
		c, ct := r.countedClient(key)
		_, err := c.Chat.Completions.New(r.ctx, r.chatParams("nope", 4))
		e, aerr := apiError(err)
		if aerr != nil {
			return "", aerr
		}
		if e.StatusCode != 404 || e.Code != "model_not_found" || ct.sent.Load() != 1 {
			return "", fmt.Errorf("status %d code %q param %q, sent %d", e.StatusCode, e.Code, e.Param, ct.sent.Load())
		}
		return fmt.Sprintf("*openai.Error %d type %s code %s param %s, sent %d", e.StatusCode, e.Type, e.Code, e.Param, ct.sent.Load()), nil
	})
}

// retryChecks: how many requests the SDK, with its default retries (2),
// sends for a rate-limit refusal. Go SDK rule (internal/requestconfig):
// x-should-retry wins; else a 429 is retried after retry-after-ms, else
// Retry-After, when it is at most 2 minutes (beyond, it stops). The
// gateway says x-should-retry: false past 2 minutes (openai.RetryFutile,
// this SDK's and Python's bound), so a 600 s refusal is sent once and
// raised at once; this SDK would not retry it anyway (the header is for
// Node, which would). Up to 2 minutes the header is not sent: this SDK
// holds the call for the wait and sends it again (docs/RELIABILITY.md,
// the Go SDK check).
func (r *runner) retryChecks(slowKey, fastKey string) {
	r.check("429 Retry-After > 2 min", func() (string, error) {
		c, ct := r.countedClient(slowKey)
		if _, err := c.Chat.Completions.New(r.ctx, r.chatParams(r.model, 4)); err != nil {
			return "", fmt.Errorf("first request: %w", err)
		}
		ct.sent.Store(0)
		t0 := time.Now()
		_, err := c.Chat.Completions.New(r.ctx, r.chatParams(r.model, 4))
		e, aerr := apiError(err)
		if aerr != nil {
			return "", aerr
		}
		ra, _ := strconv.Atoi(e.Response.Header.Get("Retry-After"))
		xsr := e.Response.Header.Get("X-Should-Retry")
		if e.StatusCode != 429 || ra <= 120 || xsr != "false" || ct.sent.Load() != 1 {
			return "", fmt.Errorf("status %d code %q Retry-After %q x-should-retry %q, sent %d", e.StatusCode, e.Code,
				e.Response.Header.Get("Retry-After"), xsr, ct.sent.Load())
		}
		return fmt.Sprintf("*openai.Error %d %s, Retry-After %d, x-should-retry %s: sent %d in %.1f s, X-Request-Id %s",
			e.StatusCode, e.Code, ra, xsr, ct.sent.Load(), time.Since(t0).Seconds(), e.Response.Header.Get("X-Request-Id")), nil
	})
	r.check("429 Retry-After <= 2 min", func() (string, error) {
		c, ct := r.countedClient(fastKey)
		if _, err := c.Chat.Completions.New(r.ctx, r.chatParams(r.model, 4)); err != nil {
			return "", fmt.Errorf("first request: %w", err)
		}
		ct.sent.Store(0)
		t0 := time.Now()
		var raw *http.Response
		cc, err := c.Chat.Completions.New(r.ctx, r.chatParams(r.model, 4), option.WithResponseInto(&raw))
		if err != nil {
			return "", fmt.Errorf("sent %d: %w", ct.sent.Load(), err)
		}
		waited := time.Since(t0)
		// One refusal then the retry, after the wait it named (2 s for 30r/m).
		if ct.sent.Load() != 2 || waited < time.Second || len(cc.Choices) != 1 {
			return "", fmt.Errorf("sent %d in %.1f s, want 2 after about 2 s", ct.sent.Load(), waited.Seconds())
		}
		return fmt.Sprintf("refused, retried as told: sent %d, served after %.1f s (status %d)", ct.sent.Load(), waited.Seconds(), raw.StatusCode), nil
	})
}
