package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/h1client"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// pipeBackend answers, on in-memory connections (every write of the
// backend reaches the reader as one read, unless the read is smaller),
// each request with answer(request number on the connection).
type pipeBackend struct {
	answer func(n int) [][]byte // the answer's pieces, each one write
	wg     sync.WaitGroup
	// first requests: each connection's first answer waits until two
	// connections have their first request, so two streams are open at
	// once (neither reuses the other's connection).
	mu     sync.Mutex
	firsts int
	both   chan struct{}
}

func (p *pipeBackend) dial(context.Context, string, string) (net.Conn, error) {
	client, server := net.Pipe()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer server.Close()
		r := bufio.NewReader(server)
		for n := 0; ; n++ {
			req, err := http.ReadRequest(r)
			if err != nil {
				return
			}
			if _, err := io.Copy(io.Discard, req.Body); err != nil {
				return
			}
			if n == 0 {
				p.mu.Lock()
				if p.firsts++; p.firsts == 2 {
					close(p.both)
				}
				p.mu.Unlock()
				select {
				case <-p.both:
				case <-time.After(time.Minute): // hang guard
					return
				}
			}
			for _, piece := range p.answer(n) {
				if _, err := server.Write(piece); err != nil {
					return
				}
			}
		}
	}()
	return client, nil
}

// chunkedAt frames stream as a chunked event-stream answer, one chunk
// (and one write) per piece between the cuts (offsets into stream).
func chunkedAt(stream string, cuts []int) [][]byte {
	pieces := [][]byte{[]byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")}
	prev := 0
	for _, c := range append(cuts, len(stream)) {
		if c <= prev || c > len(stream) {
			continue
		}
		pieces = append(pieces, fmt.Appendf(nil, "%x\r\n%s\r\n", c-prev, stream[prev:c]))
		prev = c
	}
	return append(pieces, []byte("0\r\n\r\n"))
}

// lengthAt frames stream with a Content-Length, written in pieces cut at
// the offsets given.
func lengthAt(stream string, cuts []int) [][]byte {
	pieces := [][]byte{fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n", len(stream))}
	prev := 0
	for _, c := range append(cuts, len(stream)) {
		if c <= prev || c > len(stream) {
			continue
		}
		pieces = append(pieces, []byte(stream[prev:c]))
		prev = c
	}
	return pieces
}

// A stream relayed through the lean client whose backend's writes cut it
// at offsets around the relay's read buffers (1, 4 and 32 KiB) and the
// upstream connection's (1 and 4 KiB) reaches the client byte for byte,
// two at a time on one client (the buffers one lends, the other takes),
// and the connection then carries a second stream as whole: the buffer
// switches drop, reorder or keep no byte.
func TestStreamCutAroundBuffersPassesWhole(t *testing.T) {
	var sb strings.Builder
	for i := range 40 {
		fmt.Fprintf(&sb, "data: {\"choices\":[{\"delta\":{\"content\":\"%s\"}}]}\n\n", strings.Repeat("t", 150+i*37%120))
		if i == 20 {
			fmt.Fprintf(&sb, "data: {\"choices\":[{\"delta\":{\"content\":\"%s\"}}]}\r\r", strings.Repeat("L", 40<<10))
		}
	}
	sb.WriteString("data: [DONE]\n\n")
	stream := sb.String()
	short := "data: {\"choices\":[{\"delta\":{\"content\":\"again\"}}]}\n\ndata: [DONE]\n\n"
	b, err := endpoint.New(endpoint.Spec{URL: "http://127.0.0.1:21601"}, endpoint.HealthPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	bodies := proxy.NewBodyPool(nil)
	raw := `{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`
	for name, frame := range map[string]func(string, []int) [][]byte{"chunked": chunkedAt, "length": lengthAt} {
		for _, around := range []int{1 << 10, 4 << 10, 32 << 10} {
			for d := -2; d <= 2; d++ {
				// Two cuts: one at the boundary, one a boundary later.
				cuts := []int{around + d, 2*around + d, 2*around + (4 << 10) + d}
				pb := &pipeBackend{both: make(chan struct{}), answer: func(n int) [][]byte {
					if n == 0 {
						return frame(stream, cuts)
					}
					return frame(short, nil)
				}}
				lean := h1client.New(h1client.Options{Dial: pb.dial})
				f := proxy.NewForwarder(proxy.Options{Transport: lean,
					Timeouts: proxy.Timeouts{FirstByte: time.Minute, StreamIdle: time.Minute, Total: time.Minute}})
				forward := func() (string, error) {
					body, err := bodies.ReadBody(strings.NewReader(raw), int64(len(raw)), 1<<20)
					if err != nil {
						return "", err
					}
					defer body.Release()
					w := httptest.NewRecorder()
					res := f.Forward(context.Background(), w, &proxy.Request{Path: "/v1/chat/completions", Header: http.Header{},
						Body: body, Peek: openai.Peek{Model: "m", Stream: true}, ServeModel: "m"}, fixedSelector{b})
					return w.Body.String(), res.Err
				}
				var wg sync.WaitGroup
				var got [2]string
				var errs [2]error
				for i := range got {
					wg.Add(1)
					go func() {
						defer wg.Done()
						got[i], errs[i] = forward()
					}()
				}
				wg.Wait()
				for i := range got {
					if errs[i] != nil || got[i] != stream {
						t.Fatalf("%s cuts %v, stream %d: %d bytes relayed (err %v), want the %d sent: %.300q", name, cuts, i, len(got[i]), errs[i], len(stream), got[i])
					}
				}
				for i := range 2 {
					if again, err := forward(); err != nil || again != short {
						t.Fatalf("%s cuts %v: stream %d on a reused connection: %q, %v", name, cuts, i, again, err)
					}
				}
				if st := lean.Stats(); st.Dials != 2 {
					t.Fatalf("%s cuts %v: %d dials, want 2 (each connection reused)", name, cuts, st.Dials)
				}
				lean.CloseIdleConnections()
				pb.wg.Wait()
			}
		}
	}
}
