package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluice-gw/sluice/internal/testutil/socktest"
)

// A connection the relay reads fast and then stops reading (its client
// stalled) can make the kernel queue only its fixed receive buffer from
// the backend, not what autotuning grew the buffer to while it was read
// (up to net.ipv4.tcp_rmem's maximum). The backend writes 64 MiB that
// the client side reads, then writes without blocking until the kernel
// takes no more; the bounds hold whenever they are read, so nothing here
// waits on time.
func TestStalledReaderQueuesBoundedReceiveBuffer(t *testing.T) {
	const want = UpstreamReceiveBuffer
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cc, err := newUpstreamDialer(5*time.Second, nil, nil).DialPlain(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	bc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()

	before := socktest.Int(t, cc, socktest.RcvBuf)
	const ahead = 64 << 20
	wrote := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		var err error
		for n := 0; n < ahead && err == nil; n += len(buf) {
			_, err = bc.Write(buf)
		}
		wrote <- err
	}()
	if _, err := io.CopyN(io.Discard, cc, ahead); err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	after := socktest.Int(t, cc, socktest.RcvBuf)
	if after != before || after > 2*want {
		t.Fatalf("receive buffer %d before a fast read of 64 MiB, %d after: want it fixed at most %d (twice SO_RCVBUF %d)", before, after, 2*want, want)
	}

	// The client side now reads nothing.
	took := socktest.FillUntilFull(t, bc.(*net.TCPConn), 256<<20)
	if q := socktest.Int(t, cc, socktest.InQ); q > after {
		t.Fatalf("the client's kernel queued %d bytes unread, want at most its receive buffer %d", q, after)
	} else {
		t.Logf("receive buffer %d, queued %d unread, the backend's writes took %d", after, q, took)
	}
}

// clientReceiveBuffer is SO_RCVBUF of this process's socket whose local
// address is local ("127.0.0.1:port", what the backend saw as the
// request's RemoteAddr): the connection a client dialled, found among
// the process's descriptors.
func clientReceiveBuffer(t *testing.T, local string) int {
	t.Helper()
	ap, err := net.ResolveTCPAddr("tcp", local)
	if err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range fds {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			continue
		}
		if in4, ok := sa.(*unix.SockaddrInet4); ok && in4.Port == ap.Port && net.IP(in4.Addr[:]).Equal(ap.IP) {
			if v, err := socktest.RcvBuf(fd); err == nil {
				return v
			}
		}
	}
	t.Fatalf("no socket of this process is bound to %s", local)
	return 0
}

// Every connection the gateway dials to a backend that carries HTTP/1.1
// has its receive buffer fixed at the bound, whichever client dials it:
// the lean client (http://), net/http (upstream_client: net/http), and
// net/http to an https:// backend that speaks only HTTP/1.1. An HTTP/2
// connection keeps autotuning: its read loop drains the socket into the
// stream windows. Each request goes through the router the gateway's
// requests take; the buffer is read off the socket the backend saw.
func TestUpstreamConnectionsReceiveBufferBounded(t *testing.T) {
	bound := socktest.HeldReceiveBuffer(t, UpstreamReceiveBuffer)
	peers := make(chan string, 1)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peers <- r.RemoteAddr
		io.WriteString(w, "ok")
	})
	plain := httptest.NewServer(handler)
	defer plain.Close()
	h1 := httptest.NewTLSServer(handler) // offers http/1.1 only
	defer h1.Close()
	h2 := httptest.NewUnstartedServer(handler)
	h2.EnableHTTP2 = true
	h2.StartTLS()
	defer h2.Close()
	roots := func(s *httptest.Server) *TLSProfile {
		return &TLSProfile{Config: s.Client().Transport.(*http.Transport).TLSClientConfig.Clone(), Fingerprint: s.URL}
	}

	cases := []struct {
		name    string
		lean    bool
		srv     *httptest.Server
		proto   int
		bounded bool
	}{
		{"lean client, http://", true, plain, 1, true},
		{"net/http, http://", false, plain, 1, true},
		{"net/http, https:// HTTP/1.1", true, h1, 1, true},
		{"net/http, https:// HTTP/2", true, h2, 2, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTransportCache()
			defer tr.Close()
			var p *TLSProfile
			if tc.srv != plain {
				p = roots(tc.srv)
			}
			rt := tr.Router(5*time.Second, time.Minute, tc.lean, p, nil)
			req, err := http.NewRequest("GET", tc.srv.URL+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != tc.proto {
				t.Fatalf("answered over HTTP/%d, want HTTP/%d", resp.ProtoMajor, tc.proto)
			}
			got := clientReceiveBuffer(t, <-peers) // the connection waits idle in its pool
			switch {
			case tc.bounded && got != bound:
				t.Fatalf("SO_RCVBUF %d, want the bound %d (twice UpstreamReceiveBuffer %d)", got, bound, UpstreamReceiveBuffer)
			case !tc.bounded && got == bound:
				t.Fatalf("SO_RCVBUF %d, the bound: want an HTTP/2 connection autotuned", got)
			}
			t.Logf("SO_RCVBUF %d", got)
		})
	}
}
