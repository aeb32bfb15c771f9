package proxy_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// starts counts what proxy.Request.Started is told.
type starts struct{ told, prompt atomic.Int64 }

func (s *starts) FirstToken(prompt bool) {
	s.told.Add(1)
	if prompt {
		s.prompt.Add(1)
	}
}

// Request.Started (the admission ticket: a tenant ramp's probe grows the
// base on a prompt first token) is told a stream's first token, and only
// a token: an error answer sent as an event stream (a 500 with
// text/event-stream, relayed raw) is no start of generation. Told it, a
// probe answered at once by a failing engine counted a slot in the ramp's
// base that the engine never started anything in.
func TestStartedToldOnlyAFirstToken(t *testing.T) {
	for _, c := range []struct {
		name   string
		status int
		told   int64
	}{
		{"200 stream", http.StatusOK, 1},
		{"500 as an event stream", http.StatusInternalServerError, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "text/event-stream")
				w.WriteHeader(c.status)
				if c.status != http.StatusOK {
					_, _ = io.WriteString(w, "data: {\"error\":{\"message\":\"engine failed\",\"type\":\"server_error\"}}\n\n")
					return
				}
				_, _ = io.WriteString(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n")
			}))
			t.Cleanup(srv.Close)
			b, err := endpoint.New(endpoint.Spec{URL: srv.URL}, endpoint.HealthPolicy{})
			if err != nil {
				t.Fatal(err)
			}
			transport := http.DefaultTransport.(*http.Transport).Clone()
			t.Cleanup(transport.CloseIdleConnections)
			f := proxy.NewForwarder(proxy.Options{Transport: transport,
				Timeouts: proxy.Timeouts{FirstByte: time.Minute, StreamIdle: time.Minute, Total: time.Minute}})
			raw := `{"model":"m","messages":[{"role":"user","content":"hello"}],"stream":true}`
			body, err := proxy.NewBodyPool(nil).ReadBody(strings.NewReader(raw), int64(len(raw)), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			defer body.Release()
			var s starts
			w := httptest.NewRecorder()
			f.Forward(context.Background(), w, &proxy.Request{Path: "/v1/chat/completions", Header: http.Header{},
				Body: body, Peek: openai.Peek{Model: "m", Stream: true}, ServeModel: "m", Started: &s}, fixedSelector{b})
			if w.Code != c.status {
				t.Fatalf("status %d, want %d", w.Code, c.status)
			}
			if got := s.told.Load(); got != c.told {
				t.Fatalf("Started told %d times (prompt %d); want %d", got, s.prompt.Load(), c.told)
			}
		})
	}
}
