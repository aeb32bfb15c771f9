package gateway

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/routing"
)

// holdingBackend answers a stream's first event, or nothing yet for a
// non-streamed request, tells arrived, and holds the rest until release
// is closed or its request ends.
func holdingBackend(t *testing.T) (url string, arrived chan string, release chan struct{}) {
	arrived, release = make(chan string, 8), make(chan struct{})
	url = httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		stream := strings.Contains(string(body), `"stream":true`)
		if stream {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"m1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n")
			w.(http.Flusher).Flush()
		}
		arrived <- r.Header.Get("X-Who")
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		if stream {
			fmt.Fprint(w, "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"m1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" there\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":"c1","object":"chat.completion","model":"m1","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	}))
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	return url, arrived, release
}

// TestReloadRemovingAKeyEndsItsRequests: a reload that removes an API key
// ends the streams and requests running under it (an in-band error event
// naming the revocation, or 401), while those of a key the reload keeps
// run to their end. Before, both ran on to [DONE] and 200.
func TestReloadRemovingAKeyEndsItsRequests(t *testing.T) {
	beURL, arrived, release := holdingBackend(t)
	keys := func(ks ...string) *config.Config {
		c := testConfig(beURL)
		for _, k := range ks {
			c.Auth.Keys = append(c.Auth.Keys, config.Tenant{Key: k, Tenant: "t-" + k})
		}
		return c
	}
	reg := prometheus.NewRegistry()
	deps := Deps{Transport: proxy.NewTransportCache(), Now: time.Now, Rand: routing.NewRand(1), Registry: reg}
	rt, err := Build(keys("sk-gone-1", "sk-kept-1"), deps, nil)
	if err != nil {
		t.Fatal(err)
	}
	gw := New(rt, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: reg, Now: deps.Now})
	srv := httptest.NewServer(gw)
	t.Cleanup(func() { srv.Close(); deps.Transport.CloseIdle() })

	open := func(key string, stream bool) chan *http.Response {
		out := make(chan *http.Response, 1)
		body := fmt.Sprintf(`{"model":"m1","messages":[{"role":"user","content":"hi"}],"stream":%v}`, stream)
		go func() {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+key)
			req.Header.Set("X-Who", key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				close(out)
				return
			}
			out <- resp
		}()
		return out
	}
	// Each request reaches the backend before the next is sent: the removed
	// key's two first, then the kept key's, so no tenant becomes busy while
	// another is active with more than one request (admission's ramp would
	// hold the second of a tenant that did, with the backend holding every
	// request: the order decided the test). A request the gateway answers
	// itself never arrives: fail with its answer rather than wait.
	reach := func(out chan *http.Response, stream bool) (resp *http.Response, ok bool) {
		hangGuard := time.NewTimer(time.Minute)
		defer hangGuard.Stop()
		for {
			select {
			case <-arrived:
				switch {
				case !stream:
					return nil, true
				case resp != nil:
					return resp, true // its head came first
				}
				return <-out, true
			case resp = <-out:
				if resp == nil {
					return nil, false // the client's error, reported by open
				}
				if !stream || resp.StatusCode != http.StatusOK {
					t.Errorf("answered before it reached the backend: %d %s", resp.StatusCode, readAll(t, resp))
					return nil, false
				}
				out = nil // the stream's head; its arrival follows
			case <-hangGuard.C:
				t.Error("a request did not reach the backend in a minute")
				return nil, false
			}
		}
	}
	goneStream := open("sk-gone-1", true)
	gs, ok := reach(goneStream, true)
	if !ok {
		t.FailNow()
	}
	goneCall := open("sk-gone-1", false)
	if _, ok := reach(goneCall, false); !ok {
		t.FailNow()
	}
	ks, ok := reach(open("sk-kept-1", true), true)
	if !ok {
		t.FailNow()
	}
	for _, r := range []*http.Response{gs, ks} {
		if line, err := bufio.NewReader(r.Body).ReadString('\n'); err != nil || !strings.HasPrefix(line, "data: ") {
			t.Fatalf("first event: %q %v", line, err)
		}
	}

	next, err := Build(keys("sk-kept-1"), deps, gw.Runtime())
	if err != nil {
		t.Fatal(err)
	}
	gw.Swap(next)

	rest, _ := io.ReadAll(gs.Body)
	gs.Body.Close()
	if !strings.Contains(string(rest), `"code":"api_key_revoked"`) || strings.Contains(string(rest), "[DONE]") ||
		strings.Contains(string(rest), "sk-gone") {
		t.Fatalf("the removed key's stream after the reload: %q; want an api_key_revoked event and no [DONE], no key", rest)
	}
	call := <-goneCall
	if call == nil {
		t.FailNow()
	}
	body := readAll(t, call)
	if _, code, _ := apiErr(t, body); call.StatusCode != http.StatusUnauthorized || code != "api_key_revoked" || strings.Contains(body, "sk-gone") {
		t.Fatalf("the removed key's running request: %d %s; want 401 api_key_revoked", call.StatusCode, body)
	}

	close(release)
	kept, _ := io.ReadAll(ks.Body)
	ks.Body.Close()
	if !strings.Contains(string(kept), "[DONE]") || strings.Contains(string(kept), "api_key_revoked") {
		t.Fatalf("the kept key's stream: %q; want it to run to [DONE]", kept)
	}
	if resp := post(t, srv.URL+"/v1/chat/completions", `{"model":"m1","messages":[{"role":"user","content":"hi"}]}`,
		"Authorization", "Bearer sk-gone-1"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a new request of the removed key: %d", resp.StatusCode)
	}
}
