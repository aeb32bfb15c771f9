package sim

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestFaultErrorRate(t *testing.T) {
	cfg := fastConfig()
	cfg.Faults.ErrorRate = 1
	s, url := startSim(t, cfg)
	status, body := postRead(t, url+"/v1/chat/completions", chatBody("hi", 3, ""))
	if status != http.StatusInternalServerError {
		t.Fatalf("status %d", status)
	}
	if e := decode[errorBody](t, body); e.Error.Type != "server_error" || e.Error.Message == "" {
		t.Errorf("error body %s", body)
	}
	if st := s.Stats(); st.Errors != 1 || st.Completed != 0 {
		t.Errorf("stats %+v", st)
	}

	// Clearing the faults at run time through the HTTP knob.
	status, body = postRead(t, url+"/sim/faults", `{}`)
	if status != http.StatusOK || !strings.Contains(string(body), `"error_rate":0`) {
		t.Fatalf("clearing faults: %d %s", status, body)
	}
	if status, _ := postRead(t, url+"/v1/chat/completions", chatBody("hi", 3, "")); status != http.StatusOK {
		t.Errorf("after clearing faults: %d", status)
	}
}

func TestFaultsEndpoint(t *testing.T) {
	s, url := startSim(t, fastConfig())
	status, body := postRead(t, url+"/sim/faults", `{"error_rate":0.25,"added_latency":"150ms","hang_rate":0.5,"disconnect_rate":1}`)
	if status != http.StatusOK {
		t.Fatalf("%d %s", status, body)
	}
	want := Faults{ErrorRate: 0.25, AddedLatency: 150 * time.Millisecond, HangRate: 0.5, DisconnectRate: 1}
	if got := s.Faults(); got != want {
		t.Errorf("faults %+v, want %+v", got, want)
	}
	if _, body := getRead(t, url+"/sim/faults"); !strings.Contains(string(body), `"added_latency":"150ms"`) {
		t.Errorf("GET /sim/faults: %s", body)
	}
	for _, bad := range []string{`{"error_rate":2}`, `{"added_latency":"soon"}`, `{"added_latency":"-1s"}`, `{"errorrate":1}`, `[`} {
		if status, _ := postRead(t, url+"/sim/faults", bad); status != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", bad, status)
		}
	}
	if got := s.Faults(); got != want {
		t.Errorf("a rejected update changed the faults: %+v", got)
	}
}

func TestFaultDrawsAreSeeded(t *testing.T) {
	cfg := fastConfig()
	cfg.Faults.ErrorRate = 0.5
	_, a := startSim(t, cfg)
	_, b := startSim(t, cfg)
	var seqA, seqB strings.Builder
	for range 24 {
		sa, _ := postRead(t, a+"/v1/completions", `{"prompt":"x","max_tokens":1}`)
		sb, _ := postRead(t, b+"/v1/completions", `{"prompt":"x","max_tokens":1}`)
		seqA.WriteByte("ok"[min(sa/500, 1)])
		seqB.WriteByte("ok"[min(sb/500, 1)])
	}
	if seqA.String() != seqB.String() {
		t.Errorf("same seed, different fault draws: %s vs %s", seqA.String(), seqB.String())
	}
	if n := strings.Count(seqA.String(), "k"); n < 4 || n > 20 {
		t.Errorf("error rate 0.5 gave %d errors in 24: %s", n, seqA.String())
	}
}

func TestFaultDisconnectStream(t *testing.T) {
	cfg := fastConfig()
	cfg.Faults.DisconnectRate = 1
	s, url := startSim(t, cfg)
	resp := post(t, t.Context(), url+"/v1/chat/completions", chatBody("cut me", 10, `,"stream":true`))
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	tokens := 0
	var err error
	for {
		var ev string
		if ev, err = readEvent(r); err != nil {
			break
		}
		if ev == "data: [DONE]" {
			t.Fatal("a cut stream must not end with [DONE]")
		}
		tokens++
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("stream ended with %v, want an abrupt cut (unexpected EOF)", err)
	}
	if tokens != 5 {
		t.Errorf("got %d token events before the cut, want half of 10", tokens)
	}
	waitFor(t, "disconnect counted and slot freed", func() bool {
		st := s.Stats()
		return st.Disconnected == 1 && st.Running == 0 && st.Completed == 0
	})
}

func TestFaultDisconnectNonStream(t *testing.T) {
	cfg := fastConfig()
	cfg.Faults.DisconnectRate = 1
	s, url := startSim(t, cfg)
	if _, _, err := tryPost(url+"/v1/chat/completions", chatBody("cut me", 4, "")); err == nil {
		t.Fatal("want a transport error from the cut connection")
	}
	waitFor(t, "disconnect counted", func() bool { return s.Stats().Disconnected == 1 && s.Stats().Running == 0 })
}

func TestFaultHangUntilClientCancels(t *testing.T) {
	hangUntilClientCancels(t, "/v1/chat/completions", chatBody("hang", 2, ""))
}

// hangUntilClientCancels posts body to path of a simulator that hangs every
// request: no answer comes before the client gives up, the request counts
// as cancelled, and it never reached the engine. The client gives up once
// the simulator counted the request (a 100 ms client timeout could end
// before a loaded machine had sent it: then nothing was cancelled).
func hangUntilClientCancels(t *testing.T, path, body string) {
	t.Helper()
	cfg := fastConfig()
	cfg.Faults.HangRate = 1
	s, url := startSim(t, cfg)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+path, strings.NewReader(body))
	answered := make(chan int, 1) // the status, 0 for none
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	waitFor(t, "the request received", func() bool { return s.Stats().Requests == 1 })
	cancel()
	if code := <-answered; code != 0 {
		t.Fatalf("a hung request answered %d", code)
	}
	waitFor(t, "hang counted as cancelled", func() bool { return s.Stats().Cancelled == 1 })
	if st := s.Stats(); st.PromptTokens != 0 {
		t.Errorf("a hung request reached the engine: %+v", st)
	}
}

func TestFaultAddedLatency(t *testing.T) {
	cfg := fastConfig()
	cfg.Faults.AddedLatency = 40 * time.Millisecond
	_, url := startSim(t, cfg)
	start := time.Now()
	if status, _ := postRead(t, url+"/v1/completions", `{"prompt":"x","max_tokens":1}`); status != http.StatusOK {
		t.Fatal(status)
	}
	// Only a lower bound: the latency is a timer, so it cannot be shorter.
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Errorf("answered after %v, want at least the added 40ms", d)
	}
}
