package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// A held stream to a backend whose model name is rewritten (an alias:
// upstream_model) keeps no copy of its prompt: the rewritten body is
// copied to go out in one write with the head, and the copy was kept by
// the request (http.Response.Request) for the stream's whole life, so
// every such stream held its prompt twice. The figure is the heap an
// aliased held stream costs over one sent as it came, both with a 24 KiB
// prompt (the pooled body is held by both until Forward returns): the
// copy is the whole difference (25.8 KB on the old code, -1.9 now).
func TestAliasedHeldStreamKeepsNoCopyOfItsPrompt(t *testing.T) {
	const streams = 100
	prompt := strings.Repeat("x", 24<<10)
	raw := `{"model":"m","messages":[{"role":"user","content":"` + prompt + `"}],"stream":true}`
	release := make(chan struct{})
	var got sync.Map // the model each backend saw
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got.Store(r.Host, strings.Contains(string(body), `"model":"m-upstream"`))
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, tokenEvent)
		w.(http.Flusher).Flush()
		select {
		case <-release:
			io.WriteString(w, "data: [DONE]\n\n")
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	pool := proxy.NewBodyPool(nil)
	hold := func(upstreamModel string) (perStream float64) {
		t.Helper()
		b, err := endpoint.New(endpoint.Spec{URL: srv.URL, UpstreamModel: upstreamModel}, endpoint.HealthPolicy{})
		if err != nil {
			t.Fatal(err)
		}
		f := forwarder(t, func(o *proxy.Options) { o.Transport.(*http.Transport).MaxIdleConnsPerHost = streams })
		var before, after runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&before)
		var wg sync.WaitGroup
		firsts := make(chan struct{}, streams)
		for range streams {
			body, err := pool.ReadBody(strings.NewReader(raw), int64(len(raw)), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			w := &firstWriter{h: http.Header{}, first: firsts}
			wg.Go(func() {
				defer body.Release()
				res := f.Forward(context.Background(), w, &proxy.Request{Path: "/v1/chat/completions", Body: body,
					Peek: openai.Peek{Model: "m", Stream: true}, ServeModel: "m"}, fixedSelector{b})
				if res.Err != nil {
					t.Error(res.Err)
				}
			})
		}
		for range streams {
			<-firsts // every stream relayed its first event and is held
		}
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&after)
		perStream = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / streams
		close(release)
		wg.Wait()
		release = make(chan struct{})
		return perStream
	}
	// Up to three pairs: goroutines an earlier test of the package left
	// ending (its servers, its streams) free memory during a measurement;
	// one clean pair is the figure. The copy, where kept, is in every one.
	var figures []string
	for range 3 {
		plain := hold("")
		aliased := hold("m-upstream")
		if v, _ := got.Load(strings.TrimPrefix(srv.URL, "http://")); v != true {
			t.Fatal("the backend was not sent the upstream model")
		}
		t.Logf("per held stream: %.0f bytes sent as it came, %.0f aliased", plain, aliased)
		if extra := aliased - plain; extra <= 8<<10 {
			return
		}
		figures = append(figures, fmt.Sprintf("%.1f", (aliased-plain)/1000))
	}
	t.Fatalf("an aliased held stream holds %s KB more than one sent as it came (24 KiB prompt): a copy of its body", strings.Join(figures, ", "))
}

// firstWriter is a client's ResponseWriter that signals its first write.
type firstWriter struct {
	h     http.Header
	once  sync.Once
	first chan<- struct{}
}

func (w *firstWriter) Header() http.Header { return w.h }
func (w *firstWriter) WriteHeader(int)     {}
func (w *firstWriter) Flush()              {}
func (w *firstWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { w.first <- struct{}{} })
	return len(p), nil
}
