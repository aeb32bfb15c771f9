package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// A batch reports the tokens its answers used, as OpenAI's batch object
// does in "usage": chat answers' prompt/completion tokens and Responses
// API answers' input/output tokens summed under OpenAI's names; answers
// without usage (errors) add nothing.
func TestBatchUsageSumsTheAnswers(t *testing.T) {
	s, _ := newStore(t, nil)
	ctx := context.Background()
	b, err := s.CreateBatch(ctx, batchSpec("acme", 10))
	if err != nil {
		t.Fatal(err)
	}
	if b.Model != "m1" {
		t.Fatalf("batch model %q, want m1 (every line's)", b.Model)
	}
	exec := execFunc(func(ctx context.Context, j *Job) (Result, error) {
		var body struct{ N int }
		_ = json.Unmarshal(j.Body, &body)
		switch n := body.N; {
		case n == 9: // a Responses API answer
			return Result{StatusCode: 200, Body: []byte(`{"object":"response","usage":{"input_tokens":7,"output_tokens":3,"total_tokens":10,` +
				`"input_tokens_details":{"cached_tokens":1},"output_tokens_details":{"reasoning_tokens":2}}}`)}, nil
		case n%2 == 1:
			return Result{StatusCode: 400, Body: []byte(`{"error":{"message":"bad"}}`)}, nil
		default:
			return Result{StatusCode: 200, Body: []byte(fmt.Sprintf(`{"object":"chat.completion","usage":{"prompt_tokens":%d,"completion_tokens":5,`+
				`"total_tokens":%d,"prompt_tokens_details":{"cached_tokens":2},"completion_tokens_details":{"reasoning_tokens":1}}}`, 10+n, 15+n))}, nil
		}
	})
	startWorker(t, s, WorkerOptions{Concurrency: 4, Classes: []string{"batch"}, Executor: exec})
	b = waitBatch(t, s, "acme", b.ID, batchCompleted)
	// Chat answers 0, 2, 4, 6, 8: input 50 + 20, output 25, total 95,
	// cached 10, reasoning 5; the Responses answer adds 7, 3, 10, 1, 2.
	want := BatchUsage{InputTokens: 77, OutputTokens: 28, TotalTokens: 105,
		InputTokensDetails: BatchInputDetails{CachedTokens: 11}, OutputTokensDetails: BatchOutputDetails{ReasoningTokens: 7}}
	if b.Usage != want || b.RequestCounts != (BatchCounts{Total: 10, Completed: 6, Failed: 4}) {
		t.Fatalf("completed batch: usage %+v counts %+v, want usage %+v", b.Usage, b.RequestCounts, want)
	}
	js, _ := json.Marshal(b)
	if !strings.Contains(string(js), `"usage":{"input_tokens":77,"input_tokens_details":{"cached_tokens":11},"output_tokens":28,`+
		`"output_tokens_details":{"reasoning_tokens":7},"total_tokens":105}`) {
		t.Fatalf("batch JSON %s: want OpenAI's usage object", js)
	}
}

// A batch whose lines name several models (Sluice allows it; OpenAI does
// not) shows no model rather than one of them.
func TestBatchModelOnlyWhenOne(t *testing.T) {
	s, _ := newStore(t, nil)
	sp := batchSpec("acme", 3)
	sp.Requests[2].Model = "m2"
	b, err := s.CreateBatch(context.Background(), sp)
	if err != nil {
		t.Fatal(err)
	}
	if js, _ := json.Marshal(b); b.Model != "" || strings.Contains(string(js), `"model"`) {
		t.Fatalf("a two-model batch: model %q in %s", b.Model, js)
	}
}

// An answer whose usage no answer can hold (2^63 tokens, a negative count)
// adds nothing to its batch's usage: summed as it came, two lines of 2^63
// wrapped the batch's totals negative.
func TestBatchUsageSkipsAbsurdCounts(t *testing.T) {
	s, _ := newStore(t, nil)
	ctx := context.Background()
	b, err := s.CreateBatch(ctx, batchSpec("acme", 4))
	if err != nil {
		t.Fatal(err)
	}
	exec := execFunc(func(ctx context.Context, j *Job) (Result, error) {
		var body struct{ N int }
		_ = json.Unmarshal(j.Body, &body)
		usage := `{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}`
		switch body.N {
		case 0, 1:
			usage = `{"prompt_tokens":9223372036854775807,"completion_tokens":9223372036854775807,"total_tokens":9223372036854775807}`
		case 2:
			usage = `{"prompt_tokens":-1000,"completion_tokens":5,"total_tokens":-995}`
		}
		return Result{StatusCode: 200, Body: []byte(`{"object":"chat.completion","usage":` + usage + `}`)}, nil
	})
	startWorker(t, s, WorkerOptions{Concurrency: 4, Classes: []string{"batch"}, Executor: exec})
	b = waitBatch(t, s, "acme", b.ID, batchCompleted)
	if want := (BatchUsage{InputTokens: 10, OutputTokens: 5, TotalTokens: 15}); b.Usage != want {
		t.Fatalf("batch usage %+v, want %+v (line 3's alone)", b.Usage, want)
	}
}
