package h1client

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkChunkedBurst reads a 1 MiB answer of small chunks, all ahead of
// the reader, in 32 KiB reads as the stream relay does: the grown read
// buffer goes through the pool at every read that leaves at most 4 KiB.
func BenchmarkChunkedBurst(b *testing.B) {
	event := "data: {\"choices\":[{\"delta\":{\"content\":\"" + strings.Repeat("x", 150) + "\"}}]}\n\n"
	var sb strings.Builder
	sb.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
	for range (1 << 20) / len(event) {
		fmt.Fprintf(&sb, "%x\r\n%s\r\n", len(event), event)
	}
	sb.WriteString("0\r\n\r\n")
	answer := sb.String()
	answerB := []byte(answer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					if _, err := readRequest(r); err != nil {
						return
					}
					c.Write(answerB)
				}
			}()
		}
	}()
	c := New(Options{})
	defer c.CloseIdleConnections()
	p := make([]byte, 32<<10)
	url := "http://" + ln.Addr().String()
	b.SetBytes(int64(len(answer)))
	b.ReportAllocs()
	for b.Loop() {
		req, _ := newPost(url)
		resp, err := c.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := resp.Body.Read(p); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
		resp.Body.Close()
	}
}

func newPost(url string) (*http.Request, error) {
	return http.NewRequestWithContext(context.Background(), http.MethodPost, url, strings.NewReader("{}"))
}

// TestChunksCostNoAllocation: a chunked answer of 2,000 small chunks (a
// stream of 2,000 events) is read with the allocations of one exchange,
// not one more per chunk (each chunk's CRLF check allocated: 2,000 here).
func TestChunksCostNoAllocation(t *testing.T) {
	event := "data: {\"choices\":[{\"delta\":{\"content\":\"tok\"}}]}\n\n"
	var sb strings.Builder
	sb.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
	for range 2000 {
		fmt.Fprintf(&sb, "%x\r\n%s\r\n", len(event), event)
	}
	sb.WriteString("0\r\n\r\n")
	answer := []byte(sb.String())
	srv := newRawServer(t, func(_ int, c net.Conn, r *bufio.Reader) {
		for {
			if _, err := readRequest(r); err != nil {
				return
			}
			c.Write(answer)
		}
	})
	c := newClient(t, Options{})
	p := make([]byte, 32<<10)
	read := func() {
		req, err := newPost(srv.url())
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := resp.Body.Read(p); err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
	}
	read() // the connection dialled, then reused
	if allocs := testing.AllocsPerRun(20, read); allocs > 100 {
		t.Errorf("%.0f allocations to read 2,000 chunks, want those of one exchange (under 100)", allocs)
	}
}
