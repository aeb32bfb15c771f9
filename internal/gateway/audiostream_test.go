package gateway

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/sim"
)

// Streamed transcriptions (stream=true) are relayed as chat streams are:
// event by event, flushed, byte for byte; a stream the backend cuts ends
// with an in-band error event; the usage its last events report counts.

// vllmTranscriptionStream is vLLM's stream for a transcription with
// stream_include_usage (speech_to_text.py, _speech_to_text_stream_generator).
var vllmTranscriptionStream = []string{
	`data: {"id":"transcribe-1","object":"transcription.chunk","created":1,"model":"m1","choices":[{"delta":{"content":"a sluice"}}]}` + "\n\n",
	`data: {"id":"transcribe-1","object":"transcription.chunk","created":1,"model":"m1","choices":[{"delta":{"content":" gate"},"finish_reason":"stop","stop_reason":null}]}` + "\n\n",
	`data: {"id":"transcribe-1","object":"transcription.chunk","created":1,"model":"m1","choices":[],"usage":{"prompt_tokens":17,"total_tokens":20,"completion_tokens":3}}` + "\n\n",
	"data: [DONE]\n\n",
}

// scriptedStream is a backend that sends events[:first], flushed, then
// waits for release (or the request's end) and sends the rest; cut: it
// aborts the connection instead of sending the rest. forms gets the form
// fields it was sent.
func scriptedStream(t *testing.T, events []string, first int, release <-chan struct{}, cut bool, forms chan<- map[string]string) *httptest.Server {
	t.Helper()
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		select {
		case forms <- formValues(t, r.Header.Get("Content-Type"), b):
		default:
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for _, ev := range events[:first] {
			io.WriteString(w, ev)
		}
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		if cut {
			panic(http.ErrAbortHandler)
		}
		for _, ev := range events[first:] {
			io.WriteString(w, ev)
		}
	}))
	t.Cleanup(be.Close)
	return be
}

func TestAudioStreamRelayed(t *testing.T) {
	release := make(chan struct{})
	forms := make(chan map[string]string, 1)
	be := scriptedStream(t, vllmTranscriptionStream, 1, release, false, forms)
	srv, reg, logs := usageGateway(t, testConfig(be.URL))
	ct, body := audioForm(t, "file", strings.Repeat("x", 3200), "model", "m1", "stream", "true", "response_format", "text")
	resp := post(t, srv.URL+"/v1/audio/transcriptions", body, "Content-Type", ct)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), readAll(t, resp))
	}
	// The first event comes through while the backend holds the rest: it
	// was flushed, not buffered.
	r := bufio.NewReader(resp.Body)
	first, err := readSSEEvent(r)
	if err != nil || first != vllmTranscriptionStream[0] {
		t.Fatalf("first event %q %v, want %q", first, err, vllmTranscriptionStream[0])
	}
	close(release)
	rest, err := io.ReadAll(r)
	resp.Body.Close()
	if want := strings.Join(vllmTranscriptionStream[1:], ""); err != nil || string(rest) != want {
		t.Fatalf("rest of the stream %q %v, want byte for byte %q", rest, err, want)
	}
	if f := <-forms; f["stream"] != "true" || f["response_format"] != "text" {
		t.Fatalf("the backend read %q", f)
	}
	// The usage chunk's tokens count, as a chat stream's do.
	if in, out := accessTokens(t, logs.String(), "/v1/audio/transcriptions"); in != 17 || out != 3 {
		t.Fatalf("access line tokens in %d out %d, want 17 and 3", in, out)
	}
	if in, _ := tokensTotal(t, reg, "in"); in != 17 {
		t.Fatalf("sluice_tokens_total in %v, want 17", in)
	}
}

// readSSEEvent reads one event, up to and including its blank line.
func readSSEEvent(r *bufio.Reader) (string, error) {
	var b strings.Builder
	for {
		line, err := r.ReadString('\n')
		b.WriteString(line)
		if err != nil || line == "\n" {
			return b.String(), err
		}
	}
}

func TestAudioStreamCut(t *testing.T) {
	release := make(chan struct{})
	close(release)
	be := scriptedStream(t, vllmTranscriptionStream, 1, release, true, nil)
	srv, _ := startGateway(t, testConfig(be.URL))
	ct, body := audioForm(t, "file", "x", "model", "m1", "stream", "1")
	resp := post(t, srv.URL+"/v1/audio/translations", body, "Content-Type", ct)
	got := readAll(t, resp)
	events := strings.SplitAfter(got, "\n\n")
	if resp.StatusCode != 200 || len(events) != 3 || events[0] != vllmTranscriptionStream[0] || events[2] != "" {
		t.Fatalf("%d %q", resp.StatusCode, got)
	}
	var e struct {
		Error struct{ Message, Type, Code string }
	}
	data, ok := strings.CutPrefix(strings.TrimSuffix(events[1], "\n\n"), "data: ")
	if !ok || json.Unmarshal([]byte(data), &e) != nil || e.Error.Message == "" {
		t.Fatalf("the cut stream ends with %q, want an in-band error event", events[1])
	}
	t.Logf("in-band error: %s", data)
}

// TestAudioStreamSim: through the simulator, vLLM's chunks and OpenAI's
// events (a gpt-4o model) both reach the client whole and ended: vLLM's
// with [DONE], OpenAI's with transcript.text.done and nothing after it (no
// error event for a missing [DONE]), whose token usage counts.
func TestAudioStreamSim(t *testing.T) {
	for _, model := range []string{"whisper", "gpt-4o-mini-transcribe"} {
		t.Run(model, func(t *testing.T) {
			_, be := simBackend(t, sim.Config{Model: model, DecodeStepBase: time.Millisecond, Seed: 7})
			cfg := testConfig(be.URL)
			cfg.Models[0].Name = model
			srv, _, logs := usageGateway(t, cfg)
			ct, body := audioForm(t, "file", strings.Repeat("x", 3200), "model", model, "stream", "True", "stream_include_usage", "true")
			resp := post(t, srv.URL+"/v1/audio/transcriptions", body, "Content-Type", ct)
			got := readAll(t, resp)
			events := strings.Split(strings.TrimSuffix(got, "\n\n"), "\n\n")
			last := events[len(events)-1]
			if resp.StatusCode != 200 || len(events) < sim.DefaultOutputTokens+1 || strings.Contains(got, `"error"`) {
				t.Fatalf("%d %q", resp.StatusCode, got)
			}
			in, out := accessTokens(t, logs.String(), "/v1/audio/transcriptions")
			if model == "whisper" {
				if last != "data: [DONE]" || !strings.Contains(events[0], `"object":"transcription.chunk"`) || in != 10 || out != sim.DefaultOutputTokens {
					t.Fatalf("vLLM stream: %q; tokens %d %d", got, in, out)
				}
				return
			}
			if !strings.HasPrefix(last, `data: {"type":"transcript.text.done"`) || in != 10 || out != sim.DefaultOutputTokens {
				t.Fatalf("OpenAI stream ends %q; tokens %d %d", last, in, out)
			}
		})
	}
}

// TestAudioStreamIgnored: whisper-1 ignores stream=true and answers JSON;
// the client gets that answer as it came (OpenAI's own behaviour), not a
// 502 for a chat completion that is not there to convert.
func TestAudioStreamIgnored(t *testing.T) {
	const answer = `{"text":"a sluice gate","usage":{"type":"duration","seconds":2}}`
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, answer)
	}))
	t.Cleanup(be.Close)
	srv, _ := startGateway(t, testConfig(be.URL))
	ct, body := audioForm(t, "file", "x", "model", "m1", "stream", "true")
	resp := post(t, srv.URL+"/v1/audio/transcriptions", body, "Content-Type", ct)
	if got := readAll(t, resp); resp.StatusCode != 200 || got != answer || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("%d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), got)
	}
}

// TestAudioStreamNeverHedged: with hedging on (the default) and a first
// backend whose stream stalls after its head, a chat stream is hedged to
// the other backend (the control, last), but a streamed transcription is
// not: a hedge would transcribe the whole file again on a second backend
// (hedgeAfter's exclusion). The stalled backend holds the transcription
// for a window a hundred times the hedge delay (10 ms, the floor, after
// these fast warm-ups), then sends its stream, which the client must get
// whole, from it. Should the other backend be sent the transcription (a
// hedge) first, the stalled one never answers, so the hedge's stream
// reaches the client and the test fails at once. A loaded machine can
// only delay a hedge past the window (a pass), never fail a right build.
func TestAudioStreamNeverHedged(t *testing.T) {
	var stall atomic.Bool
	fast := sim.New(sim.Config{Model: "m1", DecodeStepBase: time.Millisecond})
	t.Cleanup(fast.Close)
	quit := make(chan struct{})
	var hedges atomic.Int64 // audio requests the healthy backend was sent
	hedged := make(chan struct{}, 1)
	audioHeld := make(chan struct{}, 1)
	turned := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !stall.Load() {
			fast.ServeHTTP(w, r)
			return
		}
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		if !strings.HasPrefix(r.URL.Path, "/v1/audio/") { // the control: a chat stream that never starts
			select {
			case <-r.Context().Done():
			case <-quit:
			}
			return
		}
		audioHeld <- struct{}{}
		window := time.NewTimer(time.Second)
		defer window.Stop()
		select {
		case <-hedged: // lose the race: the client gets the hedge's answer
			<-r.Context().Done()
			return
		case <-window.C:
		case <-r.Context().Done():
			return
		}
		for _, ev := range vllmTranscriptionStream {
			io.WriteString(w, ev)
		}
	}))
	t.Cleanup(func() { close(quit); turned.Close() })
	healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/audio/") {
			hedges.Add(1)
			select {
			case hedged <- struct{}{}:
			default:
			}
		}
		fast.ServeHTTP(w, r)
	}))
	t.Cleanup(healthy.Close)

	cfg := testConfig(turned.URL, healthy.URL) // round_robin: turned, healthy, turned, ...
	var reg *prometheus.Registry
	// Hedging is on by default.
	srv, _ := startGatewayWith(t, cfg, func(d *Deps) { reg = d.Registry.(*prometheus.Registry) })
	for range 2 { // both learn a typical time to first token
		if resp := post(t, srv.URL+"/v1/chat/completions", streamChatBody); !strings.HasSuffix(readAll(t, resp), "data: [DONE]\n\n") {
			t.Fatal("warm-up stream did not complete")
		}
	}
	stall.Store(true)
	ct, body := audioForm(t, "file", strings.Repeat("x", 3200), "model", "m1", "stream", "true")
	// Round robin sends the transcription to the stalled backend first,
	// unless a warm-up stream slow enough on a loaded machine to be hedged
	// moved the rotation on: then it went to the healthy one as its first
	// pick (the stalled backend never saw it), and the next one goes to the
	// stalled backend.
	var resp *http.Response
	var got string
	for attempt := 1; ; attempt++ {
		resp = post(t, srv.URL+"/v1/audio/transcriptions", body, "Content-Type", ct)
		got = readAll(t, resp)
		held := false
		select {
		case <-audioHeld:
			held = true
		default:
		}
		if held {
			break
		}
		if attempt == 2 {
			t.Fatalf("the stalled backend never held the transcription: %d %q", resp.StatusCode, got)
		}
		hedges.Store(0) // a first pick, not a hedge
		select {
		case <-hedged:
		default:
		}
	}
	if resp.StatusCode != 200 || got != strings.Join(vllmTranscriptionStream, "") {
		t.Fatalf("%d %q; want the stalled backend's stream, whole", resp.StatusCode, got)
	}
	if by, want := resp.Header.Get("X-Sluice-Backend"), strings.TrimPrefix(turned.URL, "http://"); by != want {
		t.Fatalf("served by %q, want the first backend %q (no hedge)", by, want)
	}
	if n := hedges.Load(); n != 0 {
		t.Fatalf("the other backend was sent the transcription %d times: it was hedged", n)
	}

	// The control: the same gateway hedges a chat stream off the stalled
	// backend. Round robin brings one of any two streams to it; counted
	// from here, as a warm-up may have been hedged on a loaded machine.
	before := metricValueOrZero(t, reg, "sluice_hedges_total", "event", "won")
	for range 2 {
		resp = post(t, srv.URL+"/v1/chat/completions", streamChatBody)
		if body := readAll(t, resp); resp.StatusCode != 200 || !strings.HasSuffix(body, "data: [DONE]\n\n") {
			t.Fatalf("control chat stream: %d %q; want a whole stream", resp.StatusCode, body)
		}
	}
	if n := metricValue(t, reg, "sluice_hedges_total", "event", "won") - before; n < 1 {
		t.Fatalf("control: sluice_hedges_total{event=won} rose by %v over two chat streams; want at least 1 (the setup hedges chat streams)", n)
	}
}

// openaiTranscriptionStream is OpenAI's stream for gpt-4o-transcribe
// (transcript.text.delta events, then transcript.text.done with the text
// and the token usage; no [DONE]).
var openaiTranscriptionStream = []string{
	`data: {"type":"transcript.text.delta","delta":"a sluice"}` + "\n\n",
	`data: {"type":"transcript.text.delta","delta":" gate"}` + "\n\n",
	`data: {"type":"transcript.text.done","text":"a sluice gate","usage":{"type":"tokens","input_tokens":14,"output_tokens":45,"total_tokens":59}}` + "\n\n",
}

// TestAudioStreamToPlainRequest: a backend that streams although the
// request did not ask it to gets its events turned into the JSON
// transcription the client asked for (not a chat completion, not a
// 502), in either backend's format, its usage counted; one that cuts its
// stream, or streams a verbose_json request, is a 502 in OpenAI's error
// shape.
func TestAudioStreamToPlainRequest(t *testing.T) {
	for _, tc := range []struct {
		name   string
		events []string
		want   string
		in     int
		out    int
	}{
		{"vLLM", vllmTranscriptionStream, `{"text":"a sluice gate","usage":{"type":"tokens","input_tokens":17,"output_tokens":3,"total_tokens":20}}`, 17, 3},
		{"OpenAI", openaiTranscriptionStream, `{"text":"a sluice gate","usage":{"type":"tokens","input_tokens":14,"output_tokens":45,"total_tokens":59}}`, 14, 45},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			close(release)
			be := scriptedStream(t, tc.events, len(tc.events), release, false, nil)
			srv, _, logs := usageGateway(t, testConfig(be.URL))
			ct, body := audioForm(t, "file", strings.Repeat("x", 3200), "model", "m1")
			resp := post(t, srv.URL+"/v1/audio/transcriptions", body, "Content-Type", ct)
			got := readAll(t, resp)
			if resp.StatusCode != 200 || got != tc.want || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("%d %q %s\nwant 200 application/json %s", resp.StatusCode, resp.Header.Get("Content-Type"), got, tc.want)
			}
			if in, out := accessTokens(t, logs.String(), "/v1/audio/transcriptions"); in != tc.in || out != tc.out {
				t.Fatalf("access line tokens in %d out %d, want %d and %d", in, out, tc.in, tc.out)
			}
		})
	}
	// verbose_json asks for segments, language and duration, which no
	// stream carries: a 502, not a bare {"text"} passing for the answer.
	t.Run("verbose_json", func(t *testing.T) {
		release := make(chan struct{})
		close(release)
		be := scriptedStream(t, vllmTranscriptionStream, len(vllmTranscriptionStream), release, false, nil)
		srv, _ := startGateway(t, testConfig(be.URL))
		ct, body := audioForm(t, "file", "x", "model", "m1", "response_format", "verbose_json")
		resp := post(t, srv.URL+"/v1/audio/transcriptions", body, "Content-Type", ct)
		if got := readAll(t, resp); resp.StatusCode != http.StatusBadGateway || !strings.Contains(got, `"code":"upstream_bad_response"`) {
			t.Fatalf("%d %s; want a 502 upstream_bad_response", resp.StatusCode, got)
		}
	})
	t.Run("cut", func(t *testing.T) {
		release := make(chan struct{})
		close(release)
		be := scriptedStream(t, vllmTranscriptionStream, 1, release, true, nil)
		srv, _ := startGateway(t, testConfig(be.URL))
		ct, body := audioForm(t, "file", "x", "model", "m1")
		resp := post(t, srv.URL+"/v1/audio/translations", body, "Content-Type", ct)
		got := readAll(t, resp)
		var e struct {
			Error struct{ Message, Type, Code string }
		}
		if resp.StatusCode != http.StatusBadGateway || json.Unmarshal([]byte(got), &e) != nil || e.Error.Type != "server_error" || e.Error.Code == "" {
			t.Fatalf("%d %s; want a 502 OpenAI error", resp.StatusCode, got)
		}
		t.Logf("cut stream: %d %s", resp.StatusCode, got)
	})
}
