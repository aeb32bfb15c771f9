package h1client

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkBodies sends a small body (in the message: one write) and a
// 256 KiB one (streamed after the head) to a loopback server that reads
// them and answers, on one kept-alive connection: the allocations per
// exchange of each path.
func BenchmarkBodies(b *testing.B) {
	srv := newRawServer(b, func(_ int, c net.Conn, r *bufio.Reader) {
		for {
			if _, err := readRequest(r); err != nil {
				return
			}
			c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
		}
	})
	for _, bc := range []struct {
		name string
		size int
	}{{"1KiB", 1 << 10}, {"256KiB", 256 << 10}} {
		b.Run(bc.name, func(b *testing.B) {
			body := strings.NewReader(strings.Repeat("x", bc.size))
			req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.url(), body)
			if err != nil {
				b.Fatal(err)
			}
			c := New(Options{})
			defer c.CloseIdleConnections()
			p := make([]byte, 16)
			b.SetBytes(int64(bc.size))
			b.ReportAllocs()
			for b.Loop() {
				body.Seek(0, io.SeekStart)
				resp, err := c.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				for err == nil {
					_, err = resp.Body.Read(p)
				}
				if err != io.EOF {
					b.Fatal(err)
				}
			}
			if st := c.Stats(); st.Dials != 1 {
				b.Fatalf("%d dials, want the one connection kept alive", st.Dials)
			}
		})
	}
}
