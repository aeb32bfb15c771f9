package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"time"
)

// batchKey is the batch submitter's API key. Unknown keys are their own
// tenant, so the batch and the interactive load are different tenants.
const batchKey = "sk-bench-batch"

// api is a minimal OpenAI Files and Batches client, as the SDKs use it.
type api struct {
	base   string
	client *http.Client
}

// batchStatus is the part of a Batch object the benchmark reads.
type batchStatus struct {
	ID            string `json:"id"`
	Status        string `json:"status"`
	RequestCounts struct {
		Total     int `json:"total"`
		Completed int `json:"completed"`
		Failed    int `json:"failed"`
	} `json:"request_counts"`
	OutputFileID string `json:"output_file_id"`
	ErrorFileID  string `json:"error_file_id"`
}

func (s *batchStatus) terminal() bool {
	switch s.Status {
	case "completed", "failed", "expired", "cancelled":
		return true
	}
	return false
}

func (c api) do(ctx context.Context, method, path, ctype string, body io.Reader, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+batchKey)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return nil
}

// upload sends a JSONL batch input (POST /v1/files, purpose "batch") and
// returns the file id.
func (c api) upload(ctx context.Context, jsonl []byte) (string, error) {
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	if err := mw.WriteField("purpose", "batch"); err != nil {
		return "", err
	}
	fw, err := mw.CreateFormFile("file", "batch.jsonl")
	if err != nil {
		return "", err
	}
	if _, err := fw.Write(jsonl); err != nil {
		return "", err
	}
	if err := mw.Close(); err != nil {
		return "", err
	}
	var f struct{ ID string }
	if err := c.do(ctx, http.MethodPost, "/v1/files", mw.FormDataContentType(), &form, &f); err != nil {
		return "", err
	}
	if f.ID == "" {
		return "", fmt.Errorf("POST /v1/files: no file id")
	}
	return f.ID, nil
}

// create starts a batch over an uploaded file (POST /v1/batches).
func (c api) create(ctx context.Context, fileID string) (*batchStatus, error) {
	body, _ := json.Marshal(map[string]string{
		"input_file_id": fileID, "endpoint": "/v1/chat/completions", "completion_window": "24h"})
	var s batchStatus
	if err := c.do(ctx, http.MethodPost, "/v1/batches", "application/json", bytes.NewReader(body), &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// get reads a batch (GET /v1/batches/{id}).
func (c api) get(ctx context.Context, id string) (*batchStatus, error) {
	var s batchStatus
	if err := c.do(ctx, http.MethodGet, "/v1/batches/"+id, "", nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// outputLines counts the lines of a result file (GET /v1/files/{id}/content).
func (c api) outputLines(ctx context.Context, fileID string) (int, error) {
	if fileID == "" {
		return 0, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/files/"+fileID+"/content", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+batchKey)
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /v1/files/%s/content: %d", fileID, resp.StatusCode)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	return bytes.Count(b, []byte("\n")), nil
}

// progressPoint is one reading of the batch's counts, at T seconds after
// the batch was submitted.
type progressPoint struct {
	T      float64 `json:"t_s"`
	Done   int     `json:"done"` // completed + failed
	Status string  `json:"status"`
}

// watch polls the batch every interval until it is terminal or ctx ends,
// and returns the readings. t0 is the submission time.
func (c api) watch(ctx context.Context, id string, t0 time.Time, every time.Duration) ([]progressPoint, *batchStatus, error) {
	var pts []progressPoint
	t := time.NewTicker(every)
	defer t.Stop()
	var last *batchStatus
	for {
		s, err := c.get(ctx, id)
		if err != nil && ctx.Err() != nil {
			return pts, last, ctx.Err()
		}
		if err == nil {
			last = s
			pts = append(pts, progressPoint{T: time.Since(t0).Seconds(),
				Done: s.RequestCounts.Completed + s.RequestCounts.Failed, Status: s.Status})
			if s.terminal() {
				return pts, s, nil
			}
		}
		select {
		case <-ctx.Done():
			return pts, last, ctx.Err()
		case <-t.C:
		}
	}
}
