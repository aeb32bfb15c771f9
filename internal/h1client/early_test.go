package h1client

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// A backend may answer before it has read the request body — a body
// limit's 413, an auth proxy's 401 — and close the connection over the
// rest, which the client's write then meets as a reset. The answer it
// sent is the truth about the request; the broken write is not.
func TestAnswerBeforeTheBodyWasReadIsReturned(t *testing.T) {
	const answer = `{"error":{"message":"too big","type":"invalid_request_error","code":"too_big"}}`
	body := strings.Repeat("x", 24<<20) // more than the kernel buffers hold (loopback: ~10 MiB at most)
	cases := map[string]string{}
	// A raw server: the head read, the 413 sent, the socket reset at once.
	raw := newRawServer(t, func(_ int, c net.Conn, r *bufio.Reader) {
		if _, err := http.ReadRequest(r); err != nil {
			return
		}
		c.Write([]byte("HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
			strconv.Itoa(len(answer)) + "\r\n\r\n" + answer))
		c.(*net.TCPConn).SetLinger(0)
	})
	cases["reset"] = raw.url()
	// net/http's server: the handler answers without reading; the server
	// closes over the unread body.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		w.Write([]byte(answer))
	}))
	t.Cleanup(srv.Close)
	cases["net/http"] = srv.URL
	for name, url := range cases {
		t.Run(name, func(t *testing.T) {
			c := newClient(t, Options{})
			resp, err := c.RoundTrip(post(t, context.Background(), url, body))
			if err != nil {
				t.Fatalf("the backend's answer lost to the broken write: %v", err)
			}
			if got := readAll(t, resp); resp.StatusCode != http.StatusRequestEntityTooLarge || got != answer {
				t.Fatalf("got %d %q", resp.StatusCode, got)
			}
			if st := c.Stats(); st.Idle != 0 {
				t.Fatalf("a connection whose request did not leave whole went back to the pool: %+v", st)
			}
		})
	}
}
