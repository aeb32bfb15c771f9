package bench

import (
	"context"
	"github.com/sluice-gw/sluice/internal/testutil/logbuf"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunStreaming(t *testing.T) {
	srv := okServer(t)
	arr := []Arrival{
		{At: 0, InputTokens: 100, OutputTokens: 5},
		{At: time.Millisecond, InputTokens: 30, OutputTokens: 8},
		{At: 2 * time.Millisecond, InputTokens: 1, OutputTokens: 1},
	}
	res := runOK(t, Config{Target: srv.URL, Stream: true, Arrivals: arr, SLOTTFT: time.Minute, Label: "s"})
	if res.Offered != 3 || res.Sent != 3 || res.OK != 3 || res.ByStatus[200] != 3 || len(res.Errors) != 0 {
		t.Fatalf("counts: %+v", res)
	}
	if res.PromptTokens != 131 || res.CompletionTokens != 14 {
		t.Errorf("tokens %d/%d, want 131/14 (the server counts prompt words)", res.PromptTokens, res.CompletionTokens)
	}
	for _, rec := range res.Records {
		if !rec.Done || !rec.UsageReported || rec.TTFT <= 0 || rec.TTFT > rec.E2E {
			t.Errorf("record %+v", rec)
		}
		if rec.ITLCount != arr[rec.Index].OutputTokens-1 {
			t.Errorf("record %d: %d gaps, want %d", rec.Index, rec.ITLCount, arr[rec.Index].OutputTokens-1)
		}
	}
	if res.ITL.Count != 4+7 || res.TTFT.Count != 3 || res.E2E.Count != 3 {
		t.Errorf("summaries: itl %d ttft %d e2e %d", res.ITL.Count, res.TTFT.Count, res.E2E.Count)
	}
	if res.Goodput.Count != 3 || res.Goodput.Fraction != 1 || res.RPS <= 0 || res.OutputTokensPerS <= 0 {
		t.Errorf("goodput %+v rps %v", res.Goodput, res.RPS)
	}
	if res.Headers["X-Sluice-Backend"]["b1"] != 3 {
		t.Errorf("backend header counts %v", res.Headers)
	}
}

func TestRunNonStreaming(t *testing.T) {
	srv := okServer(t)
	res := runOK(t, Config{Target: srv.URL + "/", Arrivals: Constant(1000, 5*time.Millisecond, 20, 9)})
	if res.OK != 5 || res.CompletionTokens != 45 || res.PromptTokens != 100 {
		t.Fatalf("ok %d tokens %d/%d", res.OK, res.PromptTokens, res.CompletionTokens)
	}
	for _, rec := range res.Records {
		if rec.TTFT != rec.E2E {
			t.Errorf("non-streaming TTFT %v != e2e %v", rec.TTFT, rec.E2E)
		}
	}
}

// TestOpenLoop holds every response until all arrivals have reached the
// server: a closed-loop generator would wait for the first response forever.
func TestOpenLoop(t *testing.T) {
	const n = 20
	got := make(chan time.Time, n)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := decodeChat(t, r)
		got <- time.Now()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		writeSSE(w, req.promptWords(), req.MaxTokens)
	}))
	defer srv.Close()
	arr := Constant(200, n*5*time.Millisecond, 4, 2) // one every 5ms
	done := make(chan *Result, 1)
	go func() {
		res, err := Run(context.Background(), Config{Target: srv.URL, Stream: true, Arrivals: arr, Timeout: 30 * time.Second})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	guard := time.NewTimer(time.Minute) // only against a hang
	defer guard.Stop()
	var first, last time.Time
	for i := range n {
		select {
		case at := <-got:
			if i == 0 {
				first = at
			}
			last = at
		case <-guard.C:
			close(release)
			t.Fatalf("the server saw %d of %d requests while all were held: arrivals waited for responses", i, n)
		}
	}
	close(release)
	res := <-done
	if res.Sent != n || res.OK != n || res.DroppedByClient != 0 {
		t.Fatalf("sent %d ok %d dropped %d", res.Sent, res.OK, res.DroppedByClient)
	}
	// The arrivals spread over their planned 95ms, not all at once: none
	// is sent before its planned time (a lower bound a loaded machine
	// cannot break; the server-side spread can shrink when the first send
	// is delayed, so it is only logged). The upper bound on the lag is
	// against a generator that waits for answers, not a measure of speed.
	t.Logf("server saw the arrivals over %v (planned 95ms)", last.Sub(first))
	for _, rec := range res.Records {
		if rec.Lag < 0 || rec.Lag > 10*time.Second {
			t.Errorf("arrival %d started %v late", rec.Index, rec.Lag)
		}
	}
}

func TestMaxInFlightDropsInsteadOfDelaying(t *testing.T) {
	got := make(chan struct{}, 10)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := decodeChat(t, r)
		got <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		writeSSE(w, req.promptWords(), req.MaxTokens)
	}))
	defer srv.Close()
	arr := make([]Arrival, 10) // all due at once
	done := make(chan *Result, 1)
	go func() {
		res, _ := Run(context.Background(), Config{Target: srv.URL, Stream: true, Arrivals: arr, MaxInFlight: 3})
		done <- res
	}()
	for range 3 {
		<-got
	}
	close(release)
	res := <-done
	if res.Sent != 3 || res.DroppedByClient != 7 || res.OK != 3 || res.Offered != 10 {
		t.Fatalf("sent %d dropped %d ok %d offered %d", res.Sent, res.DroppedByClient, res.OK, res.Offered)
	}
	if res.Goodput.Fraction != 0.3 {
		t.Errorf("goodput fraction %v: drops count against it", res.Goodput.Fraction)
	}
}

// TestClassification runs one tenant per server behaviour.
func TestClassification(t *testing.T) {
	hold := make(chan struct{})
	defer close(hold)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := decodeChat(t, r)
		f := w.(http.Flusher)
		switch r.Header.Get("X-Mode") {
		case "ok":
			if r.Header.Get("Authorization") != "Bearer key-ok" {
				http.Error(w, "no key", http.StatusUnauthorized)
				return
			}
			writeSSE(w, req.promptWords(), req.MaxTokens)
		case "429":
			w.Header().Set("Retry-After", "2")
			http.Error(w, `{"error":{"message":"slow down","type":"rate_limit_exceeded","code":"tenant_over_share"}}`, http.StatusTooManyRequests)
		case "503":
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case "500":
			http.Error(w, "oops", http.StatusInternalServerError)
		case "midstream":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n")
			f.Flush()
			panic(http.ErrAbortHandler) // the connection drops without the final chunk
		case "truncated":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n")
		case "errevent":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: {\"error\":{\"message\":\"backend died\"}}\n\ndata: [DONE]\n\n")
		case "hang":
			w.Header().Set("Content-Type", "text/event-stream")
			f.Flush()
			select {
			case <-hold:
			case <-r.Context().Done():
			}
		}
	}))
	defer srv.Close()
	modes := []string{"ok", "429", "503", "500", "midstream", "truncated", "errevent", "hang"}
	wantKind := []ErrorKind{"", KindStatus, KindStatus, KindStatus, KindRead, KindTruncated, KindRead, KindTimeout}
	wantStatus := []int{200, 429, 503, 500, 200, 200, 200, 200}
	var tenants []Tenant
	for _, m := range modes {
		tenants = append(tenants, Tenant{Name: m, APIKey: "key-" + m, Headers: http.Header{"X-Mode": {m}}})
	}
	arr := AssignTenants(make([]Arrival, 2*len(modes)), tenants)
	// The timeout is what the "hang" requests must end by (their server
	// never answers). It runs on a clock the test holds until every other
	// answer was read and the hang requests have their headers, so a loaded
	// machine that takes seconds over the others cannot make them time out.
	client := NewClient()
	t.Cleanup(client.CloseIdleConnections)
	settled := newSettledTransport(client.Transport, len(arr), func(r *http.Request) bool { return r.Header.Get("X-Mode") == "hang" })
	client.Transport = settled
	res := runOK(t, Config{Target: srv.URL, Stream: true, Arrivals: arr, Tenants: tenants, Client: client,
		Clock: gatedClock{gate: settled.all}, Timeout: time.Minute, DrainTimeout: 10 * time.Hour})
	for _, rec := range res.Records {
		if rec.Kind != wantKind[rec.Tenant] || rec.Status != wantStatus[rec.Tenant] {
			t.Errorf("%s: kind %q status %d, want %q %d", modes[rec.Tenant], rec.Kind, rec.Status, wantKind[rec.Tenant], wantStatus[rec.Tenant])
		}
		// The refusal's reason is its body's code; a body with none has none.
		if want := map[string]string{"429": "tenant_over_share"}[modes[rec.Tenant]]; rec.Code != want {
			t.Errorf("%s: error code %q, want %q", modes[rec.Tenant], rec.Code, want)
		}
	}
	if res.OK != 2 || res.Refused != 4 || res.RetryAfterShare != 0.5 {
		t.Errorf("ok %d refused %d retry-after share %v", res.OK, res.Refused, res.RetryAfterShare)
	}
	if res.TimeToRefuse.Count != 4 || res.Headers["Retry-After"]["2"] != 2 {
		t.Errorf("refuse summary %+v, headers %v", res.TimeToRefuse, res.Headers)
	}
	if res.Errors[KindStatus] != 6 || res.Errors[KindTimeout] != 2 || res.Errors[KindRead] != 4 || res.Errors[KindTruncated] != 2 {
		t.Errorf("errors %v", res.Errors)
	}
	// 14 of 16 failed; the two 429s are refusals, not errors.
	if res.RateLimitedRate != 2.0/16 || res.ErrorRate != 12.0/16 {
		t.Errorf("429 rate %v, error rate %v", res.RateLimitedRate, res.ErrorRate)
	}
	if len(res.Tenants) != len(modes) || res.Tenants[0].OK != 2 || res.Tenants[0].CompletionTokens != 2 || res.Tenants[1].Refused != 2 {
		t.Errorf("tenants %+v", res.Tenants)
	}
	if res.Fairness != 1.0/float64(len(modes)) {
		t.Errorf("one tenant served everything: Jain %v, want 1/%d", res.Fairness, len(modes))
	}
}

func TestConnectError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	res := runOK(t, Config{Target: "http://" + addr, Arrivals: make([]Arrival, 2)})
	if res.Errors[KindConnect] != 2 || res.OK != 0 || len(res.ByStatus) != 0 {
		t.Errorf("errors %v statuses %v", res.Errors, res.ByStatus)
	}
}

func TestCancelStopsTheRun(t *testing.T) {
	var hits atomic.Int64
	started := make(chan struct{}, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body) // so a client hang-up cancels r.Context()
		started <- struct{}{}
		<-r.Context().Done() // never answers
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	arr := Constant(10, time.Hour, 1, 1) // a plan far longer than the test
	done := make(chan *Result, 1)
	go func() {
		res, err := Run(ctx, Config{Target: srv.URL, Stream: true, Arrivals: arr})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	<-started
	cancel()
	res := <-done
	if !res.Interrupted || res.Planned != len(arr) || res.Offered >= len(arr) || res.Offered == 0 {
		t.Fatalf("interrupted %v planned %d offered %d", res.Interrupted, res.Planned, res.Offered)
	}
	if res.Errors[KindCanceled] != res.Sent {
		t.Errorf("in-flight requests: %v of %d sent", res.Errors, res.Sent)
	}
}

func TestValidation(t *testing.T) {
	for _, cfg := range []Config{
		{Target: "localhost:8080"},
		{Target: "ftp://x"},
		{Target: "http://x", Tenants: []Tenant{{}}, Arrivals: []Arrival{{Tenant: 1}}},
	} {
		if _, err := Run(context.Background(), cfg); err == nil {
			t.Errorf("no error for %+v", cfg)
		}
	}
}

// TestFastClockAndProgress replays a 30-second plan on a clock running 300x
// faster than real time; progress lines come once per (fast) second.
//
// Nothing here depends on how fast the machine is: the drain waits for the
// requests to finish (its bound and each request's, 10 h on the fast clock,
// are two minutes of real time, only guards against a hang), and the server holds the last
// request until a progress line was written, so a run that a loaded machine
// stretches or squeezes still has something to print.
func TestFastClockAndProgress(t *testing.T) {
	const n = 60
	progressed := make(chan struct{})
	var progress logbuf.Buffer
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := decodeChat(t, r)
		if hits.Add(1) == n {
			select {
			case <-progressed:
			case <-r.Context().Done(): // the drain's hang guard gave up
				return
			}
		}
		writeSSE(w, req.promptWords(), req.MaxTokens)
	}))
	t.Cleanup(srv.Close)
	clock := fastClock{start: time.Now(), speed: 300}
	res := runOK(t, Config{
		Target: srv.URL, Stream: true, Arrivals: Constant(2, 30*time.Second, 3, 2),
		Clock: clock, Progress: &signalWriter{w: &progress, first: progressed},
		Timeout: 10 * time.Hour, DrainTimeout: 10 * time.Hour,
	})
	if out := progress.String(); !strings.Contains(out, "sent") || !strings.Contains(out, "in-flight") || !strings.Contains(out, "rps") {
		t.Fatalf("progress output: %q", out)
	}
	if res.OK != n {
		t.Fatalf("ok %d of %d", res.OK, n)
	}
	if res.WindowS < 29 {
		t.Errorf("window %.1fs on the fast clock, want about 30s", res.WindowS)
	}
}

// signalWriter writes to w and closes first after the first write.
type signalWriter struct {
	w     io.Writer
	first chan struct{}
	once  sync.Once
}

func (s *signalWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	s.once.Do(func() { close(s.first) })
	return n, err
}

// TestProgressFunc reports counts to a func at ProgressEvery, refusals
// counted apart: a server that answers every request 429.
func TestProgressFunc(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	t.Cleanup(srv.Close)
	var mu sync.Mutex
	var got []Progress
	clock := fastClock{start: time.Now(), speed: 300}
	res := runOK(t, Config{
		Target: srv.URL, Stream: true, Arrivals: Constant(2, 30*time.Second, 3, 2), Clock: clock,
		Timeout:       10 * time.Hour, // Timeout and drain: two minutes of real time on the fast clock: a loaded machine does not cut requests
		DrainTimeout:  10 * time.Hour,
		ProgressEvery: 5 * time.Second, ProgressFunc: func(p Progress) { mu.Lock(); got = append(got, p); mu.Unlock() },
	})
	if res.Refused != 60 {
		t.Fatalf("refused %d of 60", res.Refused)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) == 0 {
		t.Fatal("no progress report in a 30 s run reported every 5 s")
	}
	for i, p := range got {
		if p.OK != 0 || p.Refused != p.Done || p.Sent < p.Done || i > 0 && p.Elapsed < got[i-1].Elapsed+5*time.Second {
			t.Fatalf("progress %+v after %+v: want every finished request refused, reports at least 5 s apart", p, got[max(i-1, 0)])
		}
	}
}

// TestLazyBodies builds bodies in the request goroutines (the path for
// traces too large to prebuild) and checks the server sees the same sizes.
func TestLazyBodies(t *testing.T) {
	srv := okServer(t)
	arr := []Arrival{
		{InputTokens: 700, OutputTokens: 2, HashIDs: []int{1, 2}},
		{InputTokens: 40, OutputTokens: 2, HashIDs: []int{1}},
		{InputTokens: 9, OutputTokens: 2},
	}
	res := runOK(t, Config{Target: srv.URL, Stream: true, Arrivals: arr, PrebuildBytes: -1, BlockTokens: 512})
	for _, rec := range res.Records {
		if rec.PromptTokens != arr[rec.Index].InputTokens {
			t.Errorf("arrival %d: server counted %d prompt words, want %d", rec.Index, rec.PromptTokens, arr[rec.Index].InputTokens)
		}
	}
}
