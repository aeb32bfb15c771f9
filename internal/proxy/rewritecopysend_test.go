package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/h1client"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// An aliased body's copy is let go once the head came and the body was
// written: a backend that answers its head before it reads the body
// (HTTP/2, or HTTP/1.1 answered early) must still get the rewritten body
// whole, through net/http over HTTP/1.1 and HTTP/2 and through the lean
// client. The body (40 KiB) is over the lean client's one-write message
// and the send bound's threshold, under the copy's 64 KiB; over HTTP/2
// the backend's stream window (16 KiB) holds the write until after the
// head (a copy let go at the head alone fails this: 32 of 40 KiB come).
func TestAliasedBodyArrivesWholeWhenAnsweredFirst(t *testing.T) {
	prompt := strings.Repeat("y", 40<<10)
	raw := `{"model":"m","messages":[{"role":"user","content":"` + prompt + `"}],"stream":true}`
	want := strings.Replace(raw, `"model":"m"`, `"model":"m-upstream"`, 1)
	handler := func(bad chan<- string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet {
				return // the warm-up
			}
			// HTTP/1.1: net/http's server reads a body after the head only
			// in full duplex (HTTP/2 always).
			http.NewResponseController(w).EnableFullDuplex()
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, tokenEvent) // the head and a token before the body is read
			w.(http.Flusher).Flush()
			body, err := io.ReadAll(r.Body)
			if err != nil || string(body) != want {
				bad <- fmt.Sprintf("%s: read %d bytes (%v), want the rewritten %d", r.Proto, len(body), err, len(want))
			}
			io.WriteString(w, "data: [DONE]\n\n")
		}
	}
	cases := []struct {
		name  string
		start func(h http.Handler) (*httptest.Server, http.RoundTripper)
	}{
		{"net/http HTTP/1.1", func(h http.Handler) (*httptest.Server, http.RoundTripper) {
			s := httptest.NewServer(h)
			return s, http.DefaultTransport.(*http.Transport).Clone()
		}},
		{"net/http HTTP/2", func(h http.Handler) (*httptest.Server, http.RoundTripper) {
			s := httptest.NewUnstartedServer(h)
			s.EnableHTTP2 = true
			// A stream window under the body: its write waits for the
			// handler's read, which comes after the head; frames of 16 KiB,
			// so the client reads the body piece by piece (with larger ones
			// it reads the whole body into its buffer first).
			s.Config.HTTP2 = &http.HTTP2Config{MaxReceiveBufferPerStream: 16 << 10, MaxReadFrameSize: 16 << 10}
			s.StartTLS()
			return s, s.Client().Transport.(*http.Transport).Clone()
		}},
		{"lean client", func(h http.Handler) (*httptest.Server, http.RoundTripper) {
			return httptest.NewServer(h), h1client.New(h1client.Options{})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const requests = 20
			bad := make(chan string, requests)
			srv, rt := tc.start(handler(bad))
			t.Cleanup(srv.Close)
			b, err := endpoint.New(endpoint.Spec{URL: srv.URL, UpstreamModel: "m-upstream"}, endpoint.HealthPolicy{})
			if err != nil {
				t.Fatal(err)
			}
			// A warm-up: the requests go on a connection whose backend's
			// settings (its stream window) the client has; before them it
			// may send the default 64 KiB, a flow control error.
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			f := forwarder(t, func(o *proxy.Options) { o.Transport = rt })
			pool := proxy.NewBodyPool(nil)
			var wg sync.WaitGroup
			for range requests {
				body, err := pool.ReadBody(strings.NewReader(raw), int64(len(raw)), 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				wg.Go(func() {
					defer body.Release()
					w := httptest.NewRecorder()
					res := f.Forward(context.Background(), w, &proxy.Request{Path: "/v1/chat/completions", Body: body,
						Peek: openai.Peek{Model: "m", Stream: true}, ServeModel: "m"}, fixedSelector{b})
					if res.Err != nil {
						t.Error(res.Err)
					}
				})
			}
			wg.Wait()
			close(bad)
			for msg := range bad {
				t.Error(msg)
			}
		})
	}
}
