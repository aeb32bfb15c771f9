package proxy_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/sim"
)

// A stream's KV need is counted on its backend while it waits for its
// first token (endpoint.Backend.WaitingStreams, which the scrape records
// beside the engine's waiting count) and removed however the wait ends:
// its first token, an answer that is no stream, an error, no answer at
// all, or a hedge race lost. A need left behind would shrink the tenant ramp's KV room
// for good.
func TestWaitingKVNeedCountedUntilTheWaitEnds(t *testing.T) {
	const need = 1234
	engine := sim.New(sim.Config{Slots: 8, DecodeStepBase: time.Millisecond})
	t.Cleanup(engine.Close)
	var b *endpoint.Backend
	seen := make(chan [2]int64, 8) // the backend's tally as each answer begins
	mode := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		streams, kv := b.WaitingStreams()
		seen <- [2]int64{streams, kv}
		switch <-mode {
		case "json":
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"choices":[]}`))
		case "error":
			http.Error(w, `{"error":{"message":"boom"}}`, http.StatusBadRequest)
		case "hangup": // no answer at all: the call ends without one
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		default:
			engine.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	var err error
	if b, err = endpoint.New(endpoint.Spec{URL: srv.URL}, endpoint.HealthPolicy{}); err != nil {
		t.Fatal(err)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(transport.CloseIdleConnections)
	f := proxy.NewForwarder(proxy.Options{Transport: transport, Attempts: 1,
		Timeouts: proxy.Timeouts{FirstByte: time.Minute, StreamIdle: time.Minute, Total: time.Minute}})
	raw := `{"model":"sim-model","messages":[{"role":"user","content":"hello there"}],"max_tokens":4,"stream":true}`
	for _, m := range []string{"stream", "json", "error", "hangup"} {
		mode <- m
		body, err := proxy.NewBodyPool(nil).ReadBody(strings.NewReader(raw), int64(len(raw)), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		f.Forward(context.Background(), w, &proxy.Request{Path: "/v1/chat/completions", Header: http.Header{},
			Body: body, Peek: openai.Peek{Model: "sim-model", Stream: true}, ServeModel: "sim-model", KVNeed: need},
			firstThenOthers{first: b})
		body.Release()
		if got := <-seen; got != [2]int64{1, need} {
			t.Errorf("%s: while waiting, %d streams of KV need %d; want 1 of %d", m, got[0], got[1], need)
		}
		if streams, kv := b.WaitingStreams(); streams != 0 || kv != 0 {
			t.Errorf("%s (status %d): after, %d streams of KV need %d; want none", m, w.Code, streams, kv)
		}
	}
}
