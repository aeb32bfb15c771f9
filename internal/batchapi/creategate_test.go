package batchapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/batchapi"
	"github.com/sluice-gw/sluice/internal/jobs"
)

// heldService counts the input files being read and holds each read until
// release is closed.
type heldService struct {
	jobs.Service
	release      chan struct{}
	reading, max atomic.Int64
	entered      atomic.Int64
}

func (s *heldService) FileContent(ctx context.Context, tenant, id string) (io.ReadCloser, error) {
	rc, err := s.Service.FileContent(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	n := s.reading.Add(1)
	for m := s.max.Load(); n > m && !s.max.CompareAndSwap(m, n); m = s.max.Load() {
	}
	s.entered.Add(1)
	select {
	case <-s.release:
	case <-ctx.Done():
	}
	return &countedReader{ReadCloser: rc, s: s}, nil
}

type countedReader struct {
	io.ReadCloser
	s    *heldService
	once sync.Once
}

func (r *countedReader) Close() error {
	r.once.Do(func() { r.s.reading.Add(-1) })
	return r.ReadCloser.Close()
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}

// gatedEnv is env with its handler replaced by one over a heldService,
// whose byte bound is one copy of content.
func gatedEnv(t *testing.T, content []byte) (*env, *heldService, *prometheus.Registry, string) {
	e := newEnv(t, envOptions{maxActivePerTenant: 100, maxActive: 200})
	f := e.uploadOK(content)
	held := &heldService{Service: e.store, release: make(chan struct{})}
	reg := prometheus.NewRegistry()
	e.h = batchapi.New(batchapi.Options{Service: held, Now: e.clock.Now, MaxFileBytes: int64(len(content)),
		Models: func(m string) bool { return m == "m1" }, TempDir: t.TempDir(), Registerer: reg})
	return e, held, reg, f.ID
}

func (e *env) createBatchRaw(fileID string) (int, http.Header, []byte) {
	body, _ := json.Marshal(map[string]string{"input_file_id": fileID, "endpoint": "/v1/chat/completions", "completion_window": "24h"})
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/batches", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e.tenant)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Error(err)
		return 0, nil, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// waitFor polls cond until it holds (a hang guard ends the test).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

const gateInput = `{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m1","messages":[]}}
{"custom_id":"b","method":"POST","url":"/v1/chat/completions","body":{"model":"m1","messages":[]}}
`

// N creations naming one input file each read it into memory whole; the
// gate lets them read as many bytes at once as one maximum-size file, so
// here one at a time, the others waiting in order, and all succeed.
func TestConcurrentBatchCreationsReadOneFileAtATime(t *testing.T) {
	e, held, reg, fileID := gatedEnv(t, []byte(gateInput))
	const n = 3
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() { codes[i], _, _ = e.createBatchRaw(fileID) })
	}
	// Old code: all three read at once; now: one reads, two wait.
	waitFor(t, "three readers or two waiters", func() bool {
		return held.entered.Load() == n || held.entered.Load() == 1 && gaugeValue(t, reg, "sluice_batch_create_waiting") == n-1
	})
	if got := held.max.Load(); got != 1 {
		t.Errorf("%d input files read at once, want 1 (the gate holds one file's bytes)", got)
	}
	if got := gaugeValue(t, reg, "sluice_batch_create_bytes"); got != float64(len(gateInput)) {
		t.Errorf("sluice_batch_create_bytes %v, want %d", got, len(gateInput))
	}
	close(held.release)
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Errorf("creation %d: status %d, want 200", i, c)
		}
	}
	if got := held.max.Load(); got != 1 {
		t.Errorf("%d input files read at once, want 1", got)
	}
	if b, w := gaugeValue(t, reg, "sluice_batch_create_bytes"), gaugeValue(t, reg, "sluice_batch_create_waiting"); b != 0 || w != 0 {
		t.Errorf("after: %v bytes held, %v waiting; want 0, 0", b, w)
	}
}

// Past 64 waiting creations one is refused at once: 503, Retry-After, an
// OpenAI error.
func TestBatchCreationsPastTheWaitBoundAre503(t *testing.T) {
	e, held, reg, fileID := gatedEnv(t, []byte(gateInput))
	const waiters = 64
	var wg sync.WaitGroup
	for range waiters + 1 {
		wg.Go(func() { e.createBatchRaw(fileID) })
	}
	waitFor(t, "one reader and 64 waiters", func() bool {
		return held.entered.Load() == 1 && gaugeValue(t, reg, "sluice_batch_create_waiting") == waiters
	})
	code, hdr, body := e.createBatchRaw(fileID)
	var out struct {
		Error struct{ Type, Code, Message string }
	}
	json.Unmarshal(body, &out)
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || out.Error.Code != "batch_create_busy" || out.Error.Type != "server_error" {
		t.Errorf("66th creation: %d Retry-After %q %s, want 503 with Retry-After, batch_create_busy", code, hdr.Get("Retry-After"), body)
	}
	if got := gaugeValue(t, reg, "sluice_batch_create_refused_total"); got != 1 {
		t.Errorf("sluice_batch_create_refused_total %v, want 1", got)
	}
	close(held.release)
	wg.Wait()
	if b, w := gaugeValue(t, reg, "sluice_batch_create_bytes"), gaugeValue(t, reg, "sluice_batch_create_waiting"); b != 0 || w != 0 {
		t.Errorf("after: %v bytes held, %v waiting; want 0, 0", b, w)
	}
}
