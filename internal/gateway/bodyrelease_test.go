package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/openai"
)

// firstEventBackend reads each request whole and hands it to got, sends
// the stream's head and its first text event, waits for release, then
// sends one more and ends the stream (no usage).
func firstEventBackend(t *testing.T, got chan<- string, release <-chan struct{}) *httptest.Server {
	t.Helper()
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("backend read: %v", err)
		}
		got <- string(b)
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		io.WriteString(w, firstEvent("first "))
		fl.Flush()
		<-release
		io.WriteString(w, firstEvent("second ")+"data: [DONE]\n\n")
	}))
	t.Cleanup(be.Close)
	return be
}

func firstEvent(text string) string {
	return fmt.Sprintf("data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":%q},\"finish_reason\":null}]}\n\n", text)
}

// A held stream used to hold its request body (a pooled buffer of the
// body's size: 16 KiB for a 16 KiB prompt, 64 KiB for 64 KiB) until the
// stream ended, though nothing sends it again once the stream is under
// way. Now the relay gives it back once the head and first event are
// flushed (proxy.Request.ReleaseBody): the gateway's body bytes are 0
// while the stream is held. The body's users after that point keep
// working on what they took before it: the backend got the body byte for
// byte, the stream arrives whole, and the token limit settles the
// stream (no usage) at the prompt's estimate from the body's length plus
// the text relayed. The gateway's test pool poisons released bodies
// (helpers_test.go), so a later read of one panics and a slice kept of
// it reads garbage.
func TestHeldStreamGivesItsBodyBack(t *testing.T) {
	for _, size := range []int{1 << 10, 16 << 10, 64 << 10, 200 << 10} {
		t.Run(strconv.Itoa(size>>10)+"KiB", func(t *testing.T) {
			got, release := make(chan string, 2), make(chan struct{})
			be := firstEventBackend(t, got, release)
			limit := int64(10_000_000)
			cfg := testConfig(be.URL)
			cfg.RateLimits.PerKey = config.RateRule{TokensPerMinute: &limit}
			clk := &frozenClock{now: time.Now()}
			var reg *prometheus.Registry
			srv, _ := startGatewayWith(t, cfg, func(d *Deps) { d.Now, reg = clk.Now, d.Registry.(*prometheus.Registry) })
			url := srv.URL + "/v1/chat/completions"
			openAtCleanup(t, release) // before the servers close (cleanups run last first)

			head := `{"model":"m1","messages":[{"role":"user","content":"`
			tail := `"}],"stream":true}`
			body := head + strings.Repeat("x", size-len(head)-len(tail)) + tail
			resp := post(t, url, body, "Authorization", "Bearer k")
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, readAll(t, resp))
			}
			before, err := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
			if err != nil {
				t.Fatalf("no x-ratelimit-remaining-tokens: %v", resp.Header)
			}
			if sent := <-got; sent != body {
				t.Fatalf("the backend got %d bytes, want the client's %d", len(sent), len(body))
			}
			rd := bufio.NewReader(resp.Body)
			first, err := rd.ReadString('\n')
			if err != nil || first+"\n" != firstEvent("first ") {
				t.Fatalf("first event %q (%v)", first, err)
			}
			waitUntil(t, "the held stream's body to be given back", func() bool {
				return metricValue(t, reg, "sluice_request_body_bytes") == 0
			})
			close(release)
			rest, err := io.ReadAll(rd)
			if err != nil {
				t.Fatal(err)
			}
			if want := "\n" + firstEvent("second ") + "data: [DONE]\n\n"; string(rest) != want {
				t.Fatalf("rest of the stream %q, want %q", rest, want)
			}
			charged, _ := settledCharge(t, url, body, before)
			events, text := relayedText(first + string(rest))
			if want := int(admission.EstimateCost(len(body), 0, 0)) + int(openai.CompletionTokens(events, text)); events != 2 || charged != want {
				t.Fatalf("charged %d for %d text events, want %d (the %d-byte prompt's estimate and the text)", charged, events, want, len(body))
			}
			if h := metricValue(t, reg, "sluice_request_body_bytes"); h != 0 {
				t.Fatalf("%v body bytes held after the stream", h)
			}
		})
	}
}
