package gateway

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// cutOnceStreamBackends are two backends sharing one script: the first
// request either of them gets is read whole, answered with a stream's
// head and cut before its first event (the attempt fails before the
// client's answer is committed: a retry goes to the other backend); every
// later one is answered with stream, flushed event by event. bodies
// records the body of every request, in arrival order.
func cutOnceStreamBackends(t *testing.T, stream []string) (urls []string, bodies func() [][]byte) {
	var mu sync.Mutex
	var got [][]byte
	var calls atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("backend read: %v", err)
		}
		mu.Lock()
		got = append(got, b)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		if calls.Add(1) == 1 {
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler) // the connection cut before the first event
		}
		for _, ev := range stream {
			io.WriteString(w, ev)
			w.(http.Flusher).Flush()
		}
	})
	for range 2 {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL)
	}
	return urls, func() [][]byte {
		mu.Lock()
		defer mu.Unlock()
		return append([][]byte(nil), got...)
	}
}

// TestRetryAfterCutSendsTheSameBodyAndRelaysALongStream: a streamed
// request whose first backend cuts its stream before the first event is
// sent again, byte for byte, to the other (a body announced under 4 KiB
// is now read into a block of its own size, one over 4 KiB as before),
// and the stream the second one sends, 3,000 events and ~330 KiB,
// reaches the client byte for byte.
func TestRetryAfterCutSendsTheSameBodyAndRelaysALongStream(t *testing.T) {
	var stream []string
	for i := range 3000 {
		stream = append(stream, fmt.Sprintf("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"token %d %s\"}}]}\n\n", i, strings.Repeat("x", i%50)))
	}
	stream = append(stream, "data: [DONE]\n\n")
	want := strings.Join(stream, "")
	for _, tc := range []struct {
		name string
		body string
	}{
		{"90-byte body", `{"model":"m1","messages":[{"role":"user","content":"hi"}],"max_tokens":4000,"stream":true}`},
		{"127-byte body", `{"model":"m1","messages":[{"role":"user","content":"` + strings.Repeat("a", 127-88) + `"}],"max_tokens":4000,"stream":true}`},
		{"129-byte body", `{"model":"m1","messages":[{"role":"user","content":"` + strings.Repeat("a", 129-88) + `"}],"max_tokens":4000,"stream":true}`},
		{"5000-byte body", `{"model":"m1","messages":[{"role":"user","content":"` + strings.Repeat("b", 5000-88) + `"}],"max_tokens":4000,"stream":true}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			urls, bodies := cutOnceStreamBackends(t, stream)
			srv, _ := startGatewayWith(t, testConfig(urls...), nil)
			resp := post(t, srv.URL+"/v1/chat/completions", tc.body)
			got := readAll(t, resp)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, got)
			}
			if got != want {
				t.Fatalf("stream differs: got %d bytes, want %d", len(got), len(want))
			}
			sent := bodies()
			if len(sent) != 2 {
				t.Fatalf("%d backend calls, want 2 (the cut, then the retry)", len(sent))
			}
			for i, b := range sent {
				if !bytes.Equal(b, []byte(tc.body)) {
					t.Errorf("call %d sent %d bytes %q, want the client's %d", i+1, len(b), b, len(tc.body))
				}
			}
		})
	}
}
