package gateway

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
)

// answerBackend answers every request with a JSON body naming the call
// number, the path and the model it was sent, so a replayed answer is told
// apart from a fresh one. It gzips when the request accepts gzip (or
// always, with alwaysGzip) and answers status when set.
type answerBackend struct {
	calls      atomic.Int32
	encodings  chan string // Accept-Encoding of each request
	status     int
	alwaysGzip atomic.Bool
}

func newAnswerBackend(t *testing.T) (*answerBackend, string) {
	b := &answerBackend{encodings: make(chan string, 100)}
	return b, httptestServer(t, b)
}

func (b *answerBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := b.calls.Add(1)
	var req struct {
		Model string `json:"model"`
	}
	json.NewDecoder(r.Body).Decode(&req)
	ae := r.Header.Get("Accept-Encoding")
	select {
	case b.encodings <- ae:
	default:
	}
	body := fmt.Sprintf(`{"id":"call-%d","object":"chat.completion","path":%q,"model":%q,"choices":[]}`, n, r.URL.Path, req.Model)
	w.Header().Set("Content-Type", "application/json")
	status := http.StatusOK
	if b.status != 0 {
		status = b.status
		body = fmt.Sprintf(`{"error":{"message":"bad request %d","type":"invalid_request_error","code":"bad"}}`, n)
	}
	if b.alwaysGzip.Load() || strings.Contains(ae, "gzip") {
		w.Header().Set("Content-Encoding", "gzip")
		w.WriteHeader(status)
		zw := gzip.NewWriter(w)
		io.WriteString(zw, body)
		zw.Close()
		return
	}
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// sendRaw posts body to url with the given headers, without the Go
// client's transparent gzip handling, and returns status, headers and the
// body bytes as received.
func sendRaw(t *testing.T, url, body string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, readAll(t, resp)
}

const isoBody = `{"model":"m1","temperature":0,"input":"same words","messages":[{"role":"user","content":"same words"}]}`

func TestCacheKeyCoversEndpointPath(t *testing.T) {
	be, beURL := newAnswerBackend(t)
	chat, _ := startCachingGatewayCfg(t, testConfig(beURL), nil, time.Now)
	emb := strings.TrimSuffix(chat, "/v1/chat/completions") + "/v1/embeddings"

	_, h, body := sendRaw(t, emb, isoBody)
	if h.Get("X-Cache") != "MISS" || !strings.Contains(body, `"/v1/embeddings"`) {
		t.Fatalf("embeddings: X-Cache %q body %s", h.Get("X-Cache"), body)
	}
	_, h, body = sendRaw(t, chat, isoBody)
	if h.Get("X-Cache") != "MISS" || !strings.Contains(body, `"/v1/chat/completions"`) {
		t.Fatalf("chat after embeddings with the same body: X-Cache %q body %s (an embeddings answer replayed?)", h.Get("X-Cache"), body)
	}
	_, h, _ = sendRaw(t, chat, isoBody)
	if h.Get("X-Cache") != "HIT" || be.calls.Load() != 2 {
		t.Fatalf("repeat on chat: X-Cache %q, backend calls %d", h.Get("X-Cache"), be.calls.Load())
	}
}

func twoTenants(cfg *config.Config) *config.Config {
	cfg.Auth.Keys = []config.Tenant{{Key: "ka", Tenant: "A"}, {Key: "kb", Tenant: "B"}}
	return cfg
}

func TestCacheTenantsDoNotShareUnlessShared(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprint("shared=", shared), func(t *testing.T) {
			be, beURL := newAnswerBackend(t)
			cfg := twoTenants(testConfig(beURL))
			cfg.Cache.Shared = shared
			url, _ := startCachingGatewayCfg(t, cfg, nil, time.Now)

			_, h, first := sendRaw(t, url, isoBody, "Authorization", "Bearer ka")
			wantCC := "private, max-age=300"
			if shared {
				wantCC = "max-age=300"
			}
			if h.Get("X-Cache") != "MISS" || h.Get("Cache-Control") != wantCC {
				t.Fatalf("A first: X-Cache %q Cache-Control %q, want MISS %q", h.Get("X-Cache"), h.Get("Cache-Control"), wantCC)
			}
			_, h, again := sendRaw(t, url, isoBody, "Authorization", "Bearer ka")
			if h.Get("X-Cache") != "HIT" || again != first || !strings.HasPrefix(h.Get("Cache-Control"), strings.TrimSuffix(wantCC, "300")) {
				t.Fatalf("A again: X-Cache %q Cache-Control %q", h.Get("X-Cache"), h.Get("Cache-Control"))
			}
			_, h, other := sendRaw(t, url, isoBody, "Authorization", "Bearer kb")
			if shared {
				if h.Get("X-Cache") != "HIT" || other != first {
					t.Fatalf("B with a shared cache: X-Cache %q", h.Get("X-Cache"))
				}
				return
			}
			if h.Get("X-Cache") != "MISS" || other == first || be.calls.Load() != 2 {
				t.Fatalf("B read A's answer: X-Cache %q, calls %d", h.Get("X-Cache"), be.calls.Load())
			}
		})
	}
}

func TestCacheKeyCoversUpstreamModel(t *testing.T) {
	be, beURL := newAnswerBackend(t)
	cfg := testConfig(beURL)
	cfg.Models[0].Backends[0].UpstreamModel = "org/model-v1"
	var deps Deps
	url, gw := startCachingGatewayCfg(t, cfg, nil, time.Now, func(d *Deps) { deps = *d })
	if _, h, body := sendRaw(t, url, isoBody); h.Get("X-Cache") != "MISS" || !strings.Contains(body, `"org/model-v1"`) {
		t.Fatalf("first: %q %s", h.Get("X-Cache"), body)
	}
	if _, h, _ := sendRaw(t, url, isoBody); h.Get("X-Cache") != "HIT" {
		t.Fatalf("repeat: %q", h.Get("X-Cache"))
	}

	// Reload: the backend now serves another model under the same name.
	next := testConfig(beURL)
	next.Models[0].Backends[0].UpstreamModel = "org/model-v2"
	prev := gw.Runtime()
	rt, err := Build(next, deps, prev)
	if err != nil {
		t.Fatal(err)
	}
	gw.Swap(rt)
	_, h, body := sendRaw(t, url, isoBody)
	if h.Get("X-Cache") != "MISS" || !strings.Contains(body, `"org/model-v2"`) || be.calls.Load() != 2 {
		t.Fatalf("after the rewrite changed: X-Cache %q body %s (model-v1's answer replayed?)", h.Get("X-Cache"), body)
	}
}

func TestCacheNeverReplaysAnEncodingTheClientDidNotAskFor(t *testing.T) {
	be, beURL := newAnswerBackend(t)
	url, _ := startCachingGatewayCfg(t, testConfig(beURL), nil, time.Now)

	// A gzip-capable client first: the backend is asked for identity, so
	// what is stored (and what this client gets) is plain.
	_, h, gz := sendRaw(t, url, isoBody, "Accept-Encoding", "gzip")
	if ae := <-be.encodings; ae != "identity" {
		t.Fatalf("a cacheable request went upstream with Accept-Encoding %q", ae)
	}
	if h.Get("X-Cache") != "MISS" || h.Get("Content-Encoding") != "" || !json.Valid([]byte(gz)) {
		t.Fatalf("gzip client: X-Cache %q Content-Encoding %q body %q", h.Get("X-Cache"), h.Get("Content-Encoding"), gz)
	}
	// An identity client replays it as is.
	_, h, plain := sendRaw(t, url, isoBody, "Accept-Encoding", "identity")
	if h.Get("X-Cache") != "HIT" || h.Get("Content-Encoding") != "" || plain != gz {
		t.Fatalf("identity client: X-Cache %q Content-Encoding %q body %q", h.Get("X-Cache"), h.Get("Content-Encoding"), plain)
	}

	// A backend that compresses anyway: its answer is relayed with its
	// Content-Encoding but never stored, so nobody else gets it.
	be.alwaysGzip.Store(true)
	other := strings.Replace(isoBody, "same words", "other words", 2)
	_, h, _ = sendRaw(t, url, other, "Accept-Encoding", "gzip")
	if h.Get("X-Cache") != "MISS" || h.Get("Content-Encoding") != "gzip" {
		t.Fatalf("encoded answer: X-Cache %q Content-Encoding %q", h.Get("X-Cache"), h.Get("Content-Encoding"))
	}
	be.alwaysGzip.Store(false)
	_, h, body := sendRaw(t, url, other, "Accept-Encoding", "identity")
	if h.Get("X-Cache") != "MISS" || h.Get("Content-Encoding") != "" || !json.Valid([]byte(body)) {
		t.Fatalf("identity client after an encoded answer: X-Cache %q Content-Encoding %q body %q", h.Get("X-Cache"), h.Get("Content-Encoding"), body)
	}
}

func TestCacheErrorsNeverShared(t *testing.T) {
	be, beURL := newAnswerBackend(t)
	be.status = http.StatusBadRequest
	cfg := twoTenants(testConfig(beURL))
	cfg.Cache.Shared = true
	url, _ := startCachingGatewayCfg(t, cfg, nil, time.Now)

	status, h, first := sendRaw(t, url, isoBody, "Authorization", "Bearer ka")
	if status != 400 || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("A: %d Cache-Control %q", status, h.Get("Cache-Control"))
	}
	status, h, other := sendRaw(t, url, isoBody, "Authorization", "Bearer kb")
	if status != 400 || h.Get("X-Cache") != "MISS" || other == first || be.calls.Load() != 2 {
		t.Fatalf("B got A's error: %d X-Cache %q calls %d", status, h.Get("X-Cache"), be.calls.Load())
	}
}

func TestUncacheableAnswersAreNoStore(t *testing.T) {
	_, beURL := newAnswerBackend(t)
	url, _ := startCachingGatewayCfg(t, testConfig(beURL), nil, time.Now)
	sampled := `{"model":"m1","temperature":0.9,"messages":[{"role":"user","content":"x"}]}`
	_, h, _ := sendRaw(t, url, sampled)
	if h.Get("X-Cache") != "BYPASS" || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("sampled answer: X-Cache %q Cache-Control %q", h.Get("X-Cache"), h.Get("Cache-Control"))
	}
}
