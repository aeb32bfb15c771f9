package gateway

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
)

// A newcomer's stream that a backend commits with a keep-alive comment and
// then fails with an in-band error is no ramp completion: the comment is
// no first token (proxy.tellStart). Tenant A holds a slot; tenant B, busy
// beside it, sends three streams, each answered ": ping" at once and, once
// B's client got the ping, the backend's error event; then three requests
// at once that the backend holds. B's allowance stays 1: one of the three
// at the backend, two held by its ramp. Before, the ping was told as a
// prompt first token, so the three failed streams counted as answers and
// all three held requests went (3, 0).
func TestRampKeepAliveThenErrorIsNoCompletion(t *testing.T) {
	hold := make(chan struct{})
	var arrived atomic.Int64
	var mu sync.Mutex
	pinged := map[string]chan struct{}{} // B's streams: the client got the ping
	be := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch {
		case bytes.Contains(b, []byte("b-quick")):
			mu.Lock()
			var got chan struct{}
			for k, ch := range pinged {
				if bytes.Contains(b, []byte(k)) {
					got = ch
				}
			}
			mu.Unlock()
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, ": ping\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-got:
			case <-r.Context().Done():
				return
			}
			io.WriteString(w, "data: {\"error\":{\"message\":\"engine failed\",\"type\":\"server_error\",\"code\":null}}\n\n")
			return
		case bytes.Contains(b, []byte("hold")):
			if bytes.Contains(b, []byte("b-hold")) {
				arrived.Add(1)
			}
			select {
			case <-hold:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`)
	}))
	cfg := testConfig(be)
	cfg.Retry.Attempts, cfg.Retry.HedgeFactor = 1, 0
	// No first-token bound: within one the ping is held until the first
	// data (proxy.relayStream's holdPings) and never reaches the client
	// alone; without one it commits the stream, the case told here.
	cfg.Timeouts.FirstTokenFactor = 0
	cfg.Health.MaxFails = 0 // the failed streams must not eject the one backend
	cfg.Breaker.Enabled = false
	cfg.Admission.TenantRamp = config.Duration(time.Minute)
	cfg.Auth.Keys = []config.Tenant{{Key: "sk-a", Tenant: "a"}, {Key: "sk-b", Tenant: "b"}}
	srv, gw := startGateway(t, cfg)
	q := gw.Runtime().Pools["m1"].queue

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	send := func(key, content string, stream bool, pinged chan struct{}) (string, error) {
		body := `{"model":"m1","max_tokens":4,"messages":[{"role":"user","content":"` + content + `"}]}`
		if stream {
			body = strings.Replace(body, `"max_tokens"`, `"stream":true,"max_tokens"`, 1)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(body))
		if err != nil {
			return "", err
		}
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("X-Sluice-Priority", "batch") // a 5 min objective: a held request is not refused
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		var got []byte
		if pinged != nil {
			for !bytes.Contains(got, []byte(": ping\n\n")) {
				b, err := br.ReadByte()
				if err != nil {
					return string(got), err
				}
				got = append(got, b)
			}
			close(pinged)
		}
		rest, err := io.ReadAll(br)
		return string(append(got, rest...)), err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(hold)
	wg.Go(func() { _, _ = send("sk-a", "a-hold", false, nil) })
	waitUntil(t, "A's slot", func() bool { return q.Stats().InUse == 1 })
	for i := range 3 {
		content := "b-quick " + itoa(i)
		ch := make(chan struct{})
		mu.Lock()
		pinged[content] = ch
		mu.Unlock()
		got, err := send("sk-b", content, true, ch)
		if err != nil || !strings.Contains(got, "engine failed") {
			t.Fatalf("B's stream %d: %q, %v; want the ping and the backend's error event", i, got, err)
		}
	}
	for i := range 3 {
		wg.Go(func() { _, _ = send("sk-b", "b-hold "+itoa(i), false, nil) })
	}
	waitUntil(t, "B's three at the backend or held", func() bool {
		return int(arrived.Load())+q.Stats().RampHeld == 3
	})
	if n, h := arrived.Load(), q.Stats().RampHeld; n != 1 || h != 2 {
		t.Fatalf("after three streams that pinged and failed: %d of B's three at the backend, %d held by its ramp; want 1, 2", n, h)
	}
}
