package batchapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/batchapi"
	"github.com/sluice-gw/sluice/internal/jobs"
	"github.com/sluice-gw/sluice/internal/netguard"
)

// testNow is where the test clock starts: every timestamp in the answers
// is known.
var testNow = time.Unix(1_750_000_000, 0)

// testClock is the clock of the handler and the store; it moves only when
// a test advances it.
type testClock struct{ nanos atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.nanos.Store(testNow.UnixNano())
	return c
}

func (c *testClock) Now() time.Time          { return time.Unix(0, c.nanos.Load()) }
func (c *testClock) Advance(d time.Duration) { c.nanos.Add(int64(d)) }

// env is a real jobs.Store on an embedded NATS server behind the handler,
// served over HTTP the way the gateway mounts it: the bearer token is the
// tenant, and POST /async/... stands for the gateway's async path.
type env struct {
	t      *testing.T
	store  *jobs.Store
	clock  *testClock
	h      *batchapi.Handler
	srv    *httptest.Server
	tenant string
	nats   string // the embedded server's client URL
	spools string // the handler's TempDir
}

type envOptions struct {
	maxFileBytes int64
	// maxActive and maxActivePerTenant bound the active batches (0: the
	// store's defaults).
	maxActive, maxActivePerTenant int
	reg                           prometheus.Registerer // the store's metrics; nil: none
	// maxStoreBytes bounds the store, in the server and the Store (0: none).
	maxStoreBytes int64
	// fileReadIdle is the store's FileReadIdle (0: its default).
	fileReadIdle time.Duration
	// link, when set, is the address the store dials instead of the
	// embedded server's (given its client URL): a link between them.
	link func(t *testing.T, natsURL string) string
	// publishWindow is the store's PublishWindow (0: its default).
	publishWindow int
	// maxSpoolBytes is the handler's MaxSpoolBytes (0: its default);
	// handlerReg gets the handler's metrics (nil: none).
	maxSpoolBytes int64
	handlerReg    prometheus.Registerer
	// bodyMemory is the handler's BodyMemory (nil: unbounded).
	bodyMemory *netguard.Budget
}

func newEnv(t *testing.T, eo envOptions) *env {
	t.Helper()
	emb, err := jobs.StartEmbedded(jobs.EmbeddedOptions{Dir: t.TempDir(), Port: -1, MaxStoreBytes: eo.maxStoreBytes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	clock := newTestClock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang guard
	defer cancel()
	url := emb.ClientURL()
	if eo.link != nil {
		url = eo.link(t, url)
	}
	store, err := jobs.Open(ctx, jobs.Options{
		URL:                       url,
		PublishWindow:             eo.publishWindow,
		Now:                       clock.Now,
		Logger:                    slog.New(slog.DiscardHandler),
		TrackInterval:             20 * time.Millisecond,
		MaxActiveBatches:          eo.maxActive,
		MaxActiveBatchesPerTenant: eo.maxActivePerTenant,
		Registerer:                eo.reg,
		MaxStoreBytes:             eo.maxStoreBytes,
		FileReadIdle:              eo.fileReadIdle,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	spools := t.TempDir()
	h := batchapi.New(batchapi.Options{
		Service:       store,
		Now:           clock.Now,
		MaxFileBytes:  eo.maxFileBytes,
		Models:        func(m string) bool { return m == "m1" || m == "m2" },
		TempDir:       spools,
		MaxSpoolBytes: eo.maxSpoolBytes,
		Registerer:    eo.handlerReg,
		BodyMemory:    eo.bodyMemory,
	})
	e := &env{t: t, store: store, clock: clock, h: h, tenant: "tenant-a", nats: emb.ClientURL(), spools: spools}
	e.srv = httptest.NewServer(http.HandlerFunc(e.gateway))
	t.Cleanup(e.srv.Close)
	return e
}

// gateway is the part of the real gateway this package relies on.
func (e *env) gateway(w http.ResponseWriter, r *http.Request) {
	tenant := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if path, ok := strings.CutPrefix(r.URL.Path, "/async"); ok {
		body, _ := io.ReadAll(r.Body)
		var peek struct {
			Model string `json:"model"`
		}
		json.Unmarshal(body, &peek)
		spec := jobs.Spec{Tenant: tenant, Path: path, Model: peek.Model, Body: body, Class: "interactive",
			IdempotencyKey: r.Header.Get("Idempotency-Key")}
		if raw := r.Header.Get(batchapi.WebhookHeader); raw != "" {
			hook, err := batchapi.ParseWebhook(raw)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			spec.Webhook = hook
		}
		e.h.Accept(w, r, spec)
		return
	}
	if !e.h.Handles(r.URL.Path) {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("X-Request-Id", testRequestID) // as the gateway's serveJobsAPI
	e.h.Serve(w, r, tenant)
}

// testRequestID is the X-Request-Id the test gateway gives every Files,
// Batches and Jobs request.
const testRequestID = "req-test"

// response is an answer read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
}

// apiErr is the OpenAI error object.
type apiErr struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

// wantError checks status and the OpenAI error shape, and returns it.
func (r response) wantError(t *testing.T, status int) apiErr {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	var e apiErr
	r.json(t, &e)
	if e.Error.Message == "" || e.Error.Type == "" {
		t.Fatalf("not an OpenAI error object: %s", r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q", ct)
	}
	return e
}

func (e *env) do(tenant, method, path, contentType string, body io.Reader, hdr ...string) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tenant)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

func (e *env) get(path string) response { return e.do(e.tenant, http.MethodGet, path, "", nil) }

func (e *env) postJSON(path string, v any) response {
	b, _ := json.Marshal(v)
	return e.do(e.tenant, http.MethodPost, path, "application/json", bytes.NewReader(b))
}

// multipartUpload builds the body the SDKs send: python (httpx) puts the
// form fields first, node puts file first; filePart false leaves it out.
func multipartUpload(purpose string, content []byte, fileFirst, filePart bool) (string, *bytes.Buffer) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	file := func() {
		if filePart {
			w, _ := mw.CreateFormFile("file", "batch_input.jsonl")
			w.Write(content)
		}
	}
	if fileFirst {
		file()
	}
	mw.WriteField("purpose", purpose)
	if !fileFirst {
		file()
	}
	mw.Close()
	return mw.FormDataContentType(), &buf
}

func (e *env) upload(content []byte) response {
	ct, body := multipartUpload("batch", content, false, true)
	return e.do(e.tenant, http.MethodPost, "/v1/files", ct, body)
}

// uploadOK uploads content and returns the file object.
func (e *env) uploadOK(content []byte) jobs.File {
	e.t.Helper()
	r := e.upload(content)
	if r.status != http.StatusOK {
		e.t.Fatalf("upload: %d %s", r.status, r.body)
	}
	var f jobs.File
	r.json(e.t, &f)
	return f
}

// createBatchOK creates a batch over content and returns it.
func (e *env) createBatchOK(content []byte, metadata map[string]string) jobs.Batch {
	e.t.Helper()
	f := e.uploadOK(content)
	r := e.postJSON("/v1/batches", map[string]any{"input_file_id": f.ID, "endpoint": "/v1/chat/completions",
		"completion_window": "24h", "metadata": metadata})
	if r.status != http.StatusOK {
		e.t.Fatalf("create batch: %d %s", r.status, r.body)
	}
	var b jobs.Batch
	r.json(e.t, &b)
	return b
}

// eventually polls cond until it holds, failing after 10s: batch state is
// advanced by the store's tracker on its own schedule.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func chatLine(id, model string) string {
	return fmt.Sprintf(`{"custom_id":%q,"method":"POST","url":"/v1/chat/completions","body":{"model":%q,"messages":[{"role":"user","content":"hi"}]}}`, id, model)
}

func chatFile(ids ...string) []byte {
	var sb strings.Builder
	for _, id := range ids {
		sb.WriteString(chatLine(id, "m1") + "\n")
	}
	return []byte(sb.String())
}

// completion is what the test backend answers every request with.
const completion = `{"id":"chatcmpl-1","object":"chat.completion","created":1750000000,"model":"m1",` +
	`"choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],` +
	`"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`

// backendExecutor runs jobs against a real HTTP backend, as the gateway's
// executor does through its proxy.
type backendExecutor struct {
	url    string
	client *http.Client
}

func (x backendExecutor) Execute(ctx context.Context, j *jobs.Job) (jobs.Result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, x.url+j.Path, bytes.NewReader(j.Body))
	if err != nil {
		return jobs.Result{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := x.client.Do(req)
	if err != nil {
		return jobs.Result{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return jobs.Result{}, err
	}
	return jobs.Result{StatusCode: resp.StatusCode, RequestID: resp.Header.Get("X-Request-Id"), Body: b}, nil
}

// openGate never holds a job back.
type openGate struct{}

func (openGate) Wait(ctx context.Context, model string) error { return ctx.Err() }

// startWorker runs a worker executing against a backend that answers
// every request with completion; it stops at the end of the test.
func (e *env) startWorker() {
	e.t.Helper()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Request-Id", "req-1")
		io.WriteString(w, completion)
	}))
	e.t.Cleanup(backend.Close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- e.store.RunWorker(ctx, jobs.WorkerOptions{
			Executor: backendExecutor{url: backend.URL, client: backend.Client()},
			Gate:     openGate{},
		})
	}()
	e.t.Cleanup(func() {
		cancel()
		<-done
	})
}
