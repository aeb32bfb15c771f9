package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/netguard"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// TestReusedBodiesKeepEachAnswerItsOwn: with the pooled bodies a server
// runs (reused across requests: proxy.Body.ReleaseLast, exchange.spareBody),
// clients on kept HTTP/1.1 connections through netguard's Listener mix
// cache hits, misses that coalesce, uncached calls and refusals, at once;
// every answer is its own request's (the backend echoes the prompt). The
// tests' poisoning pool reuses no body, so the other tests run none of
// this path.
func TestReusedBodiesKeepEachAnswerItsOwn(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Messages []struct{ Content string } `json:"messages"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Messages) == 0 {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		answer, _ := json.Marshal("echo:" + req.Messages[len(req.Messages)-1].Content)
		fmt.Fprintf(w, `{"id":"x","object":"chat.completion","model":"m1","choices":[{"index":0,"message":{"role":"assistant","content":%s},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`, answer)
	}))
	defer be.Close()
	_, gw := startCachingGatewayCfg(t, testConfig(be.URL), nil, time.Now)
	gw.bodies = proxy.NewBodyPool(gw.bodyMem) // the pooled path: bodies reused
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl := netguard.NewListener(ln, netguard.ConnLimits{Total: 64}, nil)
	gl.ScanFraming()
	srv := &http.Server{Handler: netguard.Guard(gw), ConnContext: gl.ConnContext, ConnState: gl.ConnState}
	go srv.Serve(gl)
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/v1/chat/completions"

	const clients, rounds = 6, 40
	var wg sync.WaitGroup
	errs := make(chan string, clients*rounds)
	for c := range clients {
		wg.Go(func() {
			hc := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}}
			defer hc.CloseIdleConnections()
			for i := range rounds {
				prompt := fmt.Sprintf("prompt %d of a few shared ones", (c+i)%5) // hits and coalesced misses
				temp := 0
				switch i % 4 {
				case 1:
					prompt, temp = fmt.Sprintf("client %d round %d, its own", c, i), 1 // a backend call every time
				case 3: // a refusal: no backend call, the body reused next
					resp, err := hc.Post(url, "application/json", strings.NewReader(`{"model":"m1","messages":[`+strings.Repeat(" ", 40*i)))
					if err != nil {
						errs <- err.Error()
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusBadRequest {
						errs <- fmt.Sprintf("a malformed body: status %d", resp.StatusCode)
					}
					continue
				}
				content, _ := json.Marshal(prompt + strings.Repeat(".", (c*7+i)%50))
				body := fmt.Sprintf(`{"model":"m1","temperature":%d,"max_tokens":8,"messages":[{"role":"user","content":%s}]}`, temp, content)
				resp, err := hc.Post(url, "application/json", strings.NewReader(body))
				if err != nil {
					errs <- err.Error()
					return
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				want, _ := json.Marshal("echo:" + prompt + strings.Repeat(".", (c*7+i)%50))
				if resp.StatusCode != http.StatusOK || !strings.Contains(string(got), string(want)) {
					errs <- fmt.Sprintf("client %d round %d (X-Cache %s): status %d, %s, want %s", c, i, resp.Header.Get("X-Cache"), resp.StatusCode, got, want)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
