package h1client

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// cutAt splits raw at the offsets given (ascending, within raw).
func cutAt(raw []byte, cuts ...int) [][]byte {
	var out [][]byte
	prev := 0
	for _, c := range cuts {
		if c > prev && c < len(raw) {
			out = append(out, raw[prev:c])
			prev = c
		}
	}
	return append(out, raw[prev:])
}

// TestTierSwitchKeepsBytesAndReuse: two connections of one client stream
// bodies cut at every offset around the tiny (1 KiB) and small (4 KiB)
// buffers' sizes, read alternately (so a small buffer one lends is taken
// by the other), in the sizes the relay reads; every byte arrives in
// order, and each connection then carries a second request whose head
// and body are read whole (the last read of the first lent the buffer).
func TestTierSwitchKeepsBytesAndReuse(t *testing.T) {
	body := func(seed byte, n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = seed + byte(i%23)
		}
		return b
	}
	const L = 5000
	framings := map[string]func(p []byte) []byte{
		"length": func(p []byte) []byte {
			return append([]byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(p))), p...)
		},
		"chunked": func(p []byte) []byte {
			return append([]byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n", len(p))), append(p, "\r\n0\r\n\r\n"...)...)
		},
		"events+trailer": func(p []byte) []byte {
			var b bytes.Buffer
			b.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
			for len(p) > 0 {
				n := min(len(p), 250)
				fmt.Fprintf(&b, "%x\r\n%s\r\n", n, p[:n])
				p = p[n:]
			}
			b.WriteString("0\r\nX-Trailer: " + strings.Repeat("t", 1500) + "\r\n\r\n")
			return b.Bytes()
		},
	}
	var cuts []int
	for _, around := range []int{tinyReadBuffer, smallReadBuffer} {
		for d := -6; d <= 6; d++ {
			cuts = append(cuts, around+d)
		}
	}
	for name, frame := range framings {
		for _, rs := range []int{1 << 10, 300, 4 << 10} {
			for _, cut := range cuts {
				want := [2][]byte{body('a', L), body('A', L)}
				raws := [2][]byte{frame(want[0]), frame(want[1])}
				head := bytes.Index(raws[0], []byte("\r\n\r\n")) + 4
				dial := func(_ context.Context, _, _ string) (net.Conn, error) {
					client, server := net.Pipe()
					go serveTwice(server, raws, head, cut)
					return client, nil
				}
				c := New(Options{Dial: dial})
				var resps [2]*http.Response
				for i := range resps {
					resp, err := c.RoundTrip(get(t, context.Background(), fmt.Sprintf("http://backend%d/", i)))
					if err != nil {
						t.Fatalf("%s rs=%d cut=%d: %v", name, rs, cut, err)
					}
					resps[i] = resp
				}
				var got [2]bytes.Buffer
				var done [2]bool
				p := make([]byte, rs)
				for !done[0] || !done[1] {
					for i := range resps {
						if done[i] {
							continue
						}
						n, err := resps[i].Body.Read(p)
						got[i].Write(p[:n])
						if err == io.EOF {
							done[i] = true
						} else if err != nil {
							t.Fatalf("%s rs=%d cut=%d conn %d: %v", name, rs, cut, i, err)
						}
					}
				}
				for i := range want {
					if !bytes.Equal(got[i].Bytes(), want[i]) {
						t.Fatalf("%s rs=%d cut=%d conn %d: body of %d bytes differs from the %d sent", name, rs, cut, i, got[i].Len(), len(want[i]))
					}
				}
				for i := range resps {
					resp, err := c.RoundTrip(get(t, context.Background(), fmt.Sprintf("http://backend%d/", i)))
					if err != nil {
						t.Fatalf("%s rs=%d cut=%d: second request on conn %d: %v", name, rs, cut, i, err)
					}
					if b := readAll(t, resp); b != "hello" {
						t.Fatalf("%s rs=%d cut=%d: second answer on conn %d %q", name, rs, cut, i, b)
					}
				}
				if st := c.Stats(); st.Dials != 2 {
					t.Fatalf("%s rs=%d cut=%d: %d dials, want 2", name, rs, cut, st.Dials)
				}
				c.CloseIdleConnections()
			}
		}
	}
}

// serveTwice answers a pipe's first request with raws[0] (its body cut at
// head+cut and head+2*cut) and its second with a short answer.
func serveTwice(server net.Conn, raws [2][]byte, head, cut int) {
	defer server.Close()
	r := bufio.NewReader(server)
	req, err := readRequest(r)
	if err != nil {
		return
	}
	raw := raws[0]
	if req.Host == "backend1" {
		raw = raws[1]
	}
	for _, piece := range cutAt(raw, head+cut, head+2*cut) {
		if _, err := server.Write(piece); err != nil {
			return
		}
	}
	if _, err := readRequest(r); err != nil {
		return
	}
	io.WriteString(server, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
}
