package gateway

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// heldStreamBackend holds every request until release is closed, then
// streams two chunks and [DONE]; a body containing "reject-me" gets a 400
// in the OpenAI error shape instead.
type heldStreamBackend struct {
	*httptest.Server
	release chan struct{}
	arrived chan struct{}
	once    sync.Once
}

func (b *heldStreamBackend) open() { b.once.Do(func() { close(b.release) }) }

func newHeldStreamBackend(t *testing.T) *heldStreamBackend {
	b := &heldStreamBackend{release: make(chan struct{}), arrived: make(chan struct{}, 100)}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b.arrived <- struct{}{}
		select {
		case <-b.release:
		case <-r.Context().Done():
			return
		}
		if strings.Contains(string(body), "reject-me") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, "{\n \"error\": {\"message\": \"bad prompt\", \"type\": \"invalid_request_error\", \"param\": \"messages\", \"code\": \"bad_prompt\"}\n}\n")
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for _, c := range []string{"a", "b"} {
			io.WriteString(w, `data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"`+c+`"}}]}`+"\n\n")
		}
		io.WriteString(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(func() { b.open(); b.Close() })
	return b
}

// progressRig is a gateway with one backend of one slot, a clock that
// moves only when the test says so, and progress ticks the test sends.
type progressRig struct {
	srv     *httptest.Server
	gw      *Gateway
	be      *heldStreamBackend
	clock   atomic.Int64
	tickers chan chan time.Time // one per opted-in request, in arrival order
}

func newProgressRig(t *testing.T) *progressRig {
	rig := &progressRig{be: newHeldStreamBackend(t), tickers: make(chan chan time.Time, 16)}
	rig.clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, rig.clock.Load()) }
	cfg := testConfig(rig.be.URL)
	cfg.Models[0].Backends[0].MaxConcurrency = 1
	rig.srv, rig.gw = startGatewayWith(t, cfg, func(d *Deps) { d.Now = now })
	// startGatewayWith builds the gateway without a ticker: swap in one
	// whose ticks the test sends.
	rig.gw.progress = func(time.Duration) (<-chan time.Time, func()) {
		ch := make(chan time.Time)
		rig.tickers <- ch
		return ch, func() {}
	}
	t.Cleanup(rig.be.open) // before the gateway's cleanup waits for its handlers
	return rig
}

func (rig *progressRig) advance(d time.Duration) { rig.clock.Add(int64(d)) }

// occupy takes the backend's only slot with a request that streams once
// the backend is opened; the returned channel has its body.
func (rig *progressRig) occupy(t *testing.T) <-chan string {
	out := make(chan string, 1)
	go func() { out <- readAll(t, post(t, rig.srv.URL+"/v1/chat/completions", streamBody)) }()
	<-rig.be.arrived
	return out
}

func (rig *progressRig) queued() int { return rig.gw.Runtime().Queues()["m1"].Stats().Queued }

// sseLines reads a response body line by line.
type sseLines struct {
	t *testing.T
	r *bufio.Reader
}

// next returns the next non-empty line, or "" at the end of the body.
func (s sseLines) next() string {
	s.t.Helper()
	for {
		line, err := s.r.ReadString('\n')
		if line = strings.TrimRight(line, "\r\n"); line != "" {
			return line
		}
		if err != nil {
			return ""
		}
	}
}

func TestProgressCommentsWhileQueuedThenTheAnswer(t *testing.T) {
	rig := newProgressRig(t)
	first := rig.occupy(t)

	resp := post(t, rig.srv.URL+"/v1/chat/completions", streamBody, "X-Sluice-Progress", "1")
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("X-Request-Id") == "" {
		t.Fatalf("committed head: %d %v", resp.StatusCode, resp.Header)
	}
	lines := sseLines{t, bufio.NewReader(resp.Body)}
	if l := lines.next(); !strings.HasPrefix(l, ": sluice-queue position=1 eta_ms=") || !strings.HasSuffix(l, " waited_ms=0") {
		t.Fatalf("first comment %q", l)
	}
	tick := <-rig.tickers
	rig.advance(400 * time.Millisecond) // under the delay target: no review yet
	tick <- time.Time{}
	if l := lines.next(); !strings.HasPrefix(l, ": sluice-queue position=1 ") || !strings.HasSuffix(l, " waited_ms=400") {
		t.Fatalf("comment after a tick %q", l)
	}

	rig.be.open()
	var data []string
	for l := lines.next(); l != ""; l = lines.next() {
		if strings.HasPrefix(l, ":") {
			continue // a report racing the grant is fine
		}
		data = append(data, l)
	}
	if len(data) != 3 || !strings.Contains(data[0], `"content":"a"`) || data[2] != "data: [DONE]" {
		t.Fatalf("answer after the comments: %q", data)
	}
	if body := <-first; strings.Contains(body, "sluice-queue") {
		t.Fatalf("a request without the header got comments: %q", body)
	}
}

func TestProgressRefusalAfterQueueingIsAnInStreamError(t *testing.T) {
	rig := newProgressRig(t)
	rig.occupy(t)
	resp := post(t, rig.srv.URL+"/v1/chat/completions", streamBody, "X-Sluice-Progress", "1")
	defer resp.Body.Close()
	lines := sseLines{t, bufio.NewReader(resp.Body)}
	if l := lines.next(); !strings.HasPrefix(l, ": sluice-queue ") {
		t.Fatalf("first comment %q", l)
	}
	rig.advance(time.Minute) // far past its deadline
	rig.gw.Runtime().Kick()

	if l := lines.next(); !strings.HasPrefix(l, ": retry-after-ms=") {
		t.Fatalf("retry advice %q", l)
	}
	ev := lines.next()
	payload, ok := strings.CutPrefix(ev, "data: ")
	if !ok {
		t.Fatalf("error event %q", ev)
	}
	if typ, code, _ := apiErr(t, payload); typ != "server_error" || code != "deadline" {
		t.Fatalf("error %s/%s in %q", typ, code, ev)
	}
	if l := lines.next(); l != "" {
		t.Fatalf("stream went on after the error: %q", l)
	}
}

func TestProgressBackendErrorAfterCommitIsAnInStreamError(t *testing.T) {
	rig := newProgressRig(t)
	rig.occupy(t)
	resp := post(t, rig.srv.URL+"/v1/chat/completions", strings.Replace(streamBody, "hi", "reject-me", 1), "X-Sluice-Progress", "1")
	defer resp.Body.Close()
	lines := sseLines{t, bufio.NewReader(resp.Body)}
	if l := lines.next(); !strings.HasPrefix(l, ": sluice-queue ") {
		t.Fatalf("first comment %q", l)
	}
	rig.be.open()
	var ev string
	for ev = lines.next(); strings.HasPrefix(ev, ":"); ev = lines.next() {
	}
	want := `data: {"error":{"message":"bad prompt","type":"invalid_request_error","param":"messages","code":"bad_prompt"}}`
	if ev != want {
		t.Fatalf("backend's error as an event: %q, want %q", ev, want)
	}
	if l := lines.next(); l != "" {
		t.Fatalf("stream went on after the error: %q", l)
	}
}

func TestProgressWithoutTheHeaderRefusalKeepsItsStatus(t *testing.T) {
	for _, tc := range []struct{ name, body, progress string }{
		{"no header", streamBody, ""},
		{"not streaming", chatBody, "1"}, // ignored: nothing to put comments in
		{"switched off", streamBody, "false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rig := newProgressRig(t) // a fresh queue: the last refusal left this one congested
			rig.occupy(t)
			done := make(chan *http.Response, 1)
			go func() { done <- post(t, rig.srv.URL+"/v1/chat/completions", tc.body, "X-Sluice-Progress", tc.progress) }()
			eventually(t, "the request queued", func() bool { return rig.queued() == 1 })
			rig.advance(time.Minute)
			rig.gw.Runtime().Kick()
			resp := <-done
			body := readAll(t, resp)
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("refusal %d %v: %s", resp.StatusCode, resp.Header, body)
			}
			if _, code, _ := apiErr(t, body); code != "deadline" {
				t.Fatalf("code %s", code)
			}
		})
	}
}

func TestProgressGrantedAtOnceIsAnOrdinaryAnswer(t *testing.T) {
	rig := newProgressRig(t)
	rig.be.open()
	resp := post(t, rig.srv.URL+"/v1/chat/completions", streamBody, "X-Sluice-Progress", "1")
	body := readAll(t, resp)
	if resp.StatusCode != 200 || resp.Header.Get("X-Sluice-Queue-Time") != "0" || resp.Header.Get("X-Sluice-Model") != "m1" {
		t.Fatalf("head %d %v", resp.StatusCode, resp.Header)
	}
	if strings.Contains(body, "sluice-queue") || !strings.HasSuffix(body, "data: [DONE]\n\n") {
		t.Fatalf("body %q", body)
	}
}

func TestProgressHeaderValueIsValidated(t *testing.T) {
	cfg := testConfig(newOKBackend(t).URL)
	srv, _ := startGateway(t, cfg)
	resp := post(t, srv.URL+"/v1/chat/completions", streamBody, "X-Sluice-Progress", "yes please")
	body := readAll(t, resp)
	if resp.StatusCode != 400 || !strings.Contains(body, `"param":"X-Sluice-Progress"`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}
