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
	"github.com/sluice-gw/sluice/internal/h1client"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// A proxied JSON request through the lean client, on a kept-alive
// connection: the allocations of Forward, the client and the test's
// backend and recorder (AllocsPerRun counts every goroutine's), and
// Forward's clock reads. An attempt's watchdog and its backend's
// retirement hook share one allocation (guarded): 59 with the two apart,
// 58 together. The clock read as the head came serves the head's
// bookkeeping (matchWaiting) and the relay's first gap, and the one at
// the answer's end its backend's service time (Result.Held): 9 reads a
// request before, 6 now.
func TestForwardAllocations(t *testing.T) {
	if raceBuild {
		t.Skip("-race changes what escapes")
	}
	answer := `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header()["Content-Type"] = []string{"application/json"}
		io.WriteString(w, answer)
	}))
	defer srv.Close()
	b, err := endpoint.New(endpoint.Spec{URL: srv.URL}, endpoint.HealthPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	client := h1client.New(h1client.Options{})
	defer client.CloseIdleConnections()
	var nows atomic.Int64
	f := proxy.NewForwarder(proxy.Options{Transport: client, Now: func() time.Time { nows.Add(1); return time.Now() },
		Timeouts: proxy.Timeouts{FirstByte: time.Minute, StreamIdle: time.Minute, Total: time.Minute}})
	defer f.Close()
	bodies := proxy.NewBodyPool(nil)
	raw := `{"model":"m","messages":[{"role":"user","content":"hello there"}],"max_tokens":4}`
	header := http.Header{"Content-Type": {"application/json"}}
	w := httptest.NewRecorder()
	forward := func() {
		body, err := bodies.ReadBody(strings.NewReader(raw), int64(len(raw)), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		w.Body.Reset()
		clear(w.Header())
		res := f.Forward(context.Background(), w, &proxy.Request{Path: "/v1/chat/completions", Header: header,
			Body: body, Peek: openai.Peek{Model: "m"}, ServeModel: "m", RequestID: "r1"}, fixedSelector{b})
		if res.Err != nil || w.Body.String() != answer {
			t.Fatalf("err %v, answer %q", res.Err, w.Body)
		}
		body.Release()
	}
	forward() // the connection and the pools
	nows.Store(0)
	forward()
	t.Logf("%d clock reads per request", nows.Load())
	if n := nows.Load(); n > wantForwardClockReads {
		t.Errorf("%d clock reads per request, want at most %d", n, wantForwardClockReads)
	}
	allocs := testing.AllocsPerRun(50, forward)
	t.Logf("%.1f allocations per request", allocs)
	if allocs > wantForwardAllocs {
		t.Errorf("%.1f allocations per request, want at most %d", allocs, wantForwardAllocs)
	}
}

const (
	wantForwardAllocs     = 58
	wantForwardClockReads = 6
)
