package h1client

import (
	"bufio"
	"context"
	"net"
	"testing"
)

// A POST on a pooled connection that the server closes after reading it,
// before a byte of answer, is not replayed here (it is not idempotent)
// and is told stale (Unanswered), not unsent: the server read it whole.
// The same close on a fresh connection is no race with an idle close:
// not stale.
func TestUnansweredTellsTheStaleKeepAliveRace(t *testing.T) {
	srv := newRawServer(t, func(i int, c net.Conn, r *bufio.Reader) {
		if i == 0 { // answers one request keep-alive, then closes on the next
			if _, err := readRequest(r); err != nil {
				return
			}
			c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
		}
		readRequest(r) // closed once read: no answer
	})
	c := newClient(t, Options{})
	ctx := context.Background()
	resp, err := c.RoundTrip(post(t, ctx, srv.url(), `{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	_, err = c.RoundTrip(post(t, ctx, srv.url(), `{"a":2}`))
	if stale, unsent := Unanswered(err); err == nil || !stale || unsent {
		t.Fatalf("reused connection: err %v, stale %v, unsent %v; want an error, stale, not unsent", err, stale, unsent)
	}
	if n := srv.conns.Load(); n != 1 {
		t.Fatalf("connections %d; want 1 (a POST is not replayed on a fresh one here)", n)
	}
	_, err = c.RoundTrip(post(t, ctx, srv.url(), `{"a":3}`))
	if stale, _ := Unanswered(err); err == nil || stale {
		t.Fatalf("fresh connection: err %v, stale %v; want an error, not stale", err, stale)
	}
}
