package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/openai/openai-go/v3"
)

const batchLines = 5

// batchChecks: upload a JSONL of chat lines, create a batch, poll it to
// completion, download the output file and parse every line, its body as
// the SDK's ChatCompletion; then delete the input file.
func (r *runner) batchChecks(c openai.Client) {
	var input *openai.FileObject
	r.check("files.new (batch JSONL)", func() (string, error) {
		var b strings.Builder
		for i := range batchLines {
			line, err := json.Marshal(map[string]any{
				"custom_id": fmt.Sprintf("r%d", i), "method": "POST", "url": "/v1/chat/completions",
				"body": map[string]any{"model": r.model, "max_tokens": 4,
					"messages": []map[string]string{{"role": "user", "content": fmt.Sprintf("q%d", i)}}},
			})
			if err != nil {
				return "", err
			}
			b.Write(line)
			b.WriteByte('\n')
		}
		f, err := c.Files.New(r.ctx, openai.FileNewParams{
			File:    openai.File(strings.NewReader(b.String()), "in.jsonl", "application/jsonl"),
			Purpose: openai.FilePurposeBatch,
		})
		if err != nil {
			return "", err
		}
		if string(f.Object) != "file" || f.Bytes != int64(b.Len()) || string(f.Purpose) != "batch" || f.Filename != "in.jsonl" {
			return "", fmt.Errorf("object %q bytes %d (sent %d) purpose %q filename %q", f.Object, f.Bytes, b.Len(), f.Purpose, f.Filename)
		}
		got, err := c.Files.Get(r.ctx, f.ID)
		if err != nil {
			return "", fmt.Errorf("files.get: %w", err)
		}
		var ids []string
		it := c.Files.ListAutoPaging(r.ctx, openai.FileListParams{Purpose: openai.String("batch")})
		for it.Next() {
			ids = append(ids, it.Current().ID)
		}
		if err := it.Err(); err != nil {
			return "", fmt.Errorf("files.list: %w", err)
		}
		if got.ID != f.ID || !slices.Contains(ids, f.ID) {
			return "", fmt.Errorf("files.get gave %q, files.list %d files without it", got.ID, len(ids))
		}
		input = f
		return fmt.Sprintf("%s, %d bytes, purpose %s; get and list find it", f.ID, f.Bytes, f.Purpose), nil
	})
	if input == nil {
		return
	}
	var done *openai.Batch
	r.check("batches.new + poll", func() (string, error) {
		b, err := c.Batches.New(r.ctx, openai.BatchNewParams{
			InputFileID:      input.ID,
			Endpoint:         openai.BatchNewParamsEndpointV1ChatCompletions,
			CompletionWindow: openai.BatchNewParamsCompletionWindow24h,
			Metadata:         map[string]string{"k": "v"},
		})
		if err != nil {
			return "", err
		}
		start, polls := time.Now(), 0
		for !terminal(b.Status) {
			select {
			case <-r.ctx.Done():
				return "", fmt.Errorf("still %s after %d polls: %w", b.Status, polls, r.ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
			polls++
			if b, err = c.Batches.Get(r.ctx, b.ID); err != nil {
				return "", fmt.Errorf("batches.get: %w", err)
			}
		}
		if b.Status != openai.BatchStatusCompleted || b.RequestCounts.Completed != batchLines || b.OutputFileID == "" || b.Metadata["k"] != "v" {
			return "", fmt.Errorf("status %s, counts %+v, output file %q, metadata %v", b.Status, b.RequestCounts, b.OutputFileID, b.Metadata)
		}
		// usage: the tokens of the answers, as OpenAI's batch object
		// reports them (every simulator answer has usage).
		if u := b.Usage; !u.JSON.TotalTokens.Valid() || u.InputTokens == 0 || u.OutputTokens == 0 || u.TotalTokens != u.InputTokens+u.OutputTokens {
			return "", fmt.Errorf("usage %s: want input and output tokens summing to total_tokens", u.RawJSON())
		}
		done = b
		return fmt.Sprintf("%s %s after %d polls (%.1f s), %d/%d completed, metadata kept, usage %d+%d", b.ID, b.Status, polls,
			time.Since(start).Seconds(), b.RequestCounts.Completed, b.RequestCounts.Total, b.Usage.InputTokens, b.Usage.OutputTokens), nil
	})
	if done != nil {
		r.check("files.content (output)", func() (string, error) {
			res, err := c.Files.Content(r.ctx, done.OutputFileID)
			if err != nil {
				return "", err
			}
			defer res.Body.Close()
			return parseOutput(res.Body)
		})
	}
	r.check("files.delete", func() (string, error) {
		del, err := c.Files.Delete(r.ctx, input.ID)
		if err != nil {
			return "", err
		}
		_, err = c.Files.Get(r.ctx, input.ID)
		e, aerr := apiError(err)
		if !del.Deleted || aerr != nil || e.StatusCode != 404 {
			return "", fmt.Errorf("deleted %v; get then: %v", del.Deleted, err)
		}
		return fmt.Sprintf("deleted %v; get then: *openai.Error %d", del.Deleted, e.StatusCode), nil
	})
}

func terminal(s openai.BatchStatus) bool {
	switch s {
	case openai.BatchStatusCompleted, openai.BatchStatusFailed, openai.BatchStatusExpired, openai.BatchStatusCancelled:
		return true
	}
	return false
}

// outputLine is one line of a batch output file as OpenAI documents it;
// the SDK has no type for it, so the body is decoded as its ChatCompletion.
type outputLine struct {
	CustomID string `json:"custom_id"`
	Response struct {
		StatusCode int             `json:"status_code"`
		Body       json.RawMessage `json:"body"`
	} `json:"response"`
}

func parseOutput(body io.Reader) (string, error) {
	sc := bufio.NewScanner(body)
	var ids []string
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var l outputLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return "", fmt.Errorf("line %d: %w", len(ids)+1, err)
		}
		var cc openai.ChatCompletion
		if err := json.Unmarshal(l.Response.Body, &cc); err != nil {
			return "", fmt.Errorf("line %d body: %w", len(ids)+1, err)
		}
		if l.Response.StatusCode != 200 || string(cc.Object) != "chat.completion" || len(cc.Choices) != 1 || cc.Choices[0].Message.Content == "" {
			return "", fmt.Errorf("line %s: status %d, object %q, %d choices", l.CustomID, l.Response.StatusCode, cc.Object, len(cc.Choices))
		}
		ids = append(ids, l.CustomID)
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	slices.Sort(ids)
	if len(ids) != batchLines {
		return "", fmt.Errorf("%d lines (%v), want %d", len(ids), ids, batchLines)
	}
	return fmt.Sprintf("%d lines, each status 200 with a ChatCompletion: %s", len(ids), strings.Join(ids, ",")), nil
}
