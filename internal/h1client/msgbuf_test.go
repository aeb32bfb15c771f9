package h1client

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
)

// A held stream's connection keeps no copy of the request it sent: the
// message (head and body, up to WriteBufferSize) is written before the
// response's head is read, so its buffer goes back to the client's pool
// as RoundTrip returns. Kept by the connection, every held stream kept its
// prompt (chat histories and RAG prompts of 8-32 KiB) for the stream's
// life. The figure is the heap a held stream costs with a 24 KiB prompt
// over one with a 2-byte prompt, both sharing their body's bytes with the
// test: the connection's copy is the whole difference.
func TestHeldStreamKeepsNoCopyOfItsRequest(t *testing.T) {
	const streams = 100
	event := "data: {\"choices\":[{\"delta\":{\"content\":\"tok\"}}]}\n\n"
	quit := make(chan struct{})
	srv := newRawServer(t, func(_ int, c net.Conn, r *bufio.Reader) {
		if _, err := readRequest(r); err != nil {
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(event), event)
		<-quit // the stream is held: no more events, no end
	})
	t.Cleanup(func() { close(quit) }) // before the server's cleanup waits for it
	hold := func(body string) (perStream float64) {
		c := newClient(t, Options{})
		var before, after runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&before)
		held := make([]*http.Response, 0, streams)
		p := make([]byte, 1024)
		for range streams {
			resp, err := c.RoundTrip(post(t, context.Background(), srv.url(), body))
			if err != nil {
				t.Fatal(err)
			}
			if n, err := io.ReadAtLeast(resp.Body, p, len(event)); err != nil || string(p[:n]) != event {
				t.Fatalf("first event %q, %v", p[:n], err)
			}
			held = append(held, resp)
		}
		runtime.GC()
		runtime.GC() // a pooled buffer is dropped by the second
		runtime.ReadMemStats(&after)
		perStream = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / streams
		for _, resp := range held {
			resp.Body.Close()
		}
		return perStream
	}
	small := hold("{}")
	large := hold(`{"p":"` + strings.Repeat("x", 24<<10) + `"}`)
	t.Logf("heap per held stream: %.0f bytes with a 2-byte prompt, %.0f with a 24 KiB one", small, large)
	if extra := large - small; extra > 4<<10 {
		t.Fatalf("a held stream with a 24 KiB prompt costs %.0f bytes more than one with a 2-byte prompt: its connection keeps a copy of the request", extra)
	}
}
