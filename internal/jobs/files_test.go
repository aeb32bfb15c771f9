package jobs

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestFiles(t *testing.T) {
	c := newClock() // a file past its expires_at is gone: created_at is the store's now
	s, _ := newStore(t, func(o *Options) { o.MaxFileBytes = 1024; o.Now = c.Now })
	ctx := context.Background()
	content := []byte(`{"custom_id":"a"}` + "\n")
	created := c.Now().Unix()
	f, err := s.PutFile(ctx, File{Filename: "in.jsonl", Purpose: "batch", Tenant: "acme", CreatedAt: created}, bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(f.ID, "file-") || f.Bytes != int64(len(content)) || f.Status != "processed" ||
		f.CreatedAt != created || f.ExpiresAt != created+7*24*3600 || f.Object != "file" {
		t.Fatalf("PutFile = %+v", f)
	}
	got, err := s.File(ctx, "acme", f.ID)
	if err != nil || *got != *f {
		t.Fatalf("File = %+v, %v; want %+v", got, err, f)
	}
	rc, err := s.FileContent(ctx, "acme", f.ID)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(b, content) {
		t.Fatalf("content %q, %v", b, err)
	}
	if _, err := s.File(ctx, "globex", f.ID); !isNotFound(err) {
		t.Fatalf("another tenant's file: %v", err)
	}
	if _, err := s.FileContent(ctx, "globex", f.ID); !isNotFound(err) {
		t.Fatalf("another tenant's content: %v", err)
	}
	if err := s.DeleteFile(ctx, "globex", f.ID); !isNotFound(err) {
		t.Fatalf("deleting another tenant's file: %v", err)
	}
	if err := s.DeleteFile(ctx, "acme", f.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.File(ctx, "acme", f.ID); !isNotFound(err) {
		t.Fatalf("deleted file: %v", err)
	}
	if _, err := s.PutFile(ctx, File{Tenant: "acme"}, bytes.NewReader(make([]byte, 1025))); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized file: %v, want ErrTooLarge", err)
	}
	if _, err := s.PutFile(ctx, File{Tenant: "acme"}, bytes.NewReader(make([]byte, 1024))); err != nil {
		t.Fatalf("file at the limit: %v", err)
	}
}

func TestWebhookIsSigned(t *testing.T) {
	type hit struct {
		header http.Header
		body   []byte
	}
	hits := make(chan hit, 4)
	var fails atomic.Int64
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fails.Add(1) == 1 {
			w.WriteHeader(http.StatusBadGateway) // the first delivery fails: retried
			return
		}
		b, _ := io.ReadAll(r.Body)
		hits <- hit{r.Header.Clone(), b}
	}))
	defer recv.Close()
	secret := []byte("s3cret")
	s, _ := newStore(t, func(o *Options) { o.WebhookSecret, o.AllowPrivateWebhooks = secret, true })
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: okExec(&calls)})
	sp := spec("acme")
	sp.Webhook = recv.URL + "/hook"
	j, _, err := s.Submit(context.Background(), sp)
	if err != nil {
		t.Fatal(err)
	}
	var h hit
	select {
	case h = <-hits:
	case <-time.After(20 * time.Second):
		t.Fatal("no webhook")
	}
	if h.header.Get("Content-Type") != "application/json" || h.header.Get("X-Sluice-Job-Id") != j.ID {
		t.Fatalf("headers %v", h.header)
	}
	var ts, mac string
	for _, part := range strings.Split(h.header.Get("X-Sluice-Signature"), ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			mac = v
		}
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts + "."))
	m.Write(h.body)
	want := hex.EncodeToString(m.Sum(nil))
	if _, err := strconv.ParseInt(ts, 10, 64); err != nil || !hmac.Equal([]byte(mac), []byte(want)) {
		t.Fatalf("signature %q does not verify (want v1=%s)", h.header.Get("X-Sluice-Signature"), want)
	}
	var got Job
	if err := json.Unmarshal(h.body, &got); err != nil || got.ID != j.ID || got.Status != StatusSucceeded || got.Result == nil {
		t.Fatalf("webhook body %s", h.body)
	}
	if strings.Contains(string(h.body), "webhook") || strings.Contains(string(h.body), "acme") {
		t.Fatalf("webhook body leaks hidden fields: %s", h.body)
	}
	eventually(t, "the webhook to count", func() bool { return s.Stats().WebhooksSent == 1 })
}

// At most MaxFileListings file listings run at once (each reads every
// file's metadata: 16 at once over 10,000 files held 362 MiB of heap on
// the binary); one more is refused at once, counted, and the next one
// after a slot frees is served.
func TestFileListingsBounded(t *testing.T) {
	s, _ := newStore(t, nil)
	ctx := context.Background()
	if _, err := s.PutFile(ctx, File{Filename: "in.jsonl", Purpose: "batch", Tenant: "acme", CreatedAt: time.Now().Unix()}, strings.NewReader(`{"custom_id":"a"}`+"\n")); err != nil {
		t.Fatal(err)
	}
	for range MaxFileListings { // listings under way, holding every slot
		if !s.listings.enter() {
			t.Fatal("a slot under the bound refused")
		}
	}
	if _, err := s.ListFiles(ctx, "acme", ""); !errors.Is(err, ErrTooManyListings) {
		t.Fatalf("a listing past %d running: %v, want ErrTooManyListings", MaxFileListings, err)
	}
	if got := s.listings.refused.Load(); got != 1 {
		t.Fatalf("refused listings counted %d, want 1", got)
	}
	s.listings.leave()
	if fs, err := s.ListFiles(ctx, "acme", ""); err != nil || len(fs) != 1 {
		t.Fatalf("a listing once a slot freed: %d files, %v", len(fs), err)
	}
	if got := s.listings.running.Load(); got != MaxFileListings-1 {
		t.Fatalf("listings running %d after the served one, want %d", got, MaxFileListings-1)
	}
}
