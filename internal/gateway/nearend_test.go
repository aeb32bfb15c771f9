package gateway

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// nearEndBackend streams max_tokens one-token chunks, except that the
// first request it gets holds its last chunk and [DONE] until release is
// closed: the engine has computed the tokens, the last bytes are still on
// their way. arrived counts the requests it has received.
type nearEndBackend struct {
	*httptest.Server
	release chan struct{}
	arrived atomic.Int32
}

func newNearEndBackend(t *testing.T, tokens int) *nearEndBackend {
	t.Helper()
	be := &nearEndBackend{release: make(chan struct{})}
	const chunk = `data: {"id":"c1","object":"chat.completion.chunk","model":"m1","choices":[{"index":0,"delta":{"content":"x"}}]}` + "\n\n"
	be.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		first := be.arrived.Add(1) == 1
		w.Header().Set("Content-Type", "text/event-stream")
		f := w.(http.Flusher)
		for range tokens - 1 {
			io.WriteString(w, chunk)
			f.Flush()
		}
		if first {
			select {
			case <-be.release:
			case <-r.Context().Done():
				return
			}
		}
		io.WriteString(w, chunk+"data: [DONE]\n\n")
	}))
	t.Cleanup(be.Close)
	return be
}

// TestStreamNearMaxTokensHandsItsSlotOn: a stream two chunks from its
// max_tokens gives its backend slot and admission ticket to the next
// request, before its own last chunk has arrived; its accounting stays
// paired (nothing in flight once both have ended).
func TestStreamNearMaxTokensHandsItsSlotOn(t *testing.T) {
	const tokens = 5
	be := newNearEndBackend(t, tokens)
	cfg := testConfig(be.URL)
	cfg.Models[0].Backends[0].MaxConcurrency = 1
	srv, gw := startGateway(t, cfg)
	b := gw.Runtime().Pools["m1"].Backends[0]

	body := func(max int) string {
		return `{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}],"max_tokens":` + strconv.Itoa(max) + `}`
	}
	done := make(chan string, 2)
	go func() {
		resp := post(t, srv.URL+"/v1/chat/completions", body(tokens))
		done <- strconv.Itoa(resp.StatusCode) + " " + readAll(t, resp)
	}()
	// Four of its five chunks relayed, the last held at the backend: the
	// slot is handed on already.
	waitFor(t, func() bool { return be.arrived.Load() == 1 && b.Inflight() == 0 })
	go func() {
		resp := post(t, srv.URL+"/v1/chat/completions", body(tokens))
		done <- strconv.Itoa(resp.StatusCode) + " " + readAll(t, resp)
	}()
	// The second is sent to the only backend while the first still holds
	// its last chunk: it took the slot and the ticket the first handed on.
	waitFor(t, func() bool { return be.arrived.Load() == 2 })
	close(be.release)
	for range 2 {
		if got := <-done; !strings.HasPrefix(got, "200 ") || !strings.Contains(got, "[DONE]") {
			t.Fatalf("answer %.120q, want 200 with the whole stream", got)
		}
	}
	waitFor(t, func() bool { return b.Inflight() == 0 })
}

// TestStreamFarFromMaxTokensKeepsItsSlot: a stream whose max_tokens is
// still far off may run on: it holds its slot until it ends.
func TestStreamFarFromMaxTokensKeepsItsSlot(t *testing.T) {
	const tokens = 5
	be := newNearEndBackend(t, tokens)
	cfg := testConfig(be.URL)
	cfg.Models[0].Backends[0].MaxConcurrency = 1
	srv, gw := startGateway(t, cfg)
	b := gw.Runtime().Pools["m1"].Backends[0]

	resp := post(t, srv.URL+"/v1/chat/completions",
		`{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}],"max_tokens":100}`)
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	for seen := 0; seen < tokens-1; {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended after %d chunks: %v", seen, err)
		}
		if strings.HasPrefix(line, "data: {") {
			seen++
		}
	}
	if n := b.Inflight(); n != 1 {
		t.Fatalf("in flight %d with the stream open and 96 tokens to go, want 1", n)
	}
	close(be.release)
	if rest, _ := io.ReadAll(r); !strings.Contains(string(rest), "[DONE]") {
		t.Fatalf("stream tail %q, want [DONE]", rest)
	}
	waitFor(t, func() bool { return b.Inflight() == 0 })
}
