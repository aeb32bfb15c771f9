package sim

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestInstantMode(t *testing.T) {
	s, url := startSim(t, Config{Instant: true, Model: "fast"})
	status, body := postRead(t, url+"/v1/chat/completions", `{"model":"fast","messages":[{"role":"user","content":"a b c"}],"max_tokens":500}`)
	if status != http.StatusOK {
		t.Fatalf("%d %s", status, body)
	}
	c := decode[chatCompletion](t, body)
	if c.Object != "chat.completion" || c.Model != "fast" || c.Choices[0].Message.Content != "the sluice gate opens " ||
		c.Choices[0].FinishReason != "length" || c.Usage != newUsage(3, 4, 0) {
		t.Errorf("instant chat: %s", body)
	}

	status, body = postRead(t, url+"/v1/completions", `{"prompt":"x y","stream":true,"stream_options":{"include_usage":true}}`)
	if status != http.StatusOK {
		t.Fatal(status)
	}
	evs := sseEvents(t, body)
	if len(evs) != 7 || evs[6] != "[DONE]" || !strings.Contains(evs[5], `"usage":{"prompt_tokens":2,"completion_tokens":4,"total_tokens":6}`) {
		t.Fatalf("instant stream: %q", evs)
	}
	var text strings.Builder
	for _, ev := range evs[:4] {
		text.WriteString(decode[chunk](t, []byte(ev)).Choices[0].Text)
	}
	if text.String() != "the sluice gate opens " {
		t.Errorf("streamed %q", text.String())
	}

	status, body = postRead(t, url+"/v1/chat/completions", `{"messages":[],"stream":true}`)
	if evs := sseEvents(t, body); status != 200 || len(evs) != 6 || !strings.Contains(evs[0], `"role":"assistant"`) {
		t.Errorf("instant chat stream: %q", evs)
	}
	if status, _ := postRead(t, url+"/v1/chat/completions", `{"model":"slow","messages":[]}`); status != http.StatusNotFound {
		t.Errorf("wrong model in instant mode: %d", status)
	}
	if status, _ := postRead(t, url+"/v1/chat/completions", `{`); status != http.StatusBadRequest {
		t.Errorf("bad JSON in instant mode: %d", status)
	}
	waitFor(t, "completions counted", func() bool { return s.Stats().Completed == 3 })
	st := s.Stats()
	if st.Completed != 3 || st.Running != 0 || st.GeneratedTokens != 12 {
		t.Errorf("stats %+v", st)
	}
}

func TestInstantDisconnect(t *testing.T) {
	s, url := startSim(t, Config{Instant: true, Faults: Faults{DisconnectRate: 1}})
	resp := post(t, t.Context(), url+"/v1/chat/completions", `{"messages":[],"stream":true}`)
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	n := 0
	for {
		ev, err := readEvent(r)
		if err != nil {
			break
		}
		if ev == "data: [DONE]" {
			t.Fatal("cut stream ended with [DONE]")
		}
		n++
	}
	if n != 2 {
		t.Errorf("%d events before the cut, want 2", n)
	}
	waitFor(t, "disconnect counted", func() bool { return s.Stats().Disconnected == 1 })
}

const benchChat = `{"model":"sim-model","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello to the gateway benchmark."}],"max_tokens":16}`

// BenchmarkInstantHandler measures the simulator's own cost per request,
// without the network: what it takes from a shared CPU during gateway
// overhead benchmarks.
func BenchmarkInstantHandler(b *testing.B) {
	for _, stream := range []bool{false, true} {
		name, body := "json", benchChat
		if stream {
			name, body = "stream", strings.Replace(benchChat, `"max_tokens"`, `"stream":true,"max_tokens"`, 1)
		}
		b.Run(name, func(b *testing.B) {
			s := New(Config{Instant: true})
			defer s.Close()
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body))
				s.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatal(w.Code)
				}
			}
		})
	}
}

// BenchmarkInstantHTTP measures full loopback round trips against Instant
// mode: the "fast backend" baseline for proxy overhead.
func BenchmarkInstantHTTP(b *testing.B) {
	_, url := startSim(b, Config{Instant: true})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.Cleanup(client.CloseIdleConnections)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(benchChat))
			if err != nil {
				b.Error(err)
				return
			}
			var buf [1024]byte
			for {
				if _, err := resp.Body.Read(buf[:]); err != nil {
					break
				}
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Error(resp.StatusCode)
				return
			}
		}
	})
}
