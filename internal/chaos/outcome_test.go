package chaos

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestAnnouncedError(t *testing.T) {
	openai := []byte(`{"error":{"message":"busy","type":"server_error","param":null,"code":"busy"}}`)
	withRA := http.Header{"Retry-After": {"2"}}
	cases := []struct {
		name   string
		status int
		h      http.Header
		body   []byte
		want   bool
	}{
		{"400 OpenAI-shaped", 400, nil, openai, true},
		{"503 with Retry-After", 503, withRA, openai, true},
		{"503 with an HTTP-date Retry-After", 503, http.Header{"Retry-After": {"Wed, 21 Oct 2037 07:28:00 GMT"}}, openai, true},
		{"429 without Retry-After", 429, nil, openai, false},
		{"503 with a bad Retry-After", 503, http.Header{"Retry-After": {"soon"}}, openai, false},
		{"431 plain text", 431, nil, []byte("431 Request Header Fields Too Large"), false},
		{"error without type", 400, nil, []byte(`{"error":{"message":"x"}}`), false},
		{"empty body", 502, nil, nil, false},
	}
	for _, c := range cases {
		if got, why := announcedError(c.status, c.h, c.body); got != c.want {
			t.Errorf("%s: announced %v (%s), want %v", c.name, got, why, c.want)
		}
	}
}

// TestStreamRequestClassifies checks the client's verdict on real loopback
// answers: a complete stream, an error event, a cut stream, a garbage 200
// and a hang.
func TestStreamRequestClassifies(t *testing.T) {
	chunk := "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n"
	cases := map[string]struct {
		handler http.HandlerFunc
		want    outcome
	}{
		"complete": {func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, chunk+"data: [DONE]\n\n")
		}, served},
		"error event": {func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, chunk+`data: {"error":{"message":"backend failed","type":"server_error"}}`+"\n\n")
		}, refused},
		"cut": {func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, chunk)
		}, unannounced},
		"garbage 200": {func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, "<html>")
		}, unannounced},
		"503 announced": {func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(503)
			io.WriteString(w, `{"error":{"message":"busy","type":"server_error"}}`)
		}, refused},
	}
	for name, c := range cases {
		srv := httptest.NewServer(c.handler)
		got, _, why := streamRequest(context.Background(), srv.Client(), srv.URL, chatBody("x", 2, 2, true))
		srv.Close()
		if got != c.want {
			t.Errorf("%s: outcome %d (%s), want %d", name, got, why, c.want)
		}
	}

	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer hang.Close()
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if got, _, why := streamRequest(ctx, hang.Client(), hang.URL, chatBody("x", 2, 2, true)); got != unannounced || why != "hang (no end within the client timeout)" {
		t.Errorf("hang: outcome %d (%s)", got, why)
	}
}

// TestP99SinceSamplesEachInterval: the soak's per-interval p99 counts only
// the requests served since the last sample, so a slow first interval does
// not hide a fast second one (or the other way round).
func TestP99SinceSamplesEachInterval(t *testing.T) {
	var tl tally
	for range 100 {
		tl.add(served, 900*time.Millisecond, "")
	}
	tl.add(refused, 0, "")
	p99, seen := tl.p99Since(0)
	if p99 != 900*time.Millisecond || seen != 100 {
		t.Fatalf("first interval: p99 %v over %d served; want 900ms over 100", p99, seen)
	}
	for range 100 {
		tl.add(served, 50*time.Millisecond, "")
	}
	if p99, seen = tl.p99Since(seen); p99 != 50*time.Millisecond || seen != 200 {
		t.Fatalf("second interval: p99 %v, %d served in all; want 50ms, 200", p99, seen)
	}
	if p99, seen = tl.p99Since(seen); p99 != 0 || seen != 200 {
		t.Fatalf("empty interval: p99 %v, %d served; want 0, 200", p99, seen)
	}
}
