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

// A kept-alive exchange under a cancellable context (the proxy's: every
// attempt has one) registers the connection's close with it; the close is
// a func value made once per connection, not per request (a method value
// made in exchange was one allocation per request). The count is of the
// whole round trip (the response, its header map and body, the context's
// registration) and of the test server's parse of the request, which
// AllocsPerRun counts too: 21 with the method value, 20 without.
func TestExchangeAllocations(t *testing.T) {
	if raceBuild {
		t.Skip("-race changes what escapes")
	}
	srv := newRawServer(t, func(_ int, c net.Conn, r *bufio.Reader) {
		for {
			if _, err := readRequest(r); err != nil {
				return
			}
			c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	body := strings.NewReader(`{"model":"m"}`)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.url(), body)
	if err != nil {
		t.Fatal(err)
	}
	c := New(Options{})
	defer c.CloseIdleConnections()
	p := make([]byte, 16)
	exchange := func() {
		body.Seek(0, io.SeekStart)
		resp, err := c.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		for err == nil {
			_, err = resp.Body.Read(p)
		}
		if err != io.EOF {
			t.Fatal(err)
		}
	}
	exchange() // the connection's dial and its buffers
	allocs := testing.AllocsPerRun(50, exchange)
	t.Logf("%.1f allocations per exchange", allocs)
	if allocs > wantExchangeAllocs {
		t.Errorf("%.1f allocations per exchange, want at most %d", allocs, wantExchangeAllocs)
	}
	if st := c.Stats(); st.Dials != 1 {
		t.Fatalf("%d dials, want the one connection kept alive", st.Dials)
	}
}

const wantExchangeAllocs = 20
