package jobs

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/testutil/logbuf"
)

// The gate against a gateway that is shutting down (503), then gone (the
// connection cut without an answer), then back: it asks again after a
// wait doubling from Poll to MaxBackoff, not every Poll, and logs one line
// per change of state (three), not one per ask (none before: a worker
// waiting on a gateway that was gone said nothing). A gateway with no
// room (429) is asked again every Poll, as before. The waits are taken
// from the injected After, which fires at once.
func TestHTTPGateBacksOffFromAGatewayGone(t *testing.T) {
	script := []int{429, 429, 503, 503, 503, 0, 0, 0, 0, 0, 0, 200}
	var asked atomic.Int32
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(asked.Add(1)) - 1
		switch code := script[min(n, len(script)-1)]; code {
		case 0: // gone: the connection closes without an answer
			c, _, _ := w.(http.Hijacker).Hijack()
			c.Close()
		default:
			w.WriteHeader(code)
		}
	}))
	defer gw.Close()
	var logs logbuf.Buffer // the gate's slots write it at once
	var waits []time.Duration
	fired := make(chan time.Time)
	close(fired)
	// No connection reused: Go retries a GET whose reused connection
	// closed unanswered, which would take two of the script's answers.
	g := &HTTPGate{Admin: gw.URL, Poll: 10 * time.Millisecond, MaxBackoff: 80 * time.Millisecond,
		Client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
		Log:    slog.New(slog.NewTextHandler(&logs, nil)),
		After:  func(d time.Duration) <-chan time.Time { waits = append(waits, d); return fired }}
	if err := g.Wait(t.Context(), "m"); err != nil {
		t.Fatal(err)
	}
	ms := time.Millisecond
	want := []time.Duration{10 * ms, 10 * ms, 10 * ms, 20 * ms, 40 * ms, 80 * ms, 80 * ms, 80 * ms, 80 * ms, 80 * ms, 80 * ms}
	if len(waits) != len(want) {
		t.Fatalf("waits %v, want %v", waits, want)
	}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("waits %v, want %v", waits, want)
		}
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "shutting down") || !strings.Contains(lines[1], "unreachable") ||
		!strings.Contains(lines[2], "answering again") {
		t.Fatalf("log lines for 503 x3, gone x6, back:\n%s", strings.Join(lines, "\n"))
	}
}

// A worker whose gateway is gone (connection refused) gives the job back
// without counting the attempt, however often, and runs it once the
// gateway answers: with max_attempts 2, three refused connections leave
// the job queued with no attempt, and it succeeds after one. Before, each
// refused connection counted: the job was dead-lettered at the second.
func TestExecutorGatewayGoneKeepsAttempts(t *testing.T) {
	s, _ := newStore(t, func(o *Options) { o.MaxAttempts = 2 })
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"id":"c","object":"chat.completion"}`))
	}))
	defer gw.Close()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close() // nothing listens there: connection refused
	var dials atomic.Int32
	up := make(chan struct{})
	var upOnce sync.Once
	dialer := &net.Dialer{}
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		select {
		case <-up:
			return dialer.DialContext(ctx, network, strings.TrimPrefix(gw.URL, "http://"))
		default:
		}
		dials.Add(1)
		return dialer.DialContext(ctx, network, deadAddr)
	}}}
	startWorker(t, s, WorkerOptions{Executor: &HTTPExecutor{Admin: "http://gateway.invalid:9091", Token: "t", Client: client}})
	j, _, err := s.Submit(context.Background(), spec("acme"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "three refused connections", func() bool {
		return dials.Load() >= 3 || mustJob(t, s, "acme", j.ID).Status.Terminal()
	})
	if got := mustJob(t, s, "acme", j.ID); got.Status.Terminal() || got.Attempts > 1 {
		t.Fatalf("after %d refused connections: %s, %d attempts (%+v)", dials.Load(), got.Status, got.Attempts, got.Error)
	}
	upOnce.Do(func() { close(up) })
	eventually(t, "the job run", func() bool { return mustJob(t, s, "acme", j.ID).Status.Terminal() })
	if got := mustJob(t, s, "acme", j.ID); got.Status != StatusSucceeded || got.Attempts != 1 {
		t.Fatalf("after the gateway came back: %s after %d attempts (%+v), want succeeded after 1", got.Status, got.Attempts, got.Error)
	}
}
