package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"sync"
	"time"
)

// job submits an async request and polls it to a terminal status (for at
// most a minute: the soak is bounded).
func (d *driver) job(ctx context.Context, c *http.Client) {
	hdr := map[string]string{"Prefer": "respond-async"}
	hooked := d.hooks != nil && d.intn(2) == 0
	if hooked {
		hdr["X-Sluice-Webhook"] = d.hooks.url
	}
	resp := d.post(ctx, c, "job-submit", "/v1/chat/completions", chatBody(d.prompt(), 16, false, false), hdr, readAll)
	if resp == nil || resp.StatusCode != http.StatusAccepted {
		return
	}
	loc := resp.Header.Get("Location")
	if hooked {
		d.hooks.accept(loc)
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		var st struct {
			Status string `json:"status"`
		}
		if err := d.getJSON(ctx, c, loc, &st); err != nil {
			d.count("job", "poll-err")
			return
		}
		switch st.Status {
		case "succeeded", "failed", "cancelled":
			d.count("job", st.Status)
			return
		}
		select {
		case <-ctx.Done():
			d.count("job", "abandoned")
			return
		case <-time.After(time.Second):
		}
	}
	d.count("job", "not done in 1m")
}

// rateBurst sends n requests at once from one address: past the per-address
// burst they get 429 with Retry-After.
func (d *driver) rateBurst(ctx context.Context, n int) {
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Go(func() {
			rctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			d.post(rctx, d.burst, "rate-burst", "/v1/chat/completions", chatBody(d.prompt(), 8, false, false), nil, readAll)
		})
	}
	wg.Wait()
}

// queueBurst opens per streams at once from each of the flood addresses
// (each under the per-address burst): more than the pool's slots, so the
// admission queue fills and refuses the excess.
func (d *driver) queueBurst(ctx context.Context, per int) {
	var wg sync.WaitGroup
	for _, c := range d.flood {
		for i := 0; i < per; i++ {
			wg.Go(func() {
				rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
				defer cancel()
				d.post(rctx, c, "queue-burst", "/v1/chat/completions", chatBody(d.prompt(), 128, true, false), nil, readAll)
			})
		}
	}
	wg.Wait()
}

// batch uploads n chat requests as a JSONL file, creates a batch, polls it
// to its end (5 minutes at most) and downloads its output file.
func (d *driver) batch(ctx context.Context, n int) error {
	// Two source addresses, two open-mode tenants ("ip:" + address): the
	// batch events' per-tenant endpoint must get only one's.
	d.mu.Lock()
	from := d.batches % 2
	d.batches++
	d.mu.Unlock()
	c := d.mix[from]
	var jsonl bytes.Buffer
	for i := 0; i < n; i++ {
		fmt.Fprintf(&jsonl, `{"custom_id":"r%d","method":"POST","url":"/v1/chat/completions","body":%s}`+"\n", i, chatBody(d.prompt(), 16, false, false))
	}
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	mw.WriteField("purpose", "batch")
	fw, _ := mw.CreateFormFile("file", "soak.jsonl")
	fw.Write(jsonl.Bytes())
	mw.Close()
	var file struct {
		ID string `json:"id"`
	}
	if err := d.send(ctx, c, "/v1/files", mw.FormDataContentType(), &form, &file); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	var b struct {
		ID           string `json:"id"`
		Status       string `json:"status"`
		OutputFileID string `json:"output_file_id"`
		Counts       struct {
			Total, Completed, Failed int
		} `json:"request_counts"`
	}
	body := fmt.Sprintf(`{"input_file_id":%q,"endpoint":"/v1/chat/completions","completion_window":"24h"}`, file.ID)
	if err := d.send(ctx, c, "/v1/batches", "application/json", strings.NewReader(body), &b); err != nil {
		return fmt.Errorf("create batch: %w", err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for b.Status != "completed" && b.Status != "failed" && b.Status != "expired" && b.Status != "cancelled" {
		if time.Now().After(deadline) {
			return fmt.Errorf("batch %s still %s after 5m", b.ID, b.Status)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
		if err := d.getJSON(ctx, c, "/v1/batches/"+b.ID, &b); err != nil {
			return err
		}
	}
	d.count("batch", b.Status)
	if d.bhooks != nil {
		d.bhooks.end(b.ID, mixTenant(from))
	}
	if b.OutputFileID != "" {
		if err := d.getJSON(ctx, c, "/v1/files/"+b.OutputFileID+"/content", nil); err != nil {
			return fmt.Errorf("output file: %w", err)
		}
	}
	d.count("batch-requests", fmt.Sprintf("completed %d failed %d of %d", b.Counts.Completed, b.Counts.Failed, b.Counts.Total))
	// The Files side: the list, the input's metadata, then its delete
	// (kept, a week of inputs would be what the store's bytes measure).
	if err := d.getJSON(ctx, c, "/v1/files?purpose=batch&limit=20", nil); err != nil {
		return fmt.Errorf("list files: %w", err)
	}
	if err := d.getJSON(ctx, c, "/v1/files/"+file.ID, nil); err != nil {
		return fmt.Errorf("get file: %w", err)
	}
	if err := d.exchange(ctx, c, http.MethodDelete, "/v1/files/"+file.ID, "", nil, nil); err != nil {
		return fmt.Errorf("delete file: %w", err)
	}
	d.count("file", "deleted")
	return nil
}

// send POSTs body and decodes a 200 answer into v.
func (d *driver) send(ctx context.Context, c *http.Client, path, ctype string, body io.Reader, v any) error {
	return d.exchange(ctx, c, http.MethodPost, path, ctype, body, v)
}

// mixTenant is the open-mode tenant of the mix's client i: its source
// address (newDriver's 127.0.0.(10+i)).
func mixTenant(i int) string { return fmt.Sprintf("ip:127.0.0.%d", 10+i) }
